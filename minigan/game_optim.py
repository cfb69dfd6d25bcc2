r"""Update rules for two-player games, over flat float64 vectors w = (θ, ψ) (DESIGN.md, "GANs as
games: the conventions"). Formulas, citations and the bilinear game's rates: docs/games.md.

One interface for every rule, so that a training scheme can call them:

    rule = make_rule("extragradient", lr=0.05)
    state = rule.init_state(w)            # a plain dict of arrays and ints (checkpointable)
    w = rule.step(w, state, ops)          # a new vector; ``state`` is updated in place

``ops`` is a :class:`FieldOps`: ξ(w), one player's part of ξ, J(w)·v and J(w)ᵀ·u, with counters
of what the rule asked (``ops.counts``). It wraps plain functions (the bilinear game of the tests)
or a :class:`minigan.game.Game` on a fixed batch (:func:`game_ops`). Each player descends its
own loss: ξ already carries each player's sign, so "a gradient step" is w − ηξ.

Costs, in field evaluations (both players' gradients = 1, one player's = ½) and J-products
(J·v or Jᵀ·u: a tangent sweep per player each, see minigan.game): the experiments budget on
``ops.cost()`` = fields + products.
"""
from __future__ import annotations

import numpy as np

RULES: dict = {}


def register(name):
    def add(cls):
        if name in RULES:
            raise ValueError(f"update rule {name!r} is registered twice")
        cls.name = name
        RULES[name] = cls
        return cls
    return add


def make_rule(name: str, lr: float, **hyper):
    """The rule ``name`` of :data:`RULES` with step size ``lr`` and its own hyper-parameters."""
    if name not in RULES:
        raise ValueError(f"unknown update rule {name!r}; valid: {', '.join(RULES)}")
    cls = RULES[name]
    unknown = sorted(set(hyper) - set(cls.defaults))
    if unknown:
        raise ValueError(f"update rule {name!r}: unknown settings {unknown}; valid: {sorted(cls.defaults)}")
    if not lr > 0:
        raise ValueError(f"update rule {name!r}: lr must be > 0, got {lr!r}")
    return cls(lr, **{**cls.defaults, **hyper})


class FieldOps:
    """The game at a point, for the rules: ``field(w)`` = ξ(w), ``player(w, "G"|"D")`` = that
    player's part of ξ, ``jvp(w, v)`` = J(w)·v, ``vjp(w, u)`` = J(w)ᵀ·u; ``n_G`` = θ's size.
    ``player_fn`` defaults to slicing the whole field (then it costs a whole field)."""

    def __init__(self, field_fn, n_G: int, jvp_fn=None, vjp_fn=None, player_fn=None):
        self._field, self._jvp, self._vjp, self._player = field_fn, jvp_fn, vjp_fn, player_fn
        self.n_G = int(n_G)
        self.counts = {"field": 0.0, "jvp": 0, "vjp": 0}

    def cost(self) -> float:
        return self.counts["field"] + self.counts["jvp"] + self.counts["vjp"]

    def field(self, w):
        self.counts["field"] += 1
        return np.asarray(self._field(w), dtype=np.float64)

    def player(self, w, player):
        if self._player is None:
            self.counts["field"] += 1
            xi = np.asarray(self._field(w), dtype=np.float64)
            return xi[:self.n_G] if player == "G" else xi[self.n_G:]
        self.counts["field"] += 0.5
        return np.asarray(self._player(w, player), dtype=np.float64)

    def jvp(self, w, v):
        if self._jvp is None:
            raise ValueError("this rule needs J·v: the game gave no jvp")
        self.counts["jvp"] += 1
        return np.asarray(self._jvp(w, v), dtype=np.float64)

    def vjp(self, w, u):
        if self._vjp is None:
            raise ValueError("this rule needs Jᵀ·u: the game gave no vjp")
        self.counts["vjp"] += 1
        return np.asarray(self._vjp(w, u), dtype=np.float64)


