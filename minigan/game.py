r"""GANs as games: the vector field ξ, its Jacobian J·v and Jᵀ·u, and J's eigenvalues, exactly.

Players G (parameters θ) and D (parameters ψ) each minimise their own loss of the registry
on a fixed batch (noise z, data x, labels for conditional models):

    ξ = (∇_θ L_G(θ, ψ), ∇_ψ L_D(θ, ψ)),      J = ∂ξ/∂(θ, ψ).

Vectors are flat float64 arrays: G's parameters, then D's, each in ``parameters()`` order and
flattened in its logical (PyTorch, C-order) layout whatever its memory order (DESIGN.md,
"GANs as games: the conventions").

**J·v** is one tangent sweep (:mod:`minigan.hvp`; docs/tangents.md, section 4): with every
parameter's tangent set from v, G and D run forward once per batch with their tangents, then
back through D from L_D on each batch (R{∇_ψ L_D}, the ψ-rows of J times v) and from L_G on
the fake one, on through G (R{∇_θ L_G}, the θ-rows). **Jᵀ·u**: the θ-rows of J are rows of the
symmetric ∇²L_G (over θ and ψ together) and the ψ-rows rows of ∇²L_D, so Jᵀu = ∇²L_G·(u_θ, 0)
+ ∇²L_D·(0, u_ψ): one sweep per player's loss (the G sweep z → G → D → L_G → back through D
and G; the D sweep), each reading the Hessian-vector product over all parameters.

Both are exact for every loss of the registry without a penalty. With a penalty (its
gradient needs a second-order pass, so J would need third derivatives) J·v is the central
difference (ξ(w + hv) − ξ(w − hv))/2h of the exact field in float64, and the game says so:
``Game.exact`` is False and ``Game.method`` reads "central difference of the exact field".
Its error is measured in tests/games/test_game.py.

What J means here, precisely:

* the batch is fixed: z, x, labels and the penalty's random draws (replayed identically at
  every evaluation from ``seed``);
* BatchNorm in training mode normalises each forward's batch (D(x) and D(G(z)) separately, as
  the trainer does) with the statistics as functions of that batch, differentiated exactly;
  running statistics are not part of ξ and are restored after every evaluation;
* spectral norm's u, v are constants (as its backward treats them): no power iteration runs
  during an evaluation, the stored u, v serve every forward;
* hinge and ReLU kinks: the derivative a.e. (the kinks are measure zero);
* BEGAN (an auto-encoder D): L_D = L(x) − k·L(G(z)), L_G = L(G(z)) with L(v) = mean|v − D(v)|
  and k the balance's current k_t (a constant of the step); the L1 loss's second derivative is
  0 away from the ties recon = v, so J is the networks' curvature through it.
"""
from __future__ import annotations

import types

import numpy as np

from . import loss_tangents, losses
from .backend import array_module
from .hvp import clear_tangents, fixed_spectral_norm, gradients, parameter_vector, saved_buffers
from .hvp import set_parameter_vector, set_tangents, size_of, skipped_tangent_grads, tangent_grads
from .nn.module import TangentUnsupported

def _settings(registry, **extra) -> dict:
    """The config keys the registry's pieces declare (``settings``), at their declared defaults
    (TrainConfig takes its defaults for them from the same place)."""
    return {**{key: default for cls in registry.classes() for key, default in cls.settings.items()}, **extra}


def make_loss(name, **settings):
    """A registry loss (:data:`minigan.losses.LOSSES`) from its name and the TrainConfig
    settings it reads (lsgan_coding, divergence, fgan_alpha; defaults as TrainConfig's)."""
    from .losses import LOSSES

    known = _settings(LOSSES)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"make_loss: unknown settings {unknown}; valid: {sorted(known)}")
    return LOSSES.get(name)(types.SimpleNamespace(**{**known, **settings}))


def make_penalty(name, weight=10.0, **settings):
    """A registry penalty (:data:`minigan.penalty.PENALTIES`) with weight λ (or γ, k)."""
    from .penalty import PENALTIES

    known = _settings(PENALTIES, critic_norm="none", penalty_weight=10.0)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"make_penalty: unknown settings {unknown}; valid: {sorted(known)}")
    config = types.SimpleNamespace(**{**known, **settings, "penalty_weight": float(weight)})
    return PENALTIES.get(name)(config)


def _call(module, x, labels):
    return module(x) if labels is None else module(x, labels)


def _zeros_like(x):
    return array_module(x).zeros_like(x)


