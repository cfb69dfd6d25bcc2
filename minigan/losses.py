r"""GAN losses as pure functions of the discriminator / critic outputs, with hand-derived gradients.

Every loss takes the raw outputs of D (arrays of shape (N, 1) or (N,), any float dtype, numpy
or cupy) and returns ``(value, grad)``:

* ``value`` — a Python float, the quantity to **minimise**, averaged over the batch (over all
  entries of the array: for (N, 1) or (N,) that is the batch mean);
* ``grad`` — ∂value/∂input for each input array, same shape and dtype as that input.

Nothing here keeps state or modifies its inputs. ``backward`` of the network then starts from
``grad``. Notation: σ(x) = 1/(1 + e^{−x}), softplus(x) = log(1 + e^x), so
log σ(x) = −softplus(−x), log(1 − σ(x)) = −softplus(x), softplus'(x) = σ(x), and
N, M are the real and fake batch sizes.

Minimax GAN (Goodfellow et al. 2014), from logits r = logit D(x), f = logit D(G(z))
-----------------------------------------------------------------------------------
    L_D = −E[log σ(r)] − E[log(1 − σ(f))] = (1/N) Σ softplus(−r_i) + (1/M) Σ softplus(f_j)
        ∂L_D/∂r_i = −σ(−r_i)/N = (σ(r_i) − 1)/N,      ∂L_D/∂f_j = σ(f_j)/M
    L_G (saturating)      = E[log(1 − σ(f))] = −(1/M) Σ softplus(f_j),   ∂/∂f_j = −σ(f_j)/M
    L_G (non-saturating)  = −E[log σ(f)]     =  (1/M) Σ softplus(−f_j),  ∂/∂f_j = −σ(−f_j)/M
softplus is evaluated as logaddexp(0, x) and σ(x) as exp(−softplus(−x)): no log(0), no
overflow, full relative precision of σ in both tails (σ(−20) ≈ 2.06e−9 is exact to the ulp).
As f → −∞ (D is sure the fakes are fake) the saturating gradient σ(f)/M → 0 while the
non-saturating one −σ(−f)/M → −1/M: their ratio is exactly e^{f}.

Wasserstein GAN (Arjovsky et al. 2017; WGAN-GP, Gulrajani et al. 2017, adds the penalty)
--------------------------------------------------------------------------------------
    L_critic = E[D(x̃)] − E[D(x)],   ∂/∂D(x_i) = −1/N,  ∂/∂D(x̃_j) = 1/M
    L_G      = −E[D(x̃)],             ∂/∂D(x̃_j) = −1/M
(the gradient penalty lives in :mod:`minigan.penalty`).

Least squares GAN (Mao et al. 2017), codings (a, b, c)
-----------------------------------------------------
    L_D = ½E[(D(x) − b)²] + ½E[(D(G(z)) − a)²],  ∂/∂D(x_i) = (D(x_i) − b)/N,  ∂/∂D(x̃_j) = (D(x̃_j) − a)/M
    L_G = ½E[(D(G(z)) − c)²],                      ∂/∂D(x̃_j) = (D(x̃_j) − c)/M
``LSGAN_CODINGS["abc"] = (−1, 1, 0)`` satisfies b − c = 1, b − a = 2, the choice for which the
optimal D turns G's objective into ½·χ²_Pearson(p_data + p_g ‖ 2p_g) in the paper's notation
(see :mod:`minigan.theory` and docs/losses.md); ``"01"`` = (0, 1, 1) is the 0-1 coding.

BEGAN (Berthelot et al. 2017)
-----------------------------
D is an auto-encoder, L(v) = mean |v − D(v)| (pixel-wise L1, η = 1). With ``recon = D(v)``:
    L = (1/N) Σ_i (1/P) Σ_p |v_ip − recon_ip|,   ∂L/∂recon = sign(recon − v)/(N·P),
    ∂L/∂v = −∂L/∂recon (through the direct v-path only; the path through recon = D(v) is
    the auto-encoder's own backward, fed with ∂L/∂recon).
sign(0) = 0 is the subgradient chosen at equality. L_D = L(x) − k_t·L(G(z)), L_G = L(G(z)),
k_{t+1} = clip(k_t + λ_k(γL(x) − L(G(z))), 0, 1): see :class:`BeganBalance`.

f-GAN (Nowozin et al. 2016)
---------------------------
For a convex f with f(1) = 0, D_f(P‖Q) = ∫ q f(p/q) ≥ sup_T E_P[T] − E_Q[f*(T)], with the
Fenchel conjugate f*(t) = sup_{u ≥ 0} (t·u − f(u)) and the critic T = g_f(V), g_f an output
activation mapping R into dom f*. The critic minimises
    L_D = −(E_P[g_f(V(x))] − E_Q[f*(g_f(V(x̃)))])
        ∂L_D/∂V(x_i) = −g_f'(V(x_i))/N,    ∂L_D/∂V(x̃_j) = (f*)'(g_f(V(x̃_j)))·g_f'(V(x̃_j))/M
and the generator minimises either L_G = −E_Q[f*(g_f(V(x̃)))] (saturating, the saddle point
objective), ∂/∂V(x̃_j) = −(f*)'(g_f)·g_f'/M, or the paper's alternative
L_G = −E_Q[g_f(V(x̃))], ∂/∂V(x̃_j) = −g_f'(V(x̃_j))/M. Each divergence's f, f', g_f, g_f',
f*, (f*)' and, where it simplifies, the composite f*∘g_f are derived in its class docstring.

Convention: f is defined on u ≥ 0 (u = p/q is a density ratio), and f* is the exact conjugate
over u ≥ 0. For most divergences this is the paper's f*. For Pearson χ² and α > 1 the paper's
formula only holds where it is real and increasing: the exact conjugate is
f*(t) = max(1 + t/2, 0)² − 1 (Pearson; = t²/4 + t for t ≥ −2) and
(1/α)·max(1 + (α−1)t, 0)^{α/(α−1)} − 1/α (α > 1). Both agree with the paper wherever the
optimal critic T* = f'(p/q) can lie (T* ≥ f'(0)), and the exact form keeps the variational
bound as tight as possible.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_module, is_cupy_array

__all__ = [
    "discriminator_loss_minimax", "generator_loss_minimax", "generator_loss_nonsaturating",
    "critic_loss_wasserstein", "generator_loss_wasserstein",
    "discriminator_loss_lsgan", "generator_loss_lsgan", "LSGAN_CODINGS",
    "began_reconstruction_loss", "BeganBalance",
    "FDivergence", "f_divergence", "F_DIVERGENCE_NAMES", "divergence_name",
    "discriminator_loss_fgan", "generator_loss_fgan",
    "discriminator_loss_hinge", "generator_loss_hinge",
    "relativistic_loss", "RELATIVISTIC_LINKS",
    "softplus", "sigmoid",
]

LOG2 = math.log(2.0)

# (a, b, c): fake label, real label, the value G wants D to give its fakes.
LSGAN_CODINGS = {"abc": (-1.0, 1.0, 0.0), "01": (0.0, 1.0, 1.0)}


# --- helpers --------------------------------------------------------------------------

def _as_float_array(x, name):
    """Check x is a non-empty floating-point array (numpy or cupy); lists become float64."""
    if not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=np.float64)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: a loss needs at least one sample")
    return x


def scalar(value):
    """A loss value or logged quantity as the trainer takes it: a Python float from NumPy; a
    CuPy 0-d array stays on the device (float() would make the host wait for the GPU; the
    trainer fetches a step's values in one transfer)."""
    return value if is_cupy_array(value) else float(value)


def _mean(values):
    """Batch mean accumulated in float64: a Python float (a 0-d float64 array on the GPU, see
    :func:`scalar`)."""
    return scalar(values.sum(dtype=np.float64)) / values.size


def _grad(g, like):
    """Cast a gradient to the dtype of the input it belongs to."""
    return g.astype(like.dtype, copy=False)


def softplus(x):
    """softplus(x) = log(1 + e^x), computed as logaddexp(0, x) (no overflow)."""
    return array_module(x).logaddexp(0.0, x)


def sigmoid(x):
    """σ(x) = exp(−softplus(−x)): accurate in both tails, exactly 0 or 1 only on underflow."""
    xp = array_module(x)
    return xp.exp(-xp.logaddexp(0.0, -x))


# --- minimax GAN ----------------------------------------------------------------------

def discriminator_loss_minimax(real_logits, fake_logits):
    """−E[log σ(r)] − E[log(1 − σ(f))] from logits; returns (value, (d_real, d_fake)).

    = mean softplus(−r) + mean softplus(f);  ∂/∂r_i = −σ(−r_i)/N,  ∂/∂f_j = σ(f_j)/M.
    """
    r = _as_float_array(real_logits, "real_logits")
    f = _as_float_array(fake_logits, "fake_logits")
    value = _mean(softplus(-r)) + _mean(softplus(f))
    d_real = -sigmoid(-r) / r.size
    d_fake = sigmoid(f) / f.size
    return value, (_grad(d_real, r), _grad(d_fake, f))


def generator_loss_minimax(fake_logits):
    """Saturating generator loss E[log(1 − σ(f))] = −mean softplus(f); ∂/∂f_j = −σ(f_j)/M.

    Its gradient vanishes like e^{f} as D(G(z)) = σ(f) → 0 (Goodfellow et al. 2014, §3).
    """
    f = _as_float_array(fake_logits, "fake_logits")
    return -_mean(softplus(f)), _grad(-sigmoid(f) / f.size, f)


def generator_loss_nonsaturating(fake_logits):
    """Non-saturating generator loss −E[log σ(f)] = mean softplus(−f); ∂/∂f_j = −σ(−f_j)/M.

    Its gradient tends to −1/M (not 0) as D(G(z)) → 0.
    """
    f = _as_float_array(fake_logits, "fake_logits")
    return _mean(softplus(-f)), _grad(-sigmoid(-f) / f.size, f)


# --- Wasserstein ----------------------------------------------------------------------

def critic_loss_wasserstein(real, fake):
    """E[D(x̃)] − E[D(x)]; ∂/∂D(x_i) = −1/N, ∂/∂D(x̃_j) = 1/M. Returns (value, (d_real, d_fake))."""
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    xp = array_module(r)
    value = _mean(f) - _mean(r)
    d_real = xp.full(r.shape, -1.0 / r.size, dtype=r.dtype)
    d_fake = xp.full(f.shape, 1.0 / f.size, dtype=f.dtype)
    return value, (d_real, d_fake)


def generator_loss_wasserstein(fake):
    """−E[D(x̃)]; ∂/∂D(x̃_j) = −1/M."""
    f = _as_float_array(fake, "fake")
    return -_mean(f), array_module(f).full(f.shape, -1.0 / f.size, dtype=f.dtype)


# --- LSGAN ----------------------------------------------------------------------------

def discriminator_loss_lsgan(real, fake, a=-1.0, b=1.0):
    """½E[(D(x) − b)²] + ½E[(D(G(z)) − a)²]; ∂/∂D(x_i) = (D(x_i) − b)/N, ∂/∂D(x̃_j) = (D(x̃_j) − a)/M."""
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    er, ef = r - float(b), f - float(a)
    value = 0.5 * _mean(er * er) + 0.5 * _mean(ef * ef)
    return value, (_grad(er / r.size, r), _grad(ef / f.size, f))


def generator_loss_lsgan(fake, c=0.0):
    """½E[(D(G(z)) − c)²]; ∂/∂D(x̃_j) = (D(x̃_j) − c)/M."""
    f = _as_float_array(fake, "fake")
    ef = f - float(c)
    return 0.5 * _mean(ef * ef), _grad(ef / f.size, f)


# --- BEGAN ----------------------------------------------------------------------------

def began_reconstruction_loss(x, recon):
    """BEGAN's auto-encoder loss L = mean_i mean_p |x_ip − recon_ip|; returns (value, d_recon, d_x).

    x has shape (N, ...) (one sample per leading index), recon = D(x) the same shape.
    d_recon = sign(recon − x)/(N·P) with P the entries per sample (subgradient 0 where
    recon == x); d_x = −d_recon, the gradient through x's direct path. Both are returned
    because for L(G(z)) the generator needs the sum of d_x (direct) and of the auto-encoder's
    backward of d_recon (through D); for real data simply ignore d_x.
    """
    x = _as_float_array(x, "x")
    recon = _as_float_array(recon, "recon")
    if x.shape != recon.shape:
        raise ValueError(f"x and recon must have the same shape, got {x.shape} and {recon.shape}")
    xp = array_module(recon)
    diff = recon - x
    value = _mean(xp.abs(diff))  # all samples have P entries: mean of means = overall mean
    d_recon = _grad(xp.sign(diff) / diff.size, recon)
    return value, d_recon, _grad(-d_recon, x)


def _check_unit_interval(value, name):
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


class BeganBalance:
    """BEGAN's proportional control of k (Berthelot et al. 2017, eq. 4 and §3.4.1).

    update(L(x), L(G(z))) applies k ← clip(k + λ_k(γL(x) − L(G(z))), 0, 1) and returns
    (k_new, M) with the convergence measure M = L(x) + |γL(x) − L(G(z))|. Use the k in force
    *before* the update for L_D = L(x) − k·L(G(z)) of the same step (read ``k``, then update).
    """

    def __init__(self, gamma=0.5, lambda_k=0.001, k0=0.0):
        self.gamma = _check_unit_interval(gamma, "gamma (the diversity ratio E[L(G(z))]/E[L(x)])")
        lambda_k = float(lambda_k)
        if not lambda_k >= 0.0 or math.isinf(lambda_k):
            raise ValueError(f"lambda_k (the learning rate of k) must be finite and >= 0, got {lambda_k}")
        self.lambda_k = lambda_k
        self.k = _check_unit_interval(k0, "k0 (the initial k)")

    def update(self, loss_real, loss_fake):
        """One control step; returns (k_new, convergence_M). With losses on the GPU (0-d CuPy
        arrays) k stays there too: the next step reads it without the host waiting."""
        if is_cupy_array(loss_real) or is_cupy_array(loss_fake):
            xp = array_module(loss_real if is_cupy_array(loss_real) else loss_fake)
            balance = self.gamma * loss_real - loss_fake
            self.k = xp.clip(self.k + self.lambda_k * balance, 0.0, 1.0)
            return self.k, loss_real + xp.abs(balance)
        loss_real, loss_fake = float(loss_real), float(loss_fake)
        balance = self.gamma * loss_real - loss_fake
        self.k = min(max(self.k + self.lambda_k * balance, 0.0), 1.0)
        return self.k, loss_real + abs(balance)

    def state_dict(self):
        return {"k": float(self.k)}

    def load_state_dict(self, state):
        if set(state) != {"k"}:
            raise KeyError(f"BeganBalance state must have exactly the key 'k', got {sorted(state)}")
        self.k = _check_unit_interval(state["k"], "k")

    def __repr__(self):
        return f"BeganBalance(gamma={self.gamma}, lambda_k={self.lambda_k}, k={self.k})"


# --- f-divergences --------------------------------------------------------------------

def _xlogx(xp, u):
    """u·log u with 0·log 0 = 0."""
    pos = u > 0
    return xp.where(pos, u * xp.log(xp.where(pos, u, 1.0)), 0.0)


class FDivergence:
    """An f-divergence D_f(P‖Q) = ∫ q f(p/q) with what f-GAN needs (Nowozin et al. 2016).

    Attributes: ``name``; ``domain`` (dom f* as text); ``domain_interval`` = (lo, hi) and
    ``domain_closed`` = (lo included, hi included). Methods, on numpy or cupy arrays:
    ``f(u)``, ``f_prime(u)`` (u ≥ 0), ``activation(v) -> (t, dt/dv)`` the output activation
    g_f, ``conjugate(t) -> (f*(t), df*/dt)`` (+inf and NaN outside dom f*), and
    ``conjugate_activation(v) -> (f*(g_f(v)), d/dv)`` (chain rule (f*)'(g_f(v))·g_f'(v), or an
    equivalent simplified closed form where the composition would lose precision).
    The optimal critic is T*(x) = f'(p(x)/q(x)); at P = Q it is f'(1).
    """

    name = "custom"
    domain = "R"
    domain_interval = (-math.inf, math.inf)
    domain_closed = (False, False)

    def f(self, u):
        raise NotImplementedError(f"{type(self).__name__} does not define f")

    def f_prime(self, u):
        raise NotImplementedError(f"{type(self).__name__} does not define f'")

    def activation(self, v):
        raise NotImplementedError(f"{type(self).__name__} does not define the output activation")

    def _conjugate(self, t):
        raise NotImplementedError(f"{type(self).__name__} does not define the conjugate f*")

    def in_domain(self, t):
        """Boolean array: t ∈ dom f*."""
        lo, hi = self.domain_interval
        lo_ok = (t >= lo) if self.domain_closed[0] else (t > lo)
        hi_ok = (t <= hi) if self.domain_closed[1] else (t < hi)
        return lo_ok & hi_ok

    def conjugate(self, t):
        """(f*(t), (f*)'(t)); outside dom f* the value is +inf and the derivative NaN."""
        xp = array_module(t)
        with np.errstate(all="ignore"):
            value, dvalue = self._conjugate(t)
        inside = self.in_domain(t)
        return xp.where(inside, value, xp.inf), xp.where(inside, dvalue, xp.nan)

    def conjugate_activation(self, v):
        """(f*(g_f(v)), d/dv) by the chain rule: (f*)'(g_f(v))·g_f'(v)."""
        t, dt = self.activation(v)
        value, dvalue = self.conjugate(t)
        return value, dvalue * dt

    def __repr__(self):
        return f"f_divergence({self.name!r})"


class KL(FDivergence):
    """Kullback–Leibler. f = u log u, f' = 1 + log u; g_f(v) = v (g' = 1);
    f*(t) = e^{t−1}, (f*)' = e^{t−1}, dom R (sup at u* = e^{t−1})."""

    name, domain = "kl", "R"

    def f(self, u):
        return _xlogx(array_module(u), u)

    def f_prime(self, u):
        return 1.0 + array_module(u).log(u)

    def activation(self, v):
        return v, array_module(v).ones_like(v)

    def _conjugate(self, t):
        e = array_module(t).exp(t - 1.0)
        return e, e


class ReverseKL(FDivergence):
    """Reverse KL. f = −log u, f' = −1/u; g_f(v) = −e^{−v}, g' = e^{−v};
    f*(t) = −1 − log(−t), (f*)' = −1/t, dom t < 0 (sup at u* = −1/t).
    Composite: f*(g_f(v)) = −1 − log(e^{−v}) = v − 1, derivative 1."""

    name, domain = "reverse-kl", "t < 0"
    domain_interval = (-math.inf, 0.0)

    def f(self, u):
        return -array_module(u).log(u)

    def f_prime(self, u):
        return -1.0 / u

    def activation(self, v):
        e = array_module(v).exp(-v)
        return -e, e

    def _conjugate(self, t):
        return -1.0 - array_module(t).log(-t), -1.0 / t

    def conjugate_activation(self, v):
        return v - 1.0, array_module(v).ones_like(v)


class Pearson(FDivergence):
    """Pearson χ². f = (u − 1)², f' = 2(u − 1); g_f(v) = v;
    f*(t) = sup_{u≥0} tu − (u−1)² = max(1 + t/2, 0)² − 1 (u* = max(1 + t/2, 0)),
    which is the paper's t²/4 + t for t ≥ −2 and −1 (= −f(0)) below; (f*)' = max(1 + t/2, 0)."""

    name, domain = "pearson", "R"

    def f(self, u):
        return (u - 1.0) ** 2

    def f_prime(self, u):
        return 2.0 * (u - 1.0)

    def activation(self, v):
        return v, array_module(v).ones_like(v)

    def _conjugate(self, t):
        s = array_module(t).maximum(1.0 + 0.5 * t, 0.0)
        return s * s - 1.0, s


class Neyman(FDivergence):
    """Neyman χ². f = (1 − u)²/u, f' = 1 − 1/u²; g_f(v) = 1 − e^{v}, g' = −e^{v};
    f*(t) = 2 − 2√(1 − t), (f*)' = 1/√(1 − t), dom t ≤ 1 (u* = 1/√(1 − t); at t = 1 the sup
    2 is approached as u → ∞). Composite: f*(g_f(v)) = 2 − 2e^{v/2}, derivative −e^{v/2}."""

    name, domain = "neyman", "t <= 1"
    domain_interval = (-math.inf, 1.0)
    domain_closed = (False, True)

    def f(self, u):
        return (1.0 - u) ** 2 / u

    def f_prime(self, u):
        return 1.0 - 1.0 / (u * u)

    def activation(self, v):
        e = array_module(v).exp(v)
        return 1.0 - e, -e

    def _conjugate(self, t):
        r = array_module(t).sqrt(1.0 - t)
        return 2.0 - 2.0 * r, 1.0 / r

    def conjugate_activation(self, v):
        e = array_module(v).exp(0.5 * v)
        return 2.0 - 2.0 * e, -e


class SquaredHellinger(FDivergence):
    """Squared Hellinger. f = (√u − 1)², f' = 1 − 1/√u; g_f(v) = 1 − e^{v}, g' = −e^{v};
    f*(t) = t/(1 − t), (f*)' = 1/(1 − t)², dom t < 1 (u* = 1/(1 − t)²).
    Composite: f*(g_f(v)) = (1 − e^v)/e^v = e^{−v} − 1, derivative −e^{−v}."""

    name, domain = "squared-hellinger", "t < 1"
    domain_interval = (-math.inf, 1.0)

    def f(self, u):
        return (array_module(u).sqrt(u) - 1.0) ** 2

    def f_prime(self, u):
        return 1.0 - 1.0 / array_module(u).sqrt(u)

    def activation(self, v):
        e = array_module(v).exp(v)
        return 1.0 - e, -e

    def _conjugate(self, t):
        r = 1.0 / (1.0 - t)
        return t * r, r * r

    def conjugate_activation(self, v):
        e = array_module(v).exp(-v)
        return e - 1.0, -e


def _wright_omega(x):
    """ω(x) = W(e^x) (Lambert W of an exponential without overflow); ω' = ω/(1 + ω). NumPy:
    scipy's. CuPy: on the device (scipy's would take every value over to the host and back)."""
    if is_cupy_array(x):
        return _wright_omega_iterated(array_module(x), x)
    from scipy.special import wrightomega  # noqa: PLC0415

    return wrightomega(np.asarray(x, dtype=np.float64)).real.astype(x.dtype, copy=False)


def _wright_omega_iterated(xp, x):
    """ω(x), the root w of w + log w = x, in float64: from w₀ = log(1 + eˣ) (eˣ for x → −∞,
    x for x → ∞) four Fritsch–Shafer–Crowley steps (quartic convergence, as scipy's),
        r = x − w − log w,  w ← w·(1 + r/(1 + w)·(a − r/2)/(a − r)),  a = (1 + w)(1 + w + 2r/3).
    Where eˣ underflows (x < −745) ω is 0, as scipy gives."""
    t = x.astype(xp.float64)
    w = xp.logaddexp(0.0, t)
    zero = w == 0
    t, w = xp.where(zero, 0.0, t), xp.where(zero, 1.0, w)  # a harmless root there, masked below
    for _ in range(4):
        r = t - w - xp.log(w)
        a = (1.0 + w) * (1.0 + w + 2.0 * r / 3.0)
        w = w * (1.0 + r / (1.0 + w) * (a - r / 2.0) / (a - r))
    return xp.where(zero, 0.0, w).astype(x.dtype, copy=False)


class Jeffrey(FDivergence):
    """Jeffrey (KL + reverse KL). f = (u − 1) log u, f' = log u + 1 − 1/u; g_f(v) = v;
    f*(t) = W(e^{1−t}) + 1/W(e^{1−t}) + t − 2, dom R, W the Lambert W function.
    Derivative: with z = e^{1−t}, w = W(z), W'(z) = w/(z(1 + w)) and dz/dt = −z give
    dw/dt = −w/(1 + w), so (f*)' = dw/dt·(1 − 1/w²) + 1 = −(w − 1)/w + 1 = 1/w
    (= u*: f'(1/w) = 1 − w − log w = t because w + log w = 1 − t). W(e^{1−t}) is the Wright
    omega function ω(1 − t), evaluated on the CPU (scipy) so that e^{1−t} never overflows."""

    name, domain = "jeffrey", "R"

    def f(self, u):
        return (u - 1.0) * array_module(u).log(u)

    def f_prime(self, u):
        return array_module(u).log(u) + 1.0 - 1.0 / u

    def activation(self, v):
        return v, array_module(v).ones_like(v)

    def _conjugate(self, t):
        w = _wright_omega(1.0 - t)
        return w + 1.0 / w + t - 2.0, 1.0 / w


class JensenShannon(FDivergence):
    """Jensen–Shannon as in the paper's tables: f = u log u − (u + 1) log((u + 1)/2), so that
    D_f(P‖Q) = 2·JSD(P‖Q) (the paper's Table 1 prints ½ in front of the integral, but its f and
    its conjugate both belong to 2·JSD). f' = log(2u/(u + 1)).
    g_f(v) = log 2 − softplus(−v), g' = σ(−v); f*(t) = −log(2 − e^t), (f*)' = e^t/(2 − e^t),
    dom t < log 2. Composite: e^{g_f(v)} = 2σ(v), so f*(g_f(v)) = −log(2σ(−v)) =
    softplus(v) − log 2, derivative σ(v) — stable for any v."""

    name, domain = "jensen-shannon", "t < log 2"
    domain_interval = (-math.inf, LOG2)

    def f(self, u):
        xp = array_module(u)
        return _xlogx(xp, u) - (u + 1.0) * xp.log(0.5 * (u + 1.0))

    def f_prime(self, u):
        return array_module(u).log(2.0 * u / (u + 1.0))

    def activation(self, v):
        return LOG2 - softplus(-v), sigmoid(-v)

    def _conjugate(self, t):
        xp = array_module(t)
        d = 2.0 - xp.exp(t)
        return -xp.log(d), xp.exp(t) / d

    def conjugate_activation(self, v):
        return softplus(v) - LOG2, sigmoid(v)


class JensenShannonWeighted(FDivergence):
    """π-weighted Jensen–Shannon, 0 < π < 1: f = πu log u − (1 − π + πu) log(1 − π + πu),
    f' = π log(u/(1 − π + πu)); g_f(v) = −π log π − softplus(−v), g' = σ(−v);
    f*(t) = (1 − π) log((1 − π)/(1 − πe^{t/π})), (f*)' = (1 − π)e^{t/π}/(1 − πe^{t/π}),
    dom t < −π log π. π = ½ gives half the "jensen-shannon" f."""

    def __init__(self, pi=0.5):
        pi = float(pi)
        if not 0.0 < pi < 1.0:
            raise ValueError(f"jensen-shannon-weighted needs 0 < pi < 1, got pi={pi}")
        self.pi = pi
        self.name = "jensen-shannon-weighted"
        self.domain = f"t < -pi log pi = {-pi * math.log(pi):.6g}"
        self.domain_interval = (-math.inf, -pi * math.log(pi))

    def f(self, u):
        xp, pi = array_module(u), self.pi
        return pi * _xlogx(xp, u) - _xlogx(xp, 1.0 - pi + pi * u)

    def f_prime(self, u):
        pi = self.pi
        return pi * array_module(u).log(u / (1.0 - pi + pi * u))

    def activation(self, v):
        return -self.pi * math.log(self.pi) - softplus(-v), sigmoid(-v)

    def _conjugate(self, t):
        xp, pi = array_module(t), self.pi
        e = xp.exp(t / pi)
        d = 1.0 - pi * e
        return (1.0 - pi) * (math.log(1.0 - pi) - xp.log(d)), (1.0 - pi) * e / d

    def __repr__(self):
        return f"f_divergence('jensen-shannon-weighted', pi={self.pi})"


class GANDivergence(FDivergence):
    """The GAN divergence 2·JSD − log 4: f = u log u − (u + 1) log(u + 1), f' = log(u/(u + 1)),
    f'(1) = −log 2. g_f(v) = −softplus(−v) = log σ(v), g' = σ(−v); f*(t) = −log(1 − e^t),
    (f*)' = e^t/(1 − e^t), dom t < 0. Composite: f*(g_f(v)) = −log(1 − σ(v)) = softplus(v),
    derivative σ(v): the f-GAN losses then reduce exactly to the minimax GAN losses on logits."""

    name, domain = "gan", "t < 0"
    domain_interval = (-math.inf, 0.0)

    def f(self, u):
        xp = array_module(u)
        return _xlogx(xp, u) - _xlogx(xp, u + 1.0)

    def f_prime(self, u):
        return array_module(u).log(u / (u + 1.0))

    def activation(self, v):
        return -softplus(-v), sigmoid(-v)

    def _conjugate(self, t):
        xp = array_module(t)
        d = -xp.expm1(t)  # 1 − e^t
        return -xp.log(d), xp.exp(t) / d

    def conjugate_activation(self, v):
        return softplus(v), sigmoid(v)


class TotalVariation(FDivergence):
    """Total variation. f = ½|u − 1|, f' = ½ sign(u − 1) (subgradient 0 at u = 1);
    g_f(v) = ½ tanh v, g' = ½ sech² v = ½(1 − tanh² v); f*(t) = sup_{u≥0} tu − ½|u − 1| = max(t, −½) for
    t ≤ ½ (the paper's "t on |t| ≤ ½"; g_f maps into (−½, ½) where f* = t), (f*)' = 1 for t > −½."""

    name, domain = "total-variation", "t <= 1/2 (f*(t) = t on |t| <= 1/2)"
    domain_interval = (-math.inf, 0.5)
    domain_closed = (False, True)

    def f(self, u):
        return 0.5 * array_module(u).abs(u - 1.0)

    def f_prime(self, u):
        return 0.5 * array_module(u).sign(u - 1.0)

    def activation(self, v):
        xp = array_module(v)
        # ½ sech² v with sech v = 2e^{−|v|}/(1 + e^{−2|v|}): no overflow, and no cancellation as in
        # ½(1 − tanh² v), which is exactly 0 for |v| ≳ 19
        e = xp.exp(-2.0 * xp.abs(v))
        sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e))
        return 0.5 * xp.tanh(v), 0.5 * sech2

    def _conjugate(self, t):
        xp = array_module(t)
        return xp.maximum(t, -0.5), (t > -0.5).astype(t.dtype)

    def conjugate_activation(self, v):
        t, dt = self.activation(v)  # t ∈ (−½, ½): f*(t) = t
        return t, dt