def game_ops(game, z, x, labels=None) -> FieldOps:
    """:class:`FieldOps` of a :class:`minigan.game.Game` on the fixed batch (z, x, labels): each
    call writes w into G's and D's parameters, then asks the game."""
    from .hvp import set_parameter_vector

    params = game.params_G + game.params_D

    def at(w):
        set_parameter_vector(params, w)

    def field(w):
        at(w)
        return game.field(z, x, labels)

    def player(w, name):
        at(w)
        return game.gradient(name, z, x, labels)

    def jvp(w, v):
        at(w)
        return game.jvp(z, x, v, labels)

    def vjp(w, u):
        at(w)
        return game.vjp(z, x, u, labels)

    return FieldOps(field, game.n_G, jvp, vjp, player)


# --- Adam's direction, shared by the Adam-based rules ------------------------------------------

def _adam_state(w) -> dict:
    return {"m": np.zeros_like(w), "v": np.zeros_like(w), "t": 0}


def _adam_direction(g, state, beta1, beta2, eps, part=slice(None)):
    """Kingma & Ba: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², d = m̂/(√v̂ + ε) with the bias
    corrections of step t (``state["t"]``, advanced by the caller); on ``part`` of the vector."""
    t = state["t"]
    m, v = state["m"], state["v"]
    m[part] = beta1 * m[part] + (1 - beta1) * g
    v[part] = beta2 * v[part] + (1 - beta2) * g * g
    return (m[part] / (1 - beta1 ** t)) / (np.sqrt(v[part] / (1 - beta2 ** t)) + eps)


class Rule:
    defaults: dict = {}
    name = ""

    def __init__(self, lr, **hyper):
        self.lr = float(lr)
        self.hyper = hyper
        for key, value in hyper.items():
            setattr(self, key, value)

    def init_state(self, w) -> dict:
        return {}

    def step(self, w, state, ops):
        raise NotImplementedError

    def __repr__(self):
        return f"{self.name}(lr={self.lr}, {', '.join(f'{k}={v}' for k, v in self.hyper.items())})"


@register("simultaneous")
class Simultaneous(Rule):
    """w ← w − ηξ(w)."""

    def step(self, w, state, ops):
        return w - self.lr * ops.field(w)


def _players(first, n_G):
    """[(player, slice)] in the order they move."""
    parts = {"G": slice(0, n_G), "D": slice(n_G, None)}
    if first not in parts:
        raise ValueError(f"alternating: first must be 'G' or 'D', got {first!r}")
    return [(first, parts[first]), *[(p, s) for p, s in parts.items() if p != first]]


@register("alternating")
class Alternating(Rule):
    """The first player steps, then the other from the first's new parameters (D first by
    default, as a GAN's training step): ψ ← ψ − ηξ_ψ(θ, ψ); θ ← θ − ηξ_θ(θ, ψ_new)."""
    defaults = {"first": "D"}

    def step(self, w, state, ops):
        w = w.copy()
        for player, part in _players(self.first, ops.n_G):
            w[part] = w[part] - self.lr * ops.player(w, player)
        return w


@register("adam")
class SimultaneousAdam(Rule):
    """Adam on ξ, both players at once: w ← w − η·Adam(ξ(w))."""
    defaults = {"beta1": 0.5, "beta2": 0.9, "eps": 1e-8}

    def init_state(self, w):
        return _adam_state(w)

    def step(self, w, state, ops):
        state["t"] += 1
        return w - self.lr * _adam_direction(ops.field(w), state, self.beta1, self.beta2, self.eps)


@register("alternating-adam")
class AlternatingAdam(Rule):
    """Adam, the players in turn (D first by default), as a GAN's usual training step."""
    defaults = {"beta1": 0.5, "beta2": 0.9, "eps": 1e-8, "first": "D"}

    def init_state(self, w):
        return _adam_state(w)

    def step(self, w, state, ops):
        state["t"] += 1
        w = w.copy()
        for player, part in _players(self.first, ops.n_G):
            g = ops.player(w, player)
            w[part] = w[part] - self.lr * _adam_direction(g, state, self.beta1, self.beta2, self.eps, part)
        return w


@register("extragradient")
class Extragradient(Rule):
    """Korpelevich 1976 (Gidel et al. 2019 for GANs): w½ = w − ηξ(w); w ← w − ηξ(w½)."""

    def step(self, w, state, ops):
        half = w - self.lr * ops.field(w)
        return w - self.lr * ops.field(half)


