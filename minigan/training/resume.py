"""What a resumed run may change, and the config it resumes with."""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, TrainConfig

# Settings a resumed run may change: they set how long and how fast it goes on, and what it
# logs, never what it is (the networks, the loss, the data, the random streams).
RESUMABLE = ("steps", "lr_d", "lr_g", "sample_every", "log_every", "checkpoint_every", "eval_samples",
             "reference", "threads", "progress_seconds", "tensorboard")


def resume_config(saved: TrainConfig, overrides: dict, out_dir) -> tuple[TrainConfig, dict]:
    """The resumed run's config and its changes {name: (old, new)}, compared on resolved values
    (``--lr-d 1e-4`` on a WGAN-GP run whose lr_d was left to its default changes nothing)."""
    overrides = {k: v for k, v in overrides.items() if not (k == "out" and Path(v) == Path(out_dir))}
    config = TrainConfig.from_dict({**saved.to_dict(), **overrides})
    before, after = saved.resolved(), config.resolved()
    changed = {k: (getattr(before, k), getattr(after, k)) for k in overrides
               if getattr(before, k) != getattr(after, k)}
    refused = sorted(k for k in changed if k not in RESUMABLE)
    if refused:
        shown = ", ".join(f"{k} ({changed[k][0]} → {changed[k][1]})" for k in refused)
        raise ConfigError(f"--resume cannot change {shown}: they define the run in {out_dir}; resume may "
                          f"change only {', '.join(RESUMABLE)} (start a new run with another --out instead)")
    return config, changed