class AlphaDivergence(FDivergence):
    """α-divergence, α ∉ {0, 1}: f = (u^α − 1 − α(u − 1))/(α(α − 1)), f' = (u^{α−1} − 1)/(α − 1).
    With s(t) = 1 + (α − 1)t: f*(t) = s^{α/(α−1)}/α − 1/α, (f*)' = s^{1/(α−1)} (= u*, since
    f'(u*) = t ⇔ u*^{α−1} = s).
    α < 1: g_f(v) = 1/(1 − α) − softplus(−v), g' = σ(−v), dom t < 1/(1 − α) (closed for α < 0,
    where f* stays finite at the end). Composite: s(g_f(v)) = (1 − α)·softplus(−v), so
    f*(g_f(v)) = ((1 − α)softplus(−v))^{α/(α−1)}/α − 1/α, derivative ((1 − α)softplus(−v))^{1/(α−1)}·σ(−v).
    α > 1: g_f(v) = v, dom R, and the exact conjugate over u ≥ 0 uses max(s, 0) (for s ≤ 0 the
    sup is at u = 0, f* = −f(0) = −1/α, derivative 0); the paper's formula is not real there."""

    def __init__(self, alpha):
        alpha = float(alpha)
        if not math.isfinite(alpha) or alpha in (0.0, 1.0):
            raise ValueError(
                f"the alpha-divergence needs a finite alpha not in {{0, 1}}, got alpha={alpha} "
                "(its limits alpha -> 1 and alpha -> 0 are 'kl' and 'reverse-kl')")
        self.alpha = alpha
        self.name = "alpha"
        if alpha < 1.0:
            hi = 1.0 / (1.0 - alpha)
            self.domain = f"t < 1/(1 - alpha) = {hi:.6g}" if alpha > 0 else f"t <= 1/(1 - alpha) = {hi:.6g}"
            self.domain_interval = (-math.inf, hi)
            self.domain_closed = (False, alpha < 0.0)
        else:
            self.domain = "R"

    def f(self, u):
        a = self.alpha
        return (array_module(u).power(u, a) - 1.0 - a * (u - 1.0)) / (a * (a - 1.0))

    def f_prime(self, u):
        a = self.alpha
        return (array_module(u).power(u, a - 1.0) - 1.0) / (a - 1.0)

    def activation(self, v):
        xp = array_module(v)
        if self.alpha < 1.0:
            return 1.0 / (1.0 - self.alpha) - softplus(-v), sigmoid(-v)
        return v, xp.ones_like(v)

    def _conjugate(self, t):
        xp, a = array_module(t), self.alpha
        s = 1.0 + (a - 1.0) * t
        if a > 1.0:
            s = xp.maximum(s, 0.0)
        return xp.power(s, a / (a - 1.0)) / a - 1.0 / a, xp.power(s, 1.0 / (a - 1.0))

    def conjugate_activation(self, v):
        if self.alpha > 1.0:
            return super().conjugate_activation(v)
        xp, a = array_module(v), self.alpha
        s = (1.0 - a) * softplus(-v)
        with np.errstate(all="ignore"):
            return xp.power(s, a / (a - 1.0)) / a - 1.0 / a, xp.power(s, 1.0 / (a - 1.0)) * sigmoid(-v)

    def __repr__(self):
        return f"f_divergence('alpha', alpha={self.alpha})"


