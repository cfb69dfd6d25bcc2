r"""Tangents of the losses' gradients: ∇²L (w.r.t. the network outputs) times the outputs' tangents.

Every loss of the registry (:mod:`minigan.recipes`) returns its gradient with respect to D's
outputs as a function of those outputs (:mod:`minigan.losses`). For a Hessian-vector product
(:mod:`minigan.hvp`) or a game Jacobian (:mod:`minigan.game`) the backward pass starts from
that gradient and its tangent R{d} = ∇²_o L·ȯ, derived here per loss (docs/tangents.md,
section 3). Notation as in losses.py: r = D(x) (N entries), f = D(G(z)) (M entries),
σ'(t) = σ(t)σ(−t).

Separable losses have a diagonal Hessian: R{d_i} = ℓ''(o_i)·ȯ_i/N.

    minimax D       ∂/∂r = −σ(−r)/N → σ'(r)/N;        ∂/∂f = σ(f)/M → σ'(f)/M
    minimax G       ∂/∂f = −σ(f)/M → −σ'(f)/M
    non-saturating  ∂/∂f = −σ(−f)/M → σ'(f)/M
    wgan, hinge G   constants → 0
    hinge D         −[r < 1]/N, [f > −1]/M: piecewise constant → 0 (the kinks are measure zero)
    lsgan           (r − b)/N → 1/N;  (f − a)/M → 1/M;  G (f − c)/M → 1/M
    fgan D          −g'(r)/N → −g''(r)/N;   (f*∘g)'(f)/M → (f*∘g)''(f)/M
    fgan G (the paper's non-saturating)  −g'(f)/M → −g''(f)/M

with g'' and (f*∘g)'' of each divergence in :data:`_FGAN_SECOND`.

Relativistic losses couple the outputs through batch means (a_i = r_i − mean f,
b_j = f_j − mean r), so their Hessian is not diagonal:

    paired (RSGAN)  t = r − f:  R{d_r} = φ₁''(t)(ṙ − ḟ)/N = −R{d_f}
    average         ȧ = ṙ − mean ḟ,  ḃ = ḟ − mean ṙ:
                    R{d_r} = (φ₁''(a)ȧ − mean φ₂''(b)ḃ)/N,   R{d_f} = (φ₂''(b)ḃ − mean φ₁''(a)ȧ)/M
    φ'' of the links: standard σ'(t) (both), lsgan 2 (both), hinge 0 (both; kinks measure zero).
The generator's loss is the discriminator's with the roles swapped (losses.relativistic_loss).
"""
from __future__ import annotations

import numpy as np

from . import losses as L
from .backend import array_module
from .nn.module import TangentUnsupported
from .recipes import FGan, Hinge, LeastSquares, Minimax, NonSaturating, Relativistic, Wasserstein


def _dsigmoid(t):
    """σ'(t) = σ(t)σ(−t), accurate in both tails."""
    return L.sigmoid(t) * L.sigmoid(-t)


def _zero(t):
    return array_module(t).zeros_like(t)


def _sech2_tanh(v):
    """−sech²(v)·tanh(v), the second derivative of ½tanh(v), without overflow."""
    xp = array_module(v)
    e = xp.exp(-2.0 * xp.abs(v))
    return -4.0 * e / ((1.0 + e) * (1.0 + e)) * xp.tanh(v)


def _jeffrey_second(v):
    """(f*)'' = 1/(w(1 + w)), w = ω(1 − v): the derivative of (f*)' = 1/w with dw/dt = −w/(1 + w)."""
    w = L._wright_omega(1.0 - v)
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
    return (1.0 - pi) * q / (pi * d * d) * dt * dt + (1.0 - pi) * q / d * (-_dsigmoid(v))


def _alpha_second(div, v):
    """α > 1 (g = v): (f*)'' = s^{(2−α)/(α−1)} for s = 1 + (α − 1)v > 0, else 0.
    α < 1, S = (1 − α)softplus(−v): d/dv[S^{1/(α−1)}σ(−v)] = S^{(2−α)/(α−1)}σ(−v)² − S^{1/(α−1)}σ'(v)."""
    xp, a = array_module(v), div.alpha
    with np.errstate(all="ignore"):
        if a > 1.0:
            s = 1.0 + (a - 1.0) * v
            return xp.where(s > 0, xp.power(xp.maximum(s, 1e-300), (2.0 - a) / (a - 1.0)), 0.0)
        s = (1.0 - a) * L.softplus(-v)
        p = L.sigmoid(-v)
        return xp.power(s, (2.0 - a) / (a - 1.0)) * p * p - xp.power(s, 1.0 / (a - 1.0)) * _dsigmoid(v)


# divergence name -> (g''(v), (f*∘g)''(v)) as functions of (div, v)
_FGAN_SECOND = {
    "kl": (lambda d, v: _zero(v), lambda d, v: array_module(v).exp(v - 1.0)),
    "reverse-kl": (lambda d, v: -array_module(v).exp(-v), lambda d, v: _zero(v)),
    "pearson": (lambda d, v: _zero(v), lambda d, v: _pearson_second(v)),
    "neyman": (lambda d, v: -array_module(v).exp(v), lambda d, v: -0.5 * array_module(v).exp(0.5 * v)),
    "squared-hellinger": (lambda d, v: -array_module(v).exp(v), lambda d, v: array_module(v).exp(-v)),
    "jeffrey": (lambda d, v: _zero(v), lambda d, v: _jeffrey_second(v)),
    "jensen-shannon": (lambda d, v: -_dsigmoid(v), lambda d, v: _dsigmoid(v)),
    "jensen-shannon-weighted": (lambda d, v: -_dsigmoid(v), _js_weighted_second),
    "gan": (lambda d, v: -_dsigmoid(v), lambda d, v: _dsigmoid(v)),
    "total-variation": (lambda d, v: _sech2_tanh(v), lambda d, v: _sech2_tanh(v)),
    "alpha": (lambda d, v: (_zero(v) if d.alpha > 1.0 else -_dsigmoid(v)), _alpha_second),
}


