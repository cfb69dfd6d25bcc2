r"""Tangents of the losses' gradients: ∇²L (w.r.t. the network outputs) times the outputs' tangents.

Every loss of the registry (:data:`minigan.losses.LOSSES`) returns its gradient with respect to
D's outputs as a function of those outputs. For a Hessian-vector product (:mod:`minigan.hvp`)
or a game Jacobian (:mod:`minigan.game`) the backward pass starts from that gradient and its
tangent R{d} = ∇²_o L·ȯ, which each loss derives next to its math (its ``*_hessian`` or
``*_tangent`` methods; docs/tangents.md, section 3). These are the entry points.
"""
from __future__ import annotations


def discriminator(loss, out_real, out_fake, dot_real, dot_fake):
    """L_D, its gradient (d_real, d_fake) and that gradient's tangent (R{d_real}, R{d_fake})
    along the outputs' tangents; ``loss`` a registry Loss (:data:`minigan.losses.LOSSES`)."""
    value, (d_r, d_f) = loss.discriminator(out_real, out_fake)
    t_r, t_f = loss.discriminator_tangent(out_real, out_fake, dot_real, dot_fake)
    return value, (d_r, d_f), (t_r.astype(d_r.dtype, copy=False), t_f.astype(d_f.dtype, copy=False))


def generator(loss, out_fake, dot_fake, out_real=None, dot_real=None):
    """L_G, its gradient d_fake and that gradient's tangent R{d_fake}. Relativistic losses read
    D(x) and its tangent too (L_G is L_D with the roles swapped)."""
    value, d_f = loss.generator(out_fake, out_real)
    t_f = loss.generator_tangent(out_fake, dot_fake, out_real, dot_real)
    return value, d_f, t_f.astype(d_f.dtype, copy=False)


def generator_real_part(loss, out_fake, dot_fake, out_real, dot_real):
    """∂L_G/∂D(x) and its tangent: (None, None) for separable losses (L_G does not read D(x));
    for the relativistic ones the swapped loss's second gradient (Game.vjp needs it)."""
    d_r, t_r = loss.generator_real_part(out_fake, dot_fake, out_real, dot_real)
    return (None, None) if d_r is None else (d_r, t_r.astype(d_r.dtype, copy=False))
