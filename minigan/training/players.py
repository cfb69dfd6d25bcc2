"""The pieces every scheme's step is made of: the critic's backward on a loss (separable or
coupled), WGAN's weight clipping, and the logged summary of D's outputs.

A separable D loss (a real term plus a fake term) has ∂L/∂D(x) depending on D(x) alone: D runs
on the real batch, backpropagates, then on the fake batch (:func:`backward_discriminator_loss`).
A coupled one (relativistic) needs both outputs first (:func:`backward_coupled_discriminator_loss`).
"""
from __future__ import annotations

from .. import backend, losses


def backward_discriminator_loss(D, d_loss, real, fake, labels=None):
    """D on the real batch, backward of the loss's real term; then the same for the fake batch.

    Every D loss here is a real term plus a fake term, so ∂L/∂D(x) needs D(x) alone and each
    forward is followed by its own backward (BatchNorm sees the batches separately, as in
    DCGAN). Adds D's parameter gradients; returns (loss value, D(x), D(x̃)).
    """
    def run(x):
        return D(x) if labels is None else D(x, labels)

    out_r = run(real)
    _, (d_r, _) = d_loss(out_r, out_r)  # the real term's gradient needs D(x) only
    D.backward(d_r)
    out_f = run(fake)
    value, (_, d_f) = d_loss(out_r, out_f)
    D.backward(d_f)
    return value, out_r, out_f


def _buffers(module) -> dict:
    return {name: backend.array_module(b).array(b, copy=True) for name, b in module.named_buffers()}


def _restore_buffers(module, saved: dict):
    for name, b in module.named_buffers():
        b[...] = saved[name]


def backward_coupled_discriminator_loss(D, d_loss, real, fake, labels=None):
    """The D step of a loss whose ∂L/∂D(x) needs D(x̃) too (relativistic losses).

    A module keeps only its last forward for backward, so: D(x) (buffers saved before it),
    D(x̃), both gradients from the loss, backward of the fake batch (its forward is the
    cached one), then D(x) again from the saved buffers (BatchNorm's running statistics,
    spectral norm's power-iteration vectors: the rerun repeats the first forward exactly and
    leaves the buffers as after D(x), D(x̃)) and its backward. Cost: one more forward of D on
    the real batch (a D step is three forwards and two backwards instead of two and two)
    and a copy of D's buffers. BatchNorm still sees real and fake batches separately.
    Adds D's parameter gradients; returns (loss value, D(x), D(x̃)).
    """
    def run(x):
        return D(x) if labels is None else D(x, labels)

    before = _buffers(D)
    out_r = run(real)
    out_r = backend.array_module(out_r).array(out_r, copy=True)  # the next forward may reuse its memory
    out_f = run(fake)
    value, (d_r, d_f) = d_loss(out_r, out_f)
    D.backward(d_f)
    after = _buffers(D)
    _restore_buffers(D, before)
    run(real)
    D.backward(d_r)
    _restore_buffers(D, after)
    return value, out_r, out_f


def clip_weights(module, c: float):
    """WGAN's Lipschitz constraint: every parameter clipped to [−c, c] in place."""
    for p in module.parameters():
        backend.array_module(p.data).clip(p.data, -c, c, out=p.data)


def d_summary(loss, out):
    """Mean D output: a probability σ(logit) for the minimax losses, the raw value otherwise."""
    if loss.probability_summary:
        return losses.scalar(losses.sigmoid(out).mean())
    return losses.scalar(out.mean())
