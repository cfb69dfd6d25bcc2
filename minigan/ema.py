"""Exponential moving average of a generator's weights (Yazıcı et al. 2019).

    ema = EMA(generator, decay=0.999)
    ...after every generator optimizer step:  ema.update()
    ...to sample:  ema.module(z)  (an eval-mode copy holding the averaged weights)

``update()`` does θ_ema ← decay·θ_ema + (1 − decay)·θ for every parameter. Buffers
(BatchNorm's running statistics, spectral norm's u and v, ``num_batches_tracked``) are
*copied* from the live model, not averaged: that is what the common implementations do
(BigGAN's ``ema.update`` copies buffers; timm's ModelEmaV2 averages floating buffers too,
but running statistics averaged over past weights describe no network). After k updates
from θ_ema = θ₀ with parameters θ₁..θ_k,
θ_ema = decay^k·θ₀ + (1 − decay)·Σ_{j=1..k} decay^{k−j}·θ_j.

Optionally ``start_step``: updates before it copy θ (no averaging yet), a common warm-up.
State for checkpoints: ``state_dict()`` gives the averaged model's keys (the generator's,
unchanged) plus "ema.decay", "ema.num_updates"; ``load_state_dict()`` takes it back.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np

from .nn import Module


class EMA:
    def __init__(self, model: Module, decay: float = 0.999, start_step: int = 0):
        if not isinstance(model, Module):
            raise TypeError(f"EMA: expected a minigan.nn.Module, got {type(model).__name__}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA: decay must lie in [0, 1], got {decay!r}")
        if start_step < 0:
            raise ValueError(f"EMA: start_step must be >= 0, got {start_step!r}")
        self.model, self.decay, self.start_step = model, float(decay), int(start_step)
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        for m in self.module.modules():
            m._clear_cache()
        self.module.zero_grad()

    def _pairs(self):
        live = dict(self.model.named_parameters())
        for name, p in self.module.named_parameters():
            yield p, live[name]

    def update(self):
        """θ_ema ← decay·θ_ema + (1 − decay)·θ (a copy before ``start_step``); buffers copied.
        (docs/derivations.md, eqs. EMA1, EMA2)"""
        self.num_updates += 1
        d = self.decay if self.num_updates > self.start_step else 0.0
        for p_ema, p in self._pairs():
            if p_ema.data.shape != p.data.shape:
                raise ValueError("EMA.update: the model's parameters changed shape since the EMA was made")
            p_ema.data *= d
            p_ema.data += (1.0 - d) * p.data
        live = dict(self.model.named_buffers())
        for mod_name, mod in self.module.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name in mod._buffers:
                getattr(mod, name)[...] = live[prefix + name]

    def copy_to(self, module: Module) -> Module:
        """Load the averaged parameters and buffers into ``module`` (same architecture). Returns it."""
        return module.load_state_dict(self.module.state_dict())

    def state_dict(self) -> "OrderedDict[str, object]":
        sd = OrderedDict((k, v.copy()) for k, v in self.module.state_dict().items())
        sd["ema.decay"] = np.asarray(self.decay)
        sd["ema.num_updates"] = np.asarray(self.num_updates, dtype=np.int64)
        return sd

    def load_state_dict(self, state_dict):
        sd = dict(state_dict)
        for key in ("ema.decay", "ema.num_updates"):
            if key not in sd:
                raise KeyError(f"EMA.load_state_dict: missing key {key!r}")
        decay, updates = float(sd.pop("ema.decay")), int(sd.pop("ema.num_updates"))
        self.module.load_state_dict(sd)
        self.decay, self.num_updates = decay, updates
        return self

    def to(self, dtype=None, device=None):
        self.module.to(dtype=dtype, device=device)
        return self

    def __repr__(self):
        return f"EMA(decay={self.decay}, num_updates={self.num_updates}, start_step={self.start_step})"