_DIVERGENCES = {
    "kl": KL, "reverse-kl": ReverseKL, "pearson": Pearson, "neyman": Neyman,
    "squared-hellinger": SquaredHellinger, "jeffrey": Jeffrey, "jensen-shannon": JensenShannon,
    "jensen-shannon-weighted": JensenShannonWeighted, "gan": GANDivergence,
    "total-variation": TotalVariation, "alpha": AlphaDivergence,
}
F_DIVERGENCE_NAMES = tuple(_DIVERGENCES)


def divergence_name(name: str) -> str:
    """The registered spelling of a divergence name: hyphens, as every other choice of minigan;
    the underscore spellings of older versions (``reverse_kl``: old config files and
    checkpoints) are still accepted."""
    return name.replace("_", "-") if isinstance(name, str) else name
_PARAMETERS = {"alpha": ("alpha",), "jensen-shannon-weighted": ("pi",)}


def f_divergence(name, **params):
    """The FDivergence called ``name``: one of F_DIVERGENCE_NAMES.

    "alpha" needs ``alpha=`` (α ∉ {0, 1}); "jensen-shannon-weighted" takes ``pi=`` (default ½).
    An FDivergence instance is returned unchanged.
    """
    if isinstance(name, FDivergence):
        if params:
            raise TypeError("parameters can only be given with a divergence name")
        return name
    name = divergence_name(name)
    if name not in _DIVERGENCES:
        raise ValueError(f"unknown f-divergence {name!r}; valid names: {', '.join(F_DIVERGENCE_NAMES)}")
    allowed = _PARAMETERS.get(name, ())
    unexpected = sorted(set(params) - set(allowed))
    if unexpected:
        raise TypeError(f"f-divergence {name!r} takes parameters {list(allowed)}, got {unexpected}")
    if name == "alpha" and "alpha" not in params:
        raise ValueError("the alpha-divergence needs its parameter: f_divergence('alpha', alpha=...)")
    return _DIVERGENCES[name](**params)


