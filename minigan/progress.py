"""What a training run reports while it trains (rank 0, with progress on).

On a terminal: tqdm's bar with the live losses. Anywhere else (nohup, CI, a log file), where
a bar would be unreadable: one plain line every ``seconds`` (step/total, losses, steps/s, ETA),
the first one as soon as the time estimate is made.

The time estimate, printed once after the first few steps either way: seconds a step and the
time the steps left will take, measured on the steps after this process's first one (whose
time includes compiling the Numba kernels and the first allocations, so it is left out and
said so). For an image run under WGAN-GP's slow default, a second line names a faster recipe
as a command that runs (:func:`faster_recipe`).
"""
from __future__ import annotations

import shlex
import sys
import time

# the estimate waits for ESTIMATE_STEPS timed steps and ESTIMATE_SECONDS of them (a stable
# mean), or for ESTIMATE_MAX_STEPS timed steps however fast they are
ESTIMATE_STEPS, ESTIMATE_SECONDS, ESTIMATE_MAX_STEPS = 3, 2.0, 20
SHOWN_LOSSES = ("loss_d", "loss_g")


def duration(seconds: float) -> str:
    """A duration as a person reads it: 42 s, 3 min 05 s, 2 h 10 min, 3 d 4 h."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {m:02d} min"
    days, h = divmod(hours, 24)
    return f"{days} d {h} h"


def faster_recipe(config, image_side: int) -> str | None:
    """The command of a faster run of the same data, for an image run under WGAN-GP's slow
    default (n_critic ≥ 5 critic steps, each with the gradient penalty's double backprop, at
    32 px or more); None for any other run. The recipe is SNGAN's: hinge loss and spectral
    norm, one critic step and no penalty (hinge's defaults)."""
    c = config
    if c.model not in ("dcgan", "cdcgan") or c.penalty != "wgan-gp" or c.n_critic < 5 or image_side < 32:
        return None
    flags = ["--model", c.model, "--data", c.data, "--image-size", image_side, "--loss", "hinge",
             "--spectral-norm"]
    if c.base_width != 64:
        flags += ["--base-width", c.base_width]
    flags += ["--steps", c.steps, "--out", f"{c.out}-hinge"]
    return "minigan train " + " ".join(shlex.quote(str(f)) for f in flags)


def slow_default_note(config, image_side: int) -> str | None:
    """The line printed after the time estimate of a run :func:`faster_recipe` finds slow."""
    command = faster_recipe(config, image_side)
    if command is None:
        return None
    return (f"minigan: note: WGAN-GP's default takes {config.n_critic} critic steps per generator step, each with "
            f"the penalty's double backprop; a much faster recipe (SNGAN's: one critic step, no penalty) is: "
            f"{command}")


class Progress:
    """The reports of one training loop: call :meth:`update` after each step, :meth:`close` at
    the end. ``terminal``: a bar (True) or plain lines (False); None asks the stream."""

    def __init__(self, total: int, initial: int, desc: str, seconds: float = 30.0, terminal=None,
                 stream=None, hint: str | None = None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.total, self.seconds, self.hint, self.clock = total, seconds, hint, clock
        if terminal is None:
            terminal = self.stream.isatty()
        self.bar = None
        if terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                            mininterval=0.5, file=self.stream)
        self.first = None           # (step, seconds) of this process's first step
        self.timed = []             # (step, seconds) of the steps after it, until the estimate
        self.estimated = False
        self.last = None            # (step, clock) of the last plain line (or of the first step)

    def update(self, step: int, metrics: dict):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{metrics[k]:.3g}" for k in SHOWN_LOSSES if k in metrics}, refresh=False)
        now = self.clock()
        if self.first is None:
            self.first, self.last = (step, metrics["seconds"]), (step, now)
            return
        if not self.estimated:
            self.timed.append((step, metrics["seconds"]))
            if self._estimate_due():
                self.estimated = True
                self.write(self.estimate_line(step))
                if self.hint:
                    self.write(self.hint)
                self._plain_line(step, metrics, now)
                return
        if now - self.last[1] >= self.seconds:
            self._plain_line(step, metrics, now)

    def _estimate_due(self) -> bool:
        n, spent = len(self.timed), sum(s for _, s in self.timed)
        return n >= ESTIMATE_MAX_STEPS or (n >= ESTIMATE_STEPS and spent >= ESTIMATE_SECONDS)

    def estimate_line(self, step: int) -> str:
        per_step = sum(s for _, s in self.timed) / len(self.timed)
        left = self.total - step
        return (f"minigan: {per_step:.3g} s a step (mean of steps {self.timed[0][0]}-{self.timed[-1][0]}; "
                f"step {self.first[0]}, {self.first[1]:.3g} s with first-use costs such as compiling the kernels, "
                f"left out) — "
                f"about {duration(per_step * left)} for the {left} steps left of {self.total}")

    def _plain_line(self, step: int, metrics: dict, now: float):
        """step/total, losses, steps/s since the last line and the ETA at that rate (no bar only)."""
        if self.bar is not None:
            return
        rate = (step - self.last[0]) / max(now - self.last[1], 1e-9)
        losses = " ".join(f"{k} {metrics[k]:.4g}" for k in SHOWN_LOSSES if k in metrics)
        self.write(f"minigan: step {step}/{self.total} ({100 * step / self.total:.0f}%) {losses} — "
                   f"{rate:.3g} steps/s, ETA {duration((self.total - step) / rate) if rate > 0 else '?'}")
        self.last = (step, now)

    def write(self, line: str):
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