def _fgan_second(div, v):
    if type(div).__module__ != L.__name__ or div.name not in _FGAN_SECOND:
        raise TangentUnsupported(f"the f-divergence {div!r} has no second derivatives here (only "
                                 f"minigan's own: {', '.join(_FGAN_SECOND)})")
    activation, composite = _FGAN_SECOND[div.name]
    return activation(div, v), composite(div, v)


# relativistic link -> (φ₁'', φ₂'')
_LINK_SECOND = {
    "standard": (_dsigmoid, _dsigmoid),
    "lsgan": (lambda t: 2.0 + _zero(t), lambda t: 2.0 + _zero(t)),
    "hinge": (_zero, _zero),
}


def _relativistic_tangent(loss, r, f, r_dot, f_dot):
    """(R{d_r}, R{d_f}) of relativistic_loss(r, f) along (ṙ, ḟ)."""
    if loss.comm is not None and loss.comm.size > 1:
        raise TangentUnsupported("relativistic losses over several ranks have no tangent here; "
                                 "compute game Jacobians in one process")
    second1, second2 = _LINK_SECOND[loss.link]
    if not loss.average:
        t = second1(r - f) * (r_dot - f_dot) / r.size
        return t, -t
    a = r - f.mean(dtype=np.float64).astype(r.dtype)
    b = f - r.mean(dtype=np.float64).astype(f.dtype)
    pa = second1(a) * (r_dot - f_dot.mean())
    pb = second2(b) * (f_dot - r_dot.mean())
    return (pa - pb.mean()) / r.size, (pb - pa.mean()) / f.size


def _separable_d(loss, r, f):
    """(ℓ_r''(r)/N, ℓ_f''(f)/M) of a separable discriminator loss."""
    if isinstance(loss, Minimax):
        return _dsigmoid(r) / r.size, _dsigmoid(f) / f.size
    if isinstance(loss, (Wasserstein, Hinge)):
        return _zero(r), _zero(f)
    if isinstance(loss, LeastSquares):
        return 1.0 / r.size + _zero(r), 1.0 / f.size + _zero(f)
    if isinstance(loss, FGan):
        g2_r, _ = _fgan_second(loss.divergence, r)
        _, c2_f = _fgan_second(loss.divergence, f)
        return -g2_r / r.size, c2_f / f.size
    raise TangentUnsupported(f"the {loss.name!r} loss has no tangent (its gradient's derivative is not derived)")


def _separable_g(loss, f):
    """ℓ''(f)/M of a separable generator loss."""
    if isinstance(loss, NonSaturating):
        return _dsigmoid(f) / f.size
    if isinstance(loss, Minimax):
        return -_dsigmoid(f) / f.size
    if isinstance(loss, (Wasserstein, Hinge)):
        return _zero(f)
    if isinstance(loss, LeastSquares):
        return 1.0 / f.size + _zero(f)
    if isinstance(loss, FGan):
        g2, _ = _fgan_second(loss.divergence, f)
        return -g2 / f.size
    raise TangentUnsupported(f"the {loss.name!r} loss has no tangent (its gradient's derivative is not derived)")


def discriminator(loss, out_real, out_fake, dot_real, dot_fake):
    """L_D, its gradient (d_real, d_fake) and that gradient's tangent (R{d_real}, R{d_fake})
    along the outputs' tangents; ``loss`` a registry Loss (:data:`minigan.recipes.LOSSES`)."""
    value, (d_r, d_f) = loss.discriminator(out_real, out_fake)
    if isinstance(loss, Relativistic):
        t_r, t_f = _relativistic_tangent(loss, out_real, out_fake, dot_real, dot_fake)
    else:
        h_r, h_f = _separable_d(loss, out_real, out_fake)
        t_r, t_f = h_r * dot_real, h_f * dot_fake
    return value, (d_r, d_f), (t_r.astype(d_r.dtype, copy=False), t_f.astype(d_f.dtype, copy=False))


def generator(loss, out_fake, dot_fake, out_real=None, dot_real=None):
    """L_G, its gradient d_fake and that gradient's tangent R{d_fake}. Relativistic losses read
    D(x) and its tangent too (L_G is L_D with the roles swapped)."""
    value, d_f = loss.generator(out_fake, out_real)
    if isinstance(loss, Relativistic):
        t_f, _ = _relativistic_tangent(loss, out_fake, out_real, dot_fake, dot_real)
    else:
        t_f = _separable_g(loss, out_fake) * dot_fake
    return value, d_f, t_f.astype(d_f.dtype, copy=False)


def generator_real_part(loss, out_fake, dot_fake, out_real, dot_real):
    """∂L_G/∂D(x) and its tangent: zero for separable losses (L_G does not read D(x)); for the
    relativistic ones the swapped loss's second gradient. The trainer never needs it (x does not
    depend on G), but ∇²L_G over D's parameters does (Game.vjp)."""
    if not isinstance(loss, Relativistic):
        return None, None
    _, (_, d_r) = L.relativistic_loss(out_fake, out_real, loss.link, loss.average)
    _, t_r = _relativistic_tangent(loss, out_fake, out_real, dot_fake, dot_real)
    return d_r, t_r.astype(d_r.dtype, copy=False)