# --- f-GAN losses ---------------------------------------------------------------------

def discriminator_loss_fgan(real_v, fake_v, div):
    """−(E_P[g_f(V(x))] − E_Q[f*(g_f(V(x̃)))]) on the critic's raw outputs V.

    ∂/∂V(x_i) = −g_f'(V(x_i))/N;  ∂/∂V(x̃_j) = (f*)'(g_f(V(x̃_j)))·g_f'(V(x̃_j))/M.
    ``div`` is an FDivergence or a name. Returns (value, (d_real, d_fake)).
    """
    div = f_divergence(div)
    r = _as_float_array(real_v, "real_v")
    f = _as_float_array(fake_v, "fake_v")
    t_real, dt_real = div.activation(r)
    fstar, dfstar = div.conjugate_activation(f)
    value = -_mean(t_real) + _mean(fstar)
    return value, (_grad(-dt_real / r.size, r), _grad(dfstar / f.size, f))


def generator_loss_fgan(fake_v, div, nonsaturating=False):
    """Saturating: −E_Q[f*(g_f(V(x̃)))], ∂/∂V(x̃_j) = −(f*)'(g_f)·g_f'/M;
    non-saturating (the paper's alternative): −E_Q[g_f(V(x̃))], ∂/∂V(x̃_j) = −g_f'(V(x̃_j))/M."""
    div = f_divergence(div)
    f = _as_float_array(fake_v, "fake_v")
    if nonsaturating:
        t, dt = div.activation(f)
    else:
        t, dt = div.conjugate_activation(f)
    return -_mean(t), _grad(-dt / f.size, f)


