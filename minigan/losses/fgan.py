r"""f-GAN (Nowozin et al. 2016)
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

from ..backend import array_module, backend_of
from .core import (LOSSES, ConfigError, Loss, TangentUnsupported, _as_float_array, _grad, _mean, dsigmoid, sigmoid,
                   softplus, zero)

LOG2 = math.log(2.0)


# --- f-divergences --------------------------------------------------------------------

def _xlogx(xp, u):
    """u·log u with 0·log 0 = 0."""
    pos = u > 0
    return xp.where(pos, u * xp.log(xp.where(pos, u, 1.0)), 0.0)


class FDivergence:
    """An f-divergence D_f(P‖Q) = ∫ q f(p/q) with what f-GAN needs (Nowozin et al. 2016).
    (docs/losses.md, eq. FG1)

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
        """(f*(t), (f*)'(t)); outside dom f* the value is +inf and the derivative NaN.
        (docs/losses.md, eq. FG18)"""
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
    f*(t) = e^{t−1}, (f*)' = e^{t−1}, dom R (sup at u* = e^{t−1}).
    (docs/losses.md, eq. FG6)"""

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
    Composite: f*(g_f(v)) = −1 − log(e^{−v}) = v − 1, derivative 1.
    (docs/losses.md, eq. FG7)"""

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
        """f*(g_f(v)) and its derivative in closed form (docs/losses.md, eq. FG22)."""
        return v - 1.0, array_module(v).ones_like(v)


class Pearson(FDivergence):
    """Pearson χ². f = (u − 1)², f' = 2(u − 1); g_f(v) = v;
    f*(t) = sup_{u≥0} tu − (u−1)² = max(1 + t/2, 0)² − 1 (u* = max(1 + t/2, 0)),
    which is the paper's t²/4 + t for t ≥ −2 and −1 (= −f(0)) below; (f*)' = max(1 + t/2, 0).
    (docs/losses.md, eq. FG8)"""

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
    2 is approached as u → ∞). Composite: f*(g_f(v)) = 2 − 2e^{v/2}, derivative −e^{v/2}.
    (docs/losses.md, eq. FG9)"""

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
        """f*(g_f(v)) and its derivative in closed form (docs/losses.md, eq. FG23)."""
        e = array_module(v).exp(0.5 * v)
        return 2.0 - 2.0 * e, -e


class SquaredHellinger(FDivergence):
    """Squared Hellinger. f = (√u − 1)², f' = 1 − 1/√u; g_f(v) = 1 − e^{v}, g' = −e^{v};
    f*(t) = t/(1 − t), (f*)' = 1/(1 − t)², dom t < 1 (u* = 1/(1 − t)²).
    Composite: f*(g_f(v)) = (1 − e^v)/e^v = e^{−v} − 1, derivative −e^{−v}.
    (docs/losses.md, eq. FG10)"""

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
        """f*(g_f(v)) and its derivative in closed form (docs/losses.md, eq. FG24)."""
        e = array_module(v).exp(-v)
        return e - 1.0, -e


def _wright_omega(x):
    """ω(x) = W(e^x) (Lambert W of an exponential without overflow); ω' = ω/(1 + ω). A host
    (NumPy) array: scipy's. A device backend's array (CuPy): on the device (scipy's would take
    every value over to the host and back). (docs/losses.md, eq. FG19)"""
    if not backend_of(x).host:
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
    omega function ω(1 − t), evaluated on the CPU (scipy) so that e^{1−t} never overflows.
    (docs/losses.md, eq. FG11)"""

    name, domain = "jeffrey", "R"

    def f(self, u):
        return (u - 1.0) * array_module(u).log(u)

    def f_prime(self, u):
        return array_module(u).log(u) + 1.0 - 1.0 / u

    def activation(self, v):
        return v, array_module(v).ones_like(v)

    def _conjugate(self, t):
        """Jeffrey's conjugate through Lambert W (docs/losses.md, eq. FG19)."""
        w = _wright_omega(1.0 - t)
        return w + 1.0 / w + t - 2.0, 1.0 / w


