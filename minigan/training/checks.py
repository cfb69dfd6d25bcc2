"""What stops a run that went wrong: a logged value or a gradient that is NaN/Inf.

On the CPU a player's gradients are checked before its optimizer step. On the GPU each check
is one device-side sum (finite iff every entry is), kept until the end of the step and fetched
with the step's logged metrics in one device→host transfer (:meth:`GradientChecks.host_metrics`):
the step's one host synchronisation. A bad gradient then stops the run at the end of the step it
appeared in, still named, the checkpoint on disk being the last good one.
"""
from __future__ import annotations

import math

from .. import backend


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/Inf; the message names the step and the quantity."""


def finite_or_raise(value: float, step: int, name: str):
    # Trainer.train adds which checkpoint (if any) is kept
    if not math.isfinite(value):
        raise TrainingDiverged(f"step {step}: {name} is {value} — training stopped")


def gradient_sum(module):
    """Σ of every gradient entry, as a 0-d device array: finite iff every gradient is."""
    return sum(p.grad.sum() for p in module.parameters())


def name_bad_gradient(module, step: int, which: str):
    """Raise TrainingDiverged naming the first parameter of ``module`` whose gradient is not finite."""
    for name, p in module.named_parameters():
        if not backend.array_module(p.grad).isfinite(p.grad).all():
            raise TrainingDiverged(f"step {step}: the gradient of {which}.{name} contains NaN/Inf — "
                                   "training stopped; the last good checkpoint is kept")


class GradientChecks:
    """The gradient checks of one step: immediate on the host, pending on the GPU."""

    def __init__(self, on_device: bool):
        self.on_device = on_device
        self.pending = []  # (module, which, 0-d device sum)

    def reset(self):
        self.pending = []  # none left over from a step that raised

    def check(self, module, which: str, step: int):
        if self.on_device:
            self.pending.append((module, which, gradient_sum(module)))
        elif not math.isfinite(sum(float(p.grad.sum()) for p in module.parameters())):
            name_bad_gradient(module, step, which)

    def host_metrics(self, metrics: dict, step: int) -> dict:
        """The step's metrics as Python floats. On the GPU its values are 0-d device arrays until
        here: they and the pending gradient checks come over in one device→host transfer."""
        checks, self.pending = self.pending, []
        on_device = [k for k, v in metrics.items() if not backend.backend_of(v).host]
        device_values = [metrics[k] for k in on_device] + [total for _, _, total in checks]
        if not device_values:
            return metrics
        device = backend.backend_of(device_values[0])  # whichever backend the models live on
        xp = device.module()
        values = device.to_host(xp.stack([xp.asarray(v, dtype=xp.float64) for v in device_values]))
        for (module, which, _), total in zip(checks, values[len(on_device):]):
            if not math.isfinite(total):
                name_bad_gradient(module, step, which)
        return {**metrics, **{k: float(v) for k, v in zip(on_device, values)}}