# --- hinge (Lim & Ye 2017; SAGAN, BigGAN) ----------------------------------------------

def discriminator_loss_hinge(real, fake):
    """E[relu(1 − D(x))] + E[relu(1 + D(x̃))]; returns (value, (d_real, d_fake)).

    ∂/∂D(x_i) = −[D(x_i) < 1]/N,  ∂/∂D(x̃_j) = [D(x̃_j) > −1]/M (subgradient 0 at the kinks).
    """
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    xp = array_module(r)
    value = _mean(xp.maximum(1 - r, 0)) + _mean(xp.maximum(1 + f, 0))
    d_real = -(r < 1).astype(r.dtype) / r.size
    d_fake = (f > -1).astype(f.dtype) / f.size
    return value, (d_real, d_fake)


def generator_loss_hinge(fake):
    """−E[D(x̃)] (the hinge GAN's generator loss is the Wasserstein one); ∂/∂D(x̃_j) = −1/M."""
    return generator_loss_wasserstein(fake)


# --- relativistic GANs (Jolicoeur-Martineau 2018) ----------------------------------------

def _relu(t):
    return array_module(t).maximum(t, 0)


def _step(t):
    return (t > 0).astype(t.dtype)


# link: (φ₁, φ₁', φ₂, φ₂'): φ₁ scores a "should look real" difference, φ₂ a "should look fake" one.
RELATIVISTIC_LINKS = {
    # standard (log) GAN: φ₁(t) = −log σ(t) = softplus(−t), φ₂(t) = −log(1 − σ(t)) = softplus(t)
    "standard": (lambda t: softplus(-t), lambda t: -sigmoid(-t), softplus, sigmoid),
    # least squares (RaLSGAN): φ₁(t) = (t − 1)², φ₂(t) = (t + 1)²
    "lsgan": (lambda t: (t - 1) ** 2, lambda t: 2 * (t - 1), lambda t: (t + 1) ** 2, lambda t: 2 * (t + 1)),
    # hinge (RaHinge): φ₁(t) = relu(1 − t), φ₂(t) = relu(1 + t)
    "hinge": (lambda t: _relu(1 - t), lambda t: -_step(1 - t), lambda t: _relu(1 + t), lambda t: _step(1 + t)),
}


