r"""Optimizers: SGD, RMSprop and Adam, with PyTorch's signatures and update rules.

Each ``step()`` reads ``p.grad`` (never modifies it) and updates ``p.data`` in place, so
references to the parameter arrays stay valid. Optimizer state (moment buffers) has the
parameter's dtype and lives on the parameter's device (NumPy or CuPy).

The arithmetic follows the single-tensor code paths of ``torch/optim/{sgd,rmsprop,adam}.py``
operation by operation, with every hyperparameter rounded to the parameter dtype before it
meets an array (as PyTorch casts a Scalar), so float32 results agree with PyTorch's CPU
results to rounding (PyTorch's vectorised kernels may fuse a multiply-add; NumPy does not).
PyTorch's composite ops are spelled out as they compute:

    a.add(b, alpha=s)            a + s*b
    a.addcmul(b, c, value=s)     a + (s*b)*c
    a.addcdiv(b, c, value=s)     a + (s*b)/c
    a.lerp_(b, w)                a + w*(b - a)            if |w| < 0.5
                                 b - (b - a)*(1 - w)      otherwise

Notation: θ parameter, g = p.grad, t = step count (1 on the first step), γ = lr,
λ = weight_decay, μ = momentum, τ = dampening.  With λ ≠ 0 every rule first takes
g ← g + λ·θ (L2 penalty added to the gradient, not decoupled weight decay).

SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)::

    if μ ≠ 0:   b ← g                      on the first step
                b ← μ·b + (1 − τ)·g        afterwards
                g ← g + μ·b   if nesterov  else   g ← b
    θ ← θ − γ·g

RMSprop(params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)::

    v ← α·v + (1 − α)·g²                                 (v₀ = 0)
    centered:  ḡ ← lerp(ḡ, g, 1 − α) = α·ḡ + (1 − α)·g    (ḡ₀ = 0)
               a ← sqrt(v − ḡ²) + ε
    otherwise: a ← sqrt(v) + ε
    if μ > 0:  b ← μ·b + g/a;   θ ← θ − γ·b               (b₀ = 0)
    else:      θ ← θ − γ·g/a

Adam(params, lr=1e-3, betas=(β₁, β₂)=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)::

    m ← lerp(m, g, 1 − β₁) = β₁·m + (1 − β₁)·g            (m₀ = 0)
    v ← β₂·v + (1 − β₂)·g²                                (v₀ = 0)
    c₁ = 1 − β₁ᵗ,  c₂ = 1 − β₂ᵗ                           (in Python float64)
    amsgrad:   v̂ ← max(v̂, v)  and use v̂ in place of v below  (v̂₀ = 0)
    d = sqrt(v)/sqrt(c₂) + ε
    θ ← θ − (γ/c₁)·m/d

which equals the paper's θ ← θ − γ·m̂/(sqrt(v̂) + ε) with m̂ = m/c₁, v̂ = v/c₂.

Parameters are given as an iterable of :class:`~minigan.nn.Parameter` (a generator such
as ``model.parameters()`` is fine) or as a list of dicts, the parameter groups, each with
a ``"params"`` entry and optional per-group hyperparameters (the rest come from the
constructor's arguments)::

    Adam([{"params": G.parameters()}, {"params": D.parameters(), "lr": 4e-4}], lr=1e-4)

``state_dict()`` gives plain NumPy arrays, ints and floats::

    {"state": {index: {"step": int, "<buffer>": ndarray, ...}, ...},
     "param_groups": [{"lr": ..., <hyperparameters>, "params": [index, ...]}, ...]}

where ``index`` numbers the parameters across groups in order. ``load_state_dict()``
checks everything first and then restores state and hyperparameters exactly (all or
nothing, ValueError naming the problem).
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_module, kernel, new_in_layout_of, reference_kernel, to_numpy
from .nn.module import Parameter

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam"]


# --- validation helpers ---------------------------------------------------------------

def _number(owner: str, name: str, value) -> float:
    """``value`` as a finite Python float, or a ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{owner}: invalid {name} {value!r}: expected a number, got a bool")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: invalid {name} {value!r}: expected a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{owner}: invalid {name} {value!r}: must be finite")
    return x