class Game:
    """The game of generator ``G`` and discriminator ``D`` under a registry ``loss`` (a name or
    a Loss; settings via :func:`make_loss`) and an optional ``penalty`` (a name or a Penalty,
    weight via :func:`make_penalty`). Float64 models give float64-exact results; other dtypes
    work at their own precision. ``h`` is the central difference's relative step (penalty only).
    """

    DENSE_LIMIT = 400

    def __init__(self, G, D, loss, penalty=None, seed: int = 0, h: float = 1e-5):
        from .losses import Loss
        from .penalty import NoPenalty, Penalty

        self.G, self.D = G, D
        self.loss = make_loss(loss) if not isinstance(loss, Loss) else loss
        self.autoencoder = bool(getattr(self.loss, "autoencoder_critic", False))
        if self.autoencoder and penalty is not None:
            raise ValueError("Game: the began loss takes no penalty")
        if isinstance(penalty, str):
            penalty = make_penalty(penalty)
        if isinstance(penalty, NoPenalty):
            penalty = None
        if penalty is not None and not isinstance(penalty, Penalty):
            raise TypeError(f"Game: penalty must be a registry name or Penalty, got {type(penalty).__name__}")
        self.penalty = penalty
        self.seed, self.h = int(seed), float(h)
        self.params_G, self.params_D = list(G.parameters()), list(D.parameters())
        self.n_G, self.n_D = size_of(self.params_G), size_of(self.params_D)

    # --- what the numbers are ---------------------------------------------------------------
    @property
    def exact(self) -> bool:
        return self.penalty is None

    @property
    def method(self) -> str:
        return ("exact (forward-mode tangents)" if self.exact else
                "central difference of the exact field (float64), penalty has no tangent pass")

    @property
    def size(self) -> int:
        return self.n_G + self.n_D

    def split(self, vector):
        """(θ part, ψ part) of a flat vector over both players."""
        vector = np.asarray(vector, dtype=np.float64).reshape(-1)
        if vector.size != self.size:
            raise ValueError(f"Game: a vector over both players needs {self.size} entries "
                             f"({self.n_G} for G, {self.n_D} for D), got {vector.size}")
        return vector[:self.n_G], vector[self.n_G:]

    # --- the sweeps -------------------------------------------------------------------------
    def _draw(self):
        """The penalty's U[0, 1) draws, the same numbers at every evaluation."""
        rng = np.random.default_rng(self.seed)
        return lambda shape: rng.uniform(size=shape)

    # A sweep runs with tangents (J·v, Jᵀ·u) or, for the field alone, as the plain first-order
    # passes (``self._tangents`` False): then the tangents read as zeros and nothing computes them.
    _tangents = True

    def _generate(self, z, labels):
        fake = _call(self.G, z, labels)
        fake = array_module(fake).array(fake, copy=True)
        return fake, (self.G.tangent_forward(_zeros_like(z)) if self._tangents else _zeros_like(fake))

    def _score(self, x, labels, x_dot):
        out = _call(self.D, x, labels)
        out = array_module(out).array(out, copy=True)
        return out, (self.D.tangent_forward(x_dot) if self._tangents else _zeros_like(out))

    def _back(self, module, dy, dy_dot):
        """(dx, R{dx}) by the tangent pass (J·v and Jᵀ·u need no gradients: none accumulated),
        or (dx, None) by the plain backward (the field)."""
        if self._tangents:
            return module.tangent_backward(dy, dy_dot, accumulate=False)
        return module.backward(dy), None

    def _sweep_G(self, z, x, labels, through_real=False):
        """∇L_G's tangent sweep: z → G → D → L_G → D → G; with ``through_real`` also back through
        D on the real batch (a relativistic L_G reads D(x): its ψ-gradient has that path)."""
        fake, fake_dot = self._generate(z, labels)
        out_r = r_dot = on_real = None
        if self.loss.needs_real_in_g_step:
            out_r, r_dot = self._score(x, labels, _zeros_like(x))
            on_real = self.D.forward_caches()
        out_f, f_dot = self._score(fake, labels, fake_dot)
        _, d_f, t_f = loss_tangents.generator(self.loss, out_f, f_dot, out_r, r_dot)
        d_fake, d_fake_dot = self._back(self.D, d_f, t_f)
        self._back(self.G, d_fake, d_fake_dot)
        if through_real and out_r is not None:
            d_r, t_r = loss_tangents.generator_real_part(self.loss, out_f, f_dot, out_r, r_dot)
            self.D.restore_caches(on_real)
            self._back(self.D, d_r, t_r)

    def _sweep_D(self, z, x, labels, into_generator):
        """∇L_D's tangent sweep: D(x) and D(G(z)), L_D, back through D (and G if asked)."""
        fake, fake_dot = self._generate(z, labels)
        out_r, r_dot = self._score(x, labels, _zeros_like(x))
        on_real = self.D.forward_caches()
        out_f, f_dot = self._score(fake, labels, fake_dot)
        _, (d_r, d_f), (t_r, t_f) = loss_tangents.discriminator(self.loss, out_r, out_f, r_dot, f_dot)
        d_fake, d_fake_dot = self._back(self.D, d_f, t_f)
        if into_generator:
            self._back(self.G, d_fake, d_fake_dot)
        self.D.restore_caches(on_real)
        self._back(self.D, d_r, t_r)
        if self.penalty is not None:
            self.penalty.apply(self.D, x, fake, self._draw(), labels)

    def _sweep_jvp(self, z, x, labels):
        """J·v in one sweep (docs/tangents.md, "J·v in one sweep"): G's forward and D's forwards on
        the fake and the real batch once each, with their tangents, then four passes back:
        the ψ rows R{∇_ψ L_D} back through D from L_D's real part and from its fake part, the θ rows
        R{∇_θ L_G} back through D from L_G (for the tangent of ∂L_G/∂G(z) alone: D's R{dψ} are not
        formed) and on through G. D's saved values of the fake batch are put back after the real one's.
        """
        fake, fake_dot = self._generate(z, labels)
        out_f, f_dot = self._score(fake, labels, fake_dot)
        on_fake = self.D.forward_caches()
        out_r, r_dot = self._score(x, labels, _zeros_like(x))
        _, (d_r, d_f), (t_r, t_f) = loss_tangents.discriminator(self.loss, out_r, out_f, r_dot, f_dot)
        real = (out_r, r_dot) if self.loss.needs_real_in_g_step else ()
        _, d_g, t_g = loss_tangents.generator(self.loss, out_f, f_dot, *real)
        self._back(self.D, d_r, t_r)
        self.D.restore_caches(on_fake)
        self._back(self.D, d_f, t_f)
        with skipped_tangent_grads(self.D):
            d_fake, d_fake_dot = self._back(self.D, d_g, t_g)
        self._back(self.G, d_fake, d_fake_dot)

    # --- BEGAN: D an auto-encoder, L(v) = mean|v − D(v)|, L_D = L(x) − k·L(G(z)), L_G = L(G(z)) ---
    def _reconstruct(self, v, v_dot, weight, labels):
        """D on v with its tangent, then back through D from weight·∂L(v)/∂recon; returns
        (∂(weight·L)/∂v, its tangent): D's backward plus the direct path −weight·∂L/∂recon.
        ∂L/∂recon = sign(recon − v)/size is piecewise constant: its tangent is 0 (the ties
        recon = v are measure zero)."""
        recon, _ = self._score(v, labels, v_dot)
        _, d_recon, d_direct = losses.began_reconstruction_loss(v, recon)
        zero = _zeros_like(d_recon)
        dv, dv_dot = self._back(self.D, weight * d_recon, zero)
        return dv + weight * d_direct, dv_dot

    def _sweep_G_began(self, z, x, labels, through_real=False):
        fake, fake_dot = self._generate(z, labels)
        d_fake, d_fake_dot = self._reconstruct(fake, fake_dot, 1.0, labels)
        self._back(self.G, d_fake, d_fake_dot)

    def _sweep_D_began(self, z, x, labels, into_generator):
        fake, fake_dot = self._generate(z, labels)
        d_fake, d_fake_dot = self._reconstruct(fake, fake_dot, -self.loss.balance.k, labels)
        if into_generator:
            self._back(self.G, d_fake, d_fake_dot)
        self._reconstruct(x, _zeros_like(x), 1.0, labels)

    def _run(self, player, v, *args):
        """One sweep of ``player``'s loss ("G" or "D", or "J" for both players' rows of J·v): with
        tangents v over (θ, ψ), R{gradient} over both players' parameters; with v None (the
        first-order passes alone), the gradient."""
        sweeps = {"G": self._sweep_G_began, "D": self._sweep_D_began} if self.autoencoder else \
            {"G": self._sweep_G, "D": self._sweep_D, "J": self._sweep_jvp}
        sweep = sweeps[player]
        params = self.params_G + self.params_D
        with saved_buffers(self.G, self.D), fixed_spectral_norm(self.G, self.D):
            self.G.zero_grad()
            self.D.zero_grad()
            clear_tangents(params)
            set_tangents(params, v)
            self._tangents = v is not None
            try:
                sweep(*args)
                return tangent_grads(params) if self._tangents else gradients(params)
            finally:
                clear_tangents(params)
                self._tangents = True

    # --- the public products ----------------------------------------------------------------
    def field(self, z, x, labels=None):
        """ξ = (∇_θ L_G, ∇_ψ L_D) (with the penalty's gradient in ψ's part, if any)."""
        return np.concatenate([self.gradient("G", z, x, labels), self.gradient("D", z, x, labels)])

    def gradient(self, player, z, x, labels=None):
        """One player's part of ξ: ∇_θ L_G ("G") or ∇_ψ L_D ("D"), one sweep (half a field)."""
        if player == "G":
            return self._run("G", None, z, x, labels)[:self.n_G]
        if player == "D":
            return self._run("D", None, z, x, labels, False)[self.n_G:]
        raise ValueError(f"Game.gradient: player must be 'G' or 'D', got {player!r}")

    def jvp(self, z, x, v, labels=None):
        """J·v: exact; with a penalty, the central difference of the exact field (see ``method``)."""
        self.split(v)
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if not self.exact:
            return self._central_difference(z, x, v, labels)
        if not self.autoencoder:
            return self._run("J", v, z, x, labels)
        r_G = self._run("G", v, z, x, labels)
        r_D = self._run("D", v, z, x, labels, False)
        return np.concatenate([r_G[:self.n_G], r_D[self.n_G:]])

    def vjp(self, z, x, u, labels=None):
        """Jᵀ·u = ∇²L_G·(u_θ, 0) + ∇²L_D·(0, u_ψ) (each Hessian symmetric). With a penalty:
        Jᵀ from the dense central-difference J (games of at most DENSE_LIMIT parameters)."""
        u_G, u_D = self.split(u)
        if not self.exact:
            if self.size > self.DENSE_LIMIT:
                raise TangentUnsupported(f"Game.vjp with a penalty needs the dense J (at most {self.DENSE_LIMIT} "
                                         f"parameters, this game has {self.size})")
            return self.jacobian(z, x, labels).T @ np.asarray(u, dtype=np.float64).reshape(-1)
        r_G = self._run("G", np.concatenate([u_G, np.zeros(self.n_D)]), z, x, labels, True)
        r_D = self._run("D", np.concatenate([np.zeros(self.n_G), u_D]), z, x, labels, True)
        return r_G + r_D

    def _central_difference(self, z, x, v, labels):
        params = self.params_G + self.params_D
        w = parameter_vector(params)
        norm_v = float(np.linalg.norm(v))
        if norm_v == 0:
            return np.zeros(self.size)
        step = self.h * max(1.0, float(np.linalg.norm(w))) / norm_v
        try:
            set_parameter_vector(params, w + step * v)
            plus = self.field(z, x, labels)
            set_parameter_vector(params, w - step * v)
            minus = self.field(z, x, labels)
        finally:
            set_parameter_vector(params, w)
        return (plus - minus) / (2 * step)

    def jacobian(self, z, x, labels=None):
        """The dense J (size × size), one J·e_i per column: for small games."""
        if self.size > self.DENSE_LIMIT:
            raise ValueError(f"Game.jacobian: {self.size} parameters is more than DENSE_LIMIT = {self.DENSE_LIMIT}; "
                             "use eigenvalues(), which goes through J·v")
        eye = np.eye(self.size)
        return np.stack([self.jvp(z, x, eye[i], labels) for i in range(self.size)], axis=1)

    def eigenvalues(self, z, x, labels=None, k=None, which="LR"):
        """J's eigenvalues, sorted by ``which``: "LR"/"SR" largest/smallest real part, "LM" largest
        modulus (scipy's names). Dense for games of at most DENSE_LIMIT parameters (all of them,
        or the first k); otherwise the top k (default 6) by scipy.sparse.linalg.eigs on J·v."""
        keys = {"LR": lambda e: -e.real, "SR": lambda e: e.real, "LM": lambda e: -np.abs(e)}
        if which not in keys:
            raise ValueError(f"Game.eigenvalues: which must be one of {sorted(keys)}, got {which!r}")
        if self.size <= self.DENSE_LIMIT:
            values = np.linalg.eigvals(self.jacobian(z, x, labels))
        else:
            from scipy.sparse.linalg import LinearOperator, eigs

            k = 6 if k is None else k
            op = LinearOperator((self.size, self.size), matvec=lambda v: self.jvp(z, x, v, labels), dtype=np.float64)
            values = eigs(op, k=k, which=which, return_eigenvectors=False)
        values = values[np.argsort(keys[which](values), kind="stable")]
        return values if k is None else values[:k]


__all__ = ["Game", "make_loss", "make_penalty"]