def relativistic_loss(real, fake, link="standard", average=True, batch_means=None):
    """The relativistic discriminator's loss; the generator's is the same with the roles swapped,
    ``relativistic_loss(fake, real)``. Returns (value, (d_real, d_fake)).

    average=False (RSGAN, pairs x_i, x̃_i, so N = M):
        L = mean_i φ₁(r_i − f_i),                           ∂/∂r_i = φ₁'(r_i − f_i)/N = −∂/∂f_i
    average=True (RaGAN), a_i = r_i − mean f, b_j = f_j − mean r:
        L = mean_i φ₁(a_i) + mean_j φ₂(b_j)
        ∂/∂r_k = φ₁'(a_k)/N − mean_j φ₂'(b_j)/N,   ∂/∂f_k = φ₂'(b_k)/M − mean_i φ₁'(a_i)/M
    (the mean terms: every a_i holds −f_k/M, every b_j holds −r_k/N). With the "standard"
    link and average=False this is RSGAN; average=True is the paper's RaSGAN.

    ``batch_means(*arrays)`` returns the float64 means of the four batch means (mean r,
    mean f, mean φ₁', mean φ₂'); default: over these arrays. Data-parallel training passes
    means over the GLOBAL batch (``minigan.distributed.global_means``): then r, f are this
    rank's rows, the value is this rank's share, and d_real, d_fake (divided by the local
    sizes) are N times the global loss's gradient w.r.t. these rows — what the gradient
    averaging over the ranks expects (docs/losses.md, "Under N ranks").
    """
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    phi1, dphi1, phi2, dphi2 = RELATIVISTIC_LINKS[link]
    if not average:
        if r.shape != f.shape:
            raise ValueError(f"the paired relativistic loss needs real and fake batches of one shape, "
                             f"got {tuple(r.shape)} and {tuple(f.shape)}")
        t = r - f
        g = dphi1(t) / r.size
        return _mean(phi1(t)), (_grad(g, r), _grad(-g, f))
    if batch_means is None:
        def batch_means(*arrays):
            return tuple(v.mean(dtype=np.float64) for v in arrays)
    mean_r, mean_f = batch_means(r, f)
    a = r - mean_f.astype(r.dtype)
    b = f - mean_r.astype(f.dtype)
    g1, g2 = dphi1(a), dphi2(b)
    value = _mean(phi1(a)) + _mean(phi2(b))
    mean_g1, mean_g2 = batch_means(g1, g2)
    d_real = (g1 - mean_g2.astype(g2.dtype)) / r.size
    d_fake = (g2 - mean_g1.astype(g1.dtype)) / f.size
    return value, (_grad(d_real, r), _grad(d_fake, f))