def _at_least_zero(owner: str, name: str, value) -> float:
    x = _number(owner, name, value)
    if x < 0.0:
        raise ValueError(f"{owner}: invalid {name} {value!r}: must be >= 0")
    return x


def _flag(owner: str, name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: invalid {name} {value!r}: expected True or False")
    return bool(value)


def _lerp_(start, end, weight: float):
    """``start.lerp_(end, weight)`` in place, computed as PyTorch computes it."""
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        start += w * (end - start)
    else:
        start[...] = end - (end - start) * (start.dtype.type(1) - w)
    return start


# --- the base class -------------------------------------------------------------------

class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, ``step``, state dicts.

    A subclass defines ``_check_group(group)`` (validate and normalise the hyperparameters
    of one group, in place), ``_state_names`` (the names of its per-parameter state arrays)
    and ``_update(p, state, group)`` (one step for one parameter).
    """

    _state_names: tuple = ()

    def __init__(self, params, defaults: dict):
        owner = type(self).__name__
        self.defaults = dict(defaults)
        self._check_group(self.defaults)
        self.param_groups: list[dict] = []
        self.state: dict = {}   # Parameter -> {"step": int, name: array, ...}
        if isinstance(params, (Parameter, dict)) or not hasattr(params, "__iter__"):
            raise ValueError(f"{owner}: params must be an iterable of Parameters or of dicts "
                             f"(parameter groups), got a {type(params).__name__}")
        items = list(params)
        if not items:
            raise ValueError(f"{owner}: got an empty parameter list")
        if all(isinstance(item, dict) for item in items):
            groups = items
        elif any(isinstance(item, dict) for item in items):
            raise ValueError(f"{owner}: params mixes Parameters and dicts (parameter groups); "
                             "give either a list of Parameters or a list of dicts")
        else:
            groups = [{"params": items}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add a group: ``{"params": iterable of Parameters, <hyperparameter>: value, ...}``."""
        owner = type(self).__name__
        if not isinstance(group, dict):
            raise ValueError(f"{owner}: a parameter group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"{owner}: a parameter group needs a 'params' entry")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(f"{owner}: unknown option(s) {unknown} in a parameter group; "
                             f"known: {sorted(self.defaults)}")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        if not params:
            raise ValueError(f"{owner}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise ValueError(f"{owner}: params item {i} is a {type(p).__name__}, not a "
                                 "minigan Parameter (pass model.parameters())")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(f"{owner}: some parameters appear more than once "
                             "(in one group or in several)")
        new = dict(self.defaults)
        new.update({k: v for k, v in group.items() if k != "params"})
        self._check_group(new)
        new["params"] = params
        self.param_groups.append(new)

    # --- training ---------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set the gradient of every parameter to zero (in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    def step(self, closure=None):
        """One update of every parameter from its ``.grad``; returns ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.setdefault(p, {"step": 0})
                state["step"] += 1
                self._update(p, state, group)
        return loss

    # --- state dict -------------------------------------------------------------------
    def _indexed_params(self) -> list:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """State and hyperparameters as plain NumPy arrays, ints and floats (copies)."""
        index = {id(p): i for i, p in enumerate(self._indexed_params())}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            state[index[id(p)]] = {k: (int(v) if k == "step" else np.array(to_numpy(v), copy=True))
                                   for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state and hyperparameters saved by :meth:`state_dict`, all or nothing."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{owner}: expected a dict with keys 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{owner}: the state dict has {len(saved_groups)} parameter "
                             f"group(s), this optimizer has {len(self.param_groups)}")
        # 1. hyperparameters, checked on copies
        new_groups = []
        for gi, (saved, own) in enumerate(zip(saved_groups, self.param_groups)):
            n_saved, n_own = len(saved.get("params", ())), len(own["params"])
            if n_saved != n_own:
                raise ValueError(f"{owner}: parameter group {gi} has {n_saved} parameter(s) in "
                                 f"the state dict but {n_own} in this optimizer")
            keys = set(saved) - {"params"}
            if keys != set(self.defaults):
                raise ValueError(f"{owner}: parameter group {gi} has options {sorted(keys)}, "
                                 f"expected {sorted(self.defaults)}")
            new = {k: v for k, v in saved.items() if k != "params"}
            self._check_group(new)
            new_groups.append(new)
        # 2. saved index -> parameter (indices as the saved groups list them, in order)
        mapping = {}
        for saved, own in zip(saved_groups, self.param_groups):
            for i, p in zip(saved["params"], own["params"]):
                mapping[int(i)] = p
        # 3. per-parameter state, converted but not yet installed
        new_state = {}
        for key, s in dict(state_dict["state"]).items():
            if int(key) not in mapping:
                raise ValueError(f"{owner}: state for parameter index {key}, but the parameter "
                                 f"groups only list indices {sorted(mapping)}")
            p = mapping[int(key)]
            if not isinstance(s, dict) or "step" not in s:
                raise ValueError(f"{owner}: state of parameter {key} has no 'step'")
            unknown = sorted(set(s) - set(self._state_names) - {"step"})
            if unknown:
                raise ValueError(f"{owner}: state of parameter {key} has unknown entries "
                                 f"{unknown}; {type(self).__name__} keeps {list(self._state_names)}")
            step = s["step"]
            try:
                good = (not isinstance(step, bool) and float(step).is_integer() and step >= 0)
            except (TypeError, ValueError, OverflowError):
                good = False
            if not good:
                raise ValueError(f"{owner}: state of parameter {key}: step must be a "
                                 f"non-negative integer, got {step!r}")
            entry = {"step": int(step)}
            for name in self._state_names:
                if name not in s:
                    continue
                arr = s[name]
                if tuple(np.shape(arr)) != tuple(p.shape):
                    raise ValueError(f"{owner}: state '{name}' of parameter {key} has shape "
                                     f"{tuple(np.shape(arr))}, the parameter has {tuple(p.shape)}")
                entry[name] = new_in_layout_of(p.data, arr)
            new_state[p] = entry
        # 4. install
        for group, new in zip(self.param_groups, new_groups):
            group.update(new)
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for i, group in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameter(s), {opts}")
        return "\n".join(lines) + "\n)"

    # --- subclass hooks ---------------------------------------------------------------
    def _check_group(self, group: dict) -> None:
        raise NotImplementedError

    def _update(self, p: Parameter, state: dict, group: dict) -> None:
        raise NotImplementedError


# --- the optimizers -------------------------------------------------------------------

class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD."""

    _state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_group(self, g):
        o = type(self).__name__
        g["lr"] = _at_least_zero(o, "lr", g["lr"])
        g["momentum"] = _at_least_zero(o, "momentum", g["momentum"])
        g["dampening"] = _number(o, "dampening", g["dampening"])
        g["weight_decay"] = _at_least_zero(o, "weight_decay", g["weight_decay"])
        g["nesterov"] = _flag(o, "nesterov", g["nesterov"])
        if g["nesterov"] and (g["momentum"] <= 0.0 or g["dampening"] != 0.0):
            raise ValueError(f"{o}: nesterov=True requires momentum > 0 and dampening = 0 "
                             f"(got momentum={g['momentum']}, dampening={g['dampening']})")

    def _update(self, p, state, group):
        xp = array_module(p.data)
        c = p.data.dtype.type
        g = p.grad
        if group["weight_decay"] != 0:
            g = g + c(group["weight_decay"]) * p.data
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # xp.array, not g.copy(): on a 0-d parameter g may be a NumPy scalar
                buf = state["momentum_buffer"] = xp.array(g, dtype=p.data.dtype, copy=True)
            else:
                buf *= c(momentum)
                buf += c(1 - group["dampening"]) * g
            g = g + c(momentum) * buf if group["nesterov"] else buf
        p.data -= c(group["lr"]) * g


class RMSprop(Optimizer):
    """RMSprop (Hinton), plain or centered, with optional momentum, as torch.optim.RMSprop."""

    _state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _check_group(self, g):
        o = type(self).__name__
        g["lr"] = _at_least_zero(o, "lr", g["lr"])
        g["alpha"] = _at_least_zero(o, "alpha", g["alpha"])
        if g["alpha"] > 1.0:
            raise ValueError(f"{o}: invalid alpha {g['alpha']!r}: must be in [0, 1]")
        g["eps"] = _at_least_zero(o, "eps", g["eps"])
        g["weight_decay"] = _at_least_zero(o, "weight_decay", g["weight_decay"])
        g["momentum"] = _at_least_zero(o, "momentum", g["momentum"])
        g["centered"] = _flag(o, "centered", g["centered"])

    def _update(self, p, state, group):
        xp = array_module(p.data)
        c = p.data.dtype.type
        alpha = group["alpha"]
        g = p.grad
        if group["weight_decay"] != 0:
            g = g + c(group["weight_decay"]) * p.data
        sq = state.get("square_avg")
        if sq is None:
            sq = state["square_avg"] = xp.zeros_like(p.data)
        sq *= c(alpha)
        sq += c(1 - alpha) * g * g
        if group["centered"]:
            ga = state.get("grad_avg")
            if ga is None:
                ga = state["grad_avg"] = xp.zeros_like(p.data)
            _lerp_(ga, g, 1 - alpha)
            avg = xp.sqrt(sq - ga * ga)
        else:
            avg = xp.sqrt(sq)
        avg += c(group["eps"])
        if group["momentum"] > 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = xp.zeros_like(p.data)
            buf *= c(group["momentum"])
            buf += g / avg
            p.data -= c(group["lr"]) * buf
        else:
            p.data -= c(group["lr"]) * g / avg


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional AMSGrad, as torch.optim.Adam (L2 weight decay)."""

    _state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check_group(self, g):
        o = type(self).__name__
        g["lr"] = _at_least_zero(o, "lr", g["lr"])
        betas = g["betas"]
        if not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"{o}: invalid betas {betas!r}: expected a pair (beta1, beta2)")
        b1, b2 = _number(o, "betas[0]", betas[0]), _number(o, "betas[1]", betas[1])
        for i, b in enumerate((b1, b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{o}: invalid betas[{i}] {b!r}: must be in [0, 1)")
        g["betas"] = (b1, b2)
        g["eps"] = _at_least_zero(o, "eps", g["eps"])
        g["weight_decay"] = _at_least_zero(o, "weight_decay", g["weight_decay"])
        g["amsgrad"] = _flag(o, "amsgrad", g["amsgrad"])

    def _update(self, p, state, group):
        xp = array_module(p.data)
        names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
        for name in names:
            if state.get(name) is None:
                state[name] = xp.zeros_like(p.data)   # zeros_like keeps p's memory order
            elif state[name].strides != p.data.strides:   # p.data replaced since: its order
                state[name] = new_in_layout_of(p.data, state[name])
        beta1, beta2 = group["betas"]
        step = state["step"]
        # c₁ = 1 − β₁ᵗ and sqrt(c₂) = sqrt(1 − β₂ᵗ) in Python float64, as PyTorch computes them
        kernel("adam_step", p.data)(
            p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
            beta1, beta2, group["lr"] / (1 - beta1 ** step), (1 - beta2 ** step) ** 0.5,
            group["eps"], group["weight_decay"])


@reference_kernel
def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, beta2, step_size,
              bias_correction2_sqrt, eps, weight_decay):
    """One Adam update of ``param``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, for AMSGrad,
    ``max_exp_avg_sq`` (v̂; None without AMSGrad), all in place; ``grad`` is only read.

    step_size = γ/c₁ and bias_correction2_sqrt = sqrt(c₂) are Python floats; every scalar is
    rounded to the parameter dtype before it meets an array, as in PyTorch:
        g ← g + λ·θ (λ ≠ 0);  m ← lerp(m, g, 1 − β₁);  v ← β₂·v + ((1 − β₂)·g)·g
        v̂ ← max(v̂, v) (AMSGrad);  d ← sqrt(v or v̂)/sqrt(c₂) + ε;  θ ← θ − (γ/c₁·m)/d
    The fast twin (kernels/adam.py) runs the same float operations in the same order, one
    element at a time, so both give the same bits.
    """
    xp = array_module(param)
    c = param.dtype.type
    g = grad
    if weight_decay != 0:
        g = g + c(weight_decay) * param
    _lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= c(beta2)
    exp_avg_sq += c(1 - beta2) * g * g
    if max_exp_avg_sq is not None:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = xp.sqrt(max_exp_avg_sq) / c(bias_correction2_sqrt)
    else:
        denom = xp.sqrt(exp_avg_sq) / c(bias_correction2_sqrt)
    denom += c(eps)
    param -= c(step_size) * exp_avg / denom