class JensenShannon(FDivergence):
    """Jensen–Shannon as in the paper's tables: f = u log u − (u + 1) log((u + 1)/2), so that
    D_f(P‖Q) = 2·JSD(P‖Q) (the paper's Table 1 prints ½ in front of the integral, but its f and
    its conjugate both belong to 2·JSD). f' = log(2u/(u + 1)).
    g_f(v) = log 2 − softplus(−v), g' = σ(−v); f*(t) = −log(2 − e^t), (f*)' = e^t/(2 − e^t),
    dom t < log 2. Composite: e^{g_f(v)} = 2σ(v), so f*(g_f(v)) = −log(2σ(−v)) =
    softplus(v) − log 2, derivative σ(v) — stable for any v.
    (docs/losses.md, eq. FG12)"""

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
        """f*(g_f(v)) and its derivative in closed form (docs/losses.md, eq. FG21)."""
        return softplus(v) - LOG2, sigmoid(v)


class JensenShannonWeighted(FDivergence):
    """π-weighted Jensen–Shannon, 0 < π < 1: f = πu log u − (1 − π + πu) log(1 − π + πu),
    f' = π log(u/(1 − π + πu)); g_f(v) = −π log π − softplus(−v), g' = σ(−v);
    f*(t) = (1 − π) log((1 − π)/(1 − πe^{t/π})), (f*)' = (1 − π)e^{t/π}/(1 − πe^{t/π}),
    dom t < −π log π. π = ½ gives half the "jensen-shannon" f.
    (docs/losses.md, eq. FG13)"""

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
    derivative σ(v): the f-GAN losses then reduce exactly to the minimax GAN losses on logits.
    (docs/losses.md, eq. FG14)"""

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
        """f*(g_f(v)) and its derivative in closed form (docs/losses.md, eq. FG20)."""
        return softplus(v), sigmoid(v)


class TotalVariation(FDivergence):
    """Total variation. f = ½|u − 1|, f' = ½ sign(u − 1) (subgradient 0 at u = 1);
    g_f(v) = ½ tanh v, g' = ½ sech² v = ½(1 − tanh² v); f*(t) = sup_{u≥0} tu − ½|u − 1| = max(t, −½) for
    t ≤ ½ (the paper's "t on |t| ≤ ½"; g_f maps into (−½, ½) where f* = t), (f*)' = 1 for t > −½.
    (docs/losses.md, eq. FG15)"""

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
    sup is at u = 0, f* = −f(0) = −1/α, derivative 0); the paper's formula is not real there.
    (docs/losses.md, eqs. FG16, FG17)"""

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
        """f*(g_f(v)) and its derivative in closed form (docs/losses.md, eq. FG25)."""
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
    (docs/losses.md, eq. FG3)

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
    non-saturating (the paper's alternative): −E_Q[g_f(V(x̃))], ∂/∂V(x̃_j) = −g_f'(V(x̃_j))/M.
    (docs/losses.md, eqs. FG4, FG5)"""
    div = f_divergence(div)
    f = _as_float_array(fake_v, "fake_v")
    if nonsaturating:
        t, dt = div.activation(f)
    else:
        t, dt = div.conjugate_activation(f)
    return -_mean(t), _grad(-dt / f.size, f)


def _sech2_tanh(v):
    """−sech²(v)·tanh(v), the second derivative of ½tanh(v), without overflow."""
    xp = array_module(v)
    e = xp.exp(-2.0 * xp.abs(v))
    return -4.0 * e / ((1.0 + e) * (1.0 + e)) * xp.tanh(v)


def _jeffrey_second(v):
    """(f*)'' = 1/(w(1 + w)), w = ω(1 − v): the derivative of (f*)' = 1/w with dw/dt = −w/(1 + w)."""
    w = _wright_omega(1.0 - v)
    return 1.0 / (w * (1.0 + w))


def _pearson_second(v):
    """(f*)'' = ½ where 1 + v/2 > 0, else 0 (f* = max(1 + t/2, 0)² − 1)."""
    return 0.5 * (1.0 + 0.5 * v > 0).astype(v.dtype)


def _js_weighted_second(div, v):
    """f*∘g with g(v) = −π log π − softplus(−v): (f*)''(g)·g'² + (f*)'(g)·g'', where
    (f*)'(t) = (1 − π)q/D, (f*)''(t) = (1 − π)q/(πD²), q = e^{t/π}, D = 1 − πq."""
    pi = div.pi
    t, dt = div.activation(v)
    q = array_module(v).exp(t / pi)
    d = 1.0 - pi * q
    return (1.0 - pi) * q / (pi * d * d) * dt * dt + (1.0 - pi) * q / d * (-dsigmoid(v))


def _alpha_second(div, v):
    """α > 1 (g = v): (f*)'' = s^{(2−α)/(α−1)} for s = 1 + (α − 1)v > 0, else 0.
    α < 1, S = (1 − α)softplus(−v): d/dv[S^{1/(α−1)}σ(−v)] = S^{(2−α)/(α−1)}σ(−v)² − S^{1/(α−1)}σ'(v)."""
    xp, a = array_module(v), div.alpha
    with np.errstate(all="ignore"):
        if a > 1.0:
            s = 1.0 + (a - 1.0) * v
            return xp.where(s > 0, xp.power(xp.maximum(s, 1e-300), (2.0 - a) / (a - 1.0)), 0.0)
        s = (1.0 - a) * softplus(-v)
        p = sigmoid(-v)
        return xp.power(s, (2.0 - a) / (a - 1.0)) * p * p - xp.power(s, 1.0 / (a - 1.0)) * dsigmoid(v)


# divergence name -> (g''(v), (f*∘g)''(v)) as functions of (div, v): the tangents of the fgan
# losses' gradients, −g'(r)/N → −g''(r)/N and (f*∘g)'(f)/M → (f*∘g)''(f)/M (docs/tangents.md)
_FGAN_SECOND = {
    "kl": (lambda d, v: zero(v), lambda d, v: array_module(v).exp(v - 1.0)),
    "reverse-kl": (lambda d, v: -array_module(v).exp(-v), lambda d, v: zero(v)),
    "pearson": (lambda d, v: zero(v), lambda d, v: _pearson_second(v)),
    "neyman": (lambda d, v: -array_module(v).exp(v), lambda d, v: -0.5 * array_module(v).exp(0.5 * v)),
    "squared-hellinger": (lambda d, v: -array_module(v).exp(v), lambda d, v: array_module(v).exp(-v)),
    "jeffrey": (lambda d, v: zero(v), lambda d, v: _jeffrey_second(v)),
    "jensen-shannon": (lambda d, v: -dsigmoid(v), lambda d, v: dsigmoid(v)),
    "jensen-shannon-weighted": (lambda d, v: -dsigmoid(v), _js_weighted_second),
    "gan": (lambda d, v: -dsigmoid(v), lambda d, v: dsigmoid(v)),
    "total-variation": (lambda d, v: _sech2_tanh(v), lambda d, v: _sech2_tanh(v)),
    "alpha": (lambda d, v: (zero(v) if d.alpha > 1.0 else -dsigmoid(v)), _alpha_second),
}


def fgan_second(div, v):
    """(g''(v), (f*∘g)''(v)) of one of minigan's own divergences."""
    if type(div).__module__ != __name__ or div.name not in _FGAN_SECOND:
        raise TangentUnsupported(f"the f-divergence {div!r} has no second derivatives here (only "
                                 f"minigan's own: {', '.join(_FGAN_SECOND)})")
    activation, composite = _FGAN_SECOND[div.name]
    return activation(div, v), composite(div, v)


@LOSSES.register("fgan")
class FGan(Loss):
    help = "Nowozin et al.: the variational bound of an f-divergence (--divergence), non-saturating G"
    settings = {"divergence": "gan", "fgan_alpha": None}

    def __init__(self, config, comm=None):
        super().__init__(config, comm)
        params = {"alpha": config.fgan_alpha} if config.divergence == "alpha" else {}
        self.divergence = f_divergence(config.divergence, **params)

    def discriminator(self, out_real, out_fake):
        return discriminator_loss_fgan(out_real, out_fake, self.divergence)

    def generator(self, out_fake, out_real=None):
        return generator_loss_fgan(out_fake, self.divergence, nonsaturating=True)

    def discriminator_hessian(self, r, f):
        g2_r, _ = fgan_second(self.divergence, r)
        _, c2_f = fgan_second(self.divergence, f)
        return -g2_r / r.size, c2_f / f.size

    def generator_hessian(self, f):
        g2, _ = fgan_second(self.divergence, f)  # the paper's non-saturating G: −g'(f)/M → −g''(f)/M
        return -g2 / f.size

    @classmethod
    def check(cls, config):
        if config.divergence == "alpha" and config.fgan_alpha is None:
            raise ConfigError("divergence 'alpha' needs its α: set fgan_alpha (--fgan-alpha X, X not 0 or 1)")
        try:
            f_divergence(config.divergence, **({"alpha": config.fgan_alpha} if config.divergence == "alpha" else {}))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"divergence: {exc}") from None