@register("extra-adam")
class ExtraAdam(Rule):
    """Gidel et al. 2019, Algorithm 4: extragradient with Adam's direction, the moments updated
    at both the extrapolation and the update (each a step of Adam's counter)."""
    defaults = {"beta1": 0.5, "beta2": 0.9, "eps": 1e-8}

    def init_state(self, w):
        return _adam_state(w)

    def step(self, w, state, ops):
        state["t"] += 1
        half = w - self.lr * _adam_direction(ops.field(w), state, self.beta1, self.beta2, self.eps)
        state["t"] += 1
        return w - self.lr * _adam_direction(ops.field(half), state, self.beta1, self.beta2, self.eps)


@register("optimistic")
class Optimistic(Rule):
    """Optimistic gradient (Daskalakis et al. 2018): w ← w − 2ηξ(w_t) + ηξ(w_{t−1}); the first
    step, with no previous field, is a plain gradient step (ξ_{−1} = ξ_0)."""

    def init_state(self, w):
        return {"previous": np.zeros_like(w), "started": 0}

    def step(self, w, state, ops):
        xi = ops.field(w)
        previous = state["previous"] if state["started"] else xi
        state["previous"], state["started"] = xi, 1
        return w - 2 * self.lr * xi + self.lr * previous


@register("optimistic-adam")
class OptimisticAdam(Rule):
    """Optimistic Adam (Daskalakis et al. 2018, Algorithm 1, with Adam's bias corrections):
    w ← w − 2η·d_t + η·d_{t−1}, d the Adam direction; d_0 = 0 (the first step is Adam's, ×2)."""
    defaults = {"beta1": 0.5, "beta2": 0.9, "eps": 1e-8}

    def init_state(self, w):
        return {**_adam_state(w), "previous": np.zeros_like(w)}

    def step(self, w, state, ops):
        state["t"] += 1
        d = _adam_direction(ops.field(w), state, self.beta1, self.beta2, self.eps)
        previous, state["previous"] = state["previous"], d
        return w - 2 * self.lr * d + self.lr * previous


@register("consensus")
class Consensus(Rule):
    """Consensus optimization (Mescheder et al. 2017): descend ξ + γ∇(½‖ξ‖²) = ξ + γJᵀξ."""
    defaults = {"gamma": 0.1}

    def step(self, w, state, ops):
        xi = ops.field(w)
        return w - self.lr * (xi + self.gamma * ops.vjp(w, xi))


def sga_direction(w, ops, lam, align, eps):
    """SGA (Balduzzi et al. 2018, Algorithm 1): ξ + λ·Aᵀξ with A = (J − Jᵀ)/2, so
    Aᵀξ = (Jᵀξ − Jξ)/2; with ``align``, λ's sign is sign(⟨ξ, ∇H⟩⟨Aᵀξ, ∇H⟩/d + ε), ∇H = Jᵀξ the
    gradient of H = ½‖ξ‖² and d the number of parameters. Returns (direction, signed λ)."""
    xi = ops.field(w)
    jt_xi = ops.vjp(w, xi)
    at_xi = 0.5 * (jt_xi - ops.jvp(w, xi))
    if align:
        lam = lam * np.sign(np.dot(xi, jt_xi) * np.dot(at_xi, jt_xi) / xi.size + eps)
    return xi + lam * at_xi, lam


@register("sga")
class SGA(Rule):
    """Symplectic gradient adjustment: w ← w − η(ξ + λAᵀξ) (see :func:`sga_direction`)."""
    defaults = {"lam": 1.0, "align": True, "eps": 0.1}

    def step(self, w, state, ops):
        direction, _ = sga_direction(w, ops, self.lam, self.align, self.eps)
        return w - self.lr * direction


@register("lookahead")
class Lookahead(Rule):
    """LookAhead-minmax (Chavdarova et al. 2021): k steps of a base rule on the fast weights w,
    then the slow weights ϕ ← ϕ + α(w − ϕ) and w ← ϕ, both players together. The base rule's
    step size is this rule's ``lr``; its other settings in ``base_settings``."""
    defaults = {"base": "alternating-adam", "k": 5, "alpha": 0.5, "base_settings": None}

    def __init__(self, lr, **hyper):
        super().__init__(lr, **hyper)
        if self.base == "lookahead":
            raise ValueError("lookahead: the base rule cannot be lookahead")
        if int(self.k) < 1 or not 0 < self.alpha <= 1:
            raise ValueError(f"lookahead: need k >= 1 and 0 < alpha <= 1, got k={self.k}, alpha={self.alpha}")
        self.inner = make_rule(self.base, lr, **(self.base_settings or {}))

    def init_state(self, w):
        return {"slow": np.array(w, dtype=np.float64, copy=True), "count": 0, "base": self.inner.init_state(w)}

    def step(self, w, state, ops):
        w = self.inner.step(w, state["base"], ops)
        state["count"] += 1
        if state["count"] % int(self.k) == 0:
            state["slow"] = state["slow"] + self.alpha * (w - state["slow"])
            w = state["slow"].copy()
        return w


def _j_theta_psi(w, ops, v_psi):
    """J_θψ·v_ψ: the θ-rows of J·(0, v_ψ)."""
    n = ops.n_G
    return ops.jvp(w, np.concatenate([np.zeros(n), v_psi]))[:n]


def _j_psi_theta(w, ops, v_theta, n_D):
    """J_ψθ·v_θ: the ψ-rows of J·(v_θ, 0); ψ has n_D entries."""
    return ops.jvp(w, np.concatenate([v_theta, np.zeros(n_D)]))[ops.n_G:]


def cgd_direction(w, ops, eta, tol, maxiter, zero_sum):
    """Competitive gradient descent's adjusted gradient g (Schäfer & Anandkumar 2019, general-sum
    form), the step being Δ = −ηg: g solves [[I, ηJ_θψ], [ηJ_ψθ, I]]·g = ξ. Eliminating
    g_ψ = ξ_ψ − ηJ_ψθg_θ: (I − η²J_θψJ_ψθ)·g_θ = ξ_θ − ηJ_θψξ_ψ, and then g_ψ equals
    (I − η²J_ψθJ_θψ)⁻¹(ξ_ψ − ηJ_ψθξ_θ), the paper's other formula. For a zero-sum game
    (J_ψθ = −J_θψᵀ) the matrix is I + η²J_θψJ_θψᵀ, symmetric positive definite: solved by conjugate
    gradients on J·v products (relative residual ``tol``, at most ``maxiter`` iterations); a
    general-sum game (``zero_sum=False``) by one GMRES cycle of at most ``maxiter`` iterations on the
    same products. Deterministic: the same products give the same g."""
    from scipy.sparse.linalg import LinearOperator, cg, gmres

    n = ops.n_G
    xi = ops.field(w)
    n_D = xi.size - n

    def matvec(v_theta):   # (I − η²J_θψJ_ψθ)·v_θ
        return v_theta - eta * eta * _j_theta_psi(w, ops, _j_psi_theta(w, ops, v_theta, n_D))

    operator = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    rhs = xi[:n] - eta * _j_theta_psi(w, ops, xi[n:])
    if zero_sum:
        g_theta, info = cg(operator, rhs, rtol=tol, atol=0.0, maxiter=int(maxiter))
    else:   # one GMRES cycle of at most maxiter products, as CG's budget
        g_theta, info = gmres(operator, rhs, rtol=tol, atol=0.0, restart=int(maxiter), maxiter=1)
    if info < 0:
        raise ValueError(f"cgd: the linear solve broke down (info {info})")
    return np.concatenate([g_theta, xi[n:] - eta * _j_psi_theta(w, ops, g_theta, n_D)])


@register("cgd")
class CGD(Rule):
    """Competitive gradient descent (Schäfer & Anandkumar 2019): w ← w − ηg, g = the adjusted
    gradient of :func:`cgd_direction` (CG for a zero-sum game, GMRES with ``zero_sum=False``)."""
    defaults = {"tol": 1e-10, "maxiter": 50, "zero_sum": True}

    def step(self, w, state, ops):
        return w - self.lr * cgd_direction(w, ops, self.lr, self.tol, self.maxiter, self.zero_sum)


__all__ = ["RULES", "FieldOps", "cgd_direction", "game_ops", "make_rule", "register", "sga_direction"]
