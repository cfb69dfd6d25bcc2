"""Parameter, Module and Sequential: the layer contract every part of minigan stands on.

The contract (see docs/derivations.md for the math):

* ``forward(x)`` returns the output and keeps what backward needs.
* ``backward(dy, accumulate=True, create_graph=False)`` returns dx = Jᵀ·dy and, if
  ``accumulate``, adds the parameter gradients into ``Parameter.grad``. With
  ``create_graph=True`` the layer also keeps ``dy`` (the "g" of the second-order pass).
* ``double_backward(c)`` — the second-order pass of the gradient penalty. ``c`` is a
  cotangent on the dx returned by the last ``create_graph`` backward. It returns
  ``(J·c, s)``: the cotangent on that backward's ``dy`` and the second-order cotangent
  s = ∂⟨c, Jᵀg⟩/∂a on the layer's input a (``None`` when it is zero, as for affine and
  piecewise-linear layers), and adds ∂⟨c, Jᵀg⟩/∂θ into the parameter gradients.
* ``tangent_forward(ẋ)`` — forward mode after ``forward(x)``: ẏ = ∂y/∂x·ẋ + ∂y/∂θ·θ̇, with the
  parameter direction θ̇ read from ``Parameter.tangent`` (None: zero).
* ``tangent_backward(dy, dy_dot, accumulate=True)`` — after ``tangent_forward``: the backward
  pass and its tangent together (Pearlmutter's R-operator). Returns ``(dx, R{dx})``, adds R{dθ}
  into ``Parameter.tangent_grad`` and, if ``accumulate``, dθ into ``Parameter.grad`` exactly as
  ``backward(dy)`` does (a Hessian-vector product alone skips the weight gradients' products).
  R{·} is the directional derivative along (ẋ, θ̇) with R{dy} = dy_dot, so for a scalar loss
  L(f(x; θ)) with dy = ∇_y L and dy_dot = ∇²_y L·ẏ, R{dθ} and R{dx} are the Hessian-vector product H·(θ̇, ẋ)
  (minigan.hvp; derivations in docs/tangents.md).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend


class Parameter:
    """A trainable array ``data`` and its accumulated gradient ``grad`` (same shape, dtype).

    A layer may add a contribution to ``grad`` lazily (:meth:`defer`): it is computed when
    ``grad`` is next read or :meth:`flush` is called (a convolution flushes at its next
    forward), and never when :meth:`zero_grad` (or assigning ``grad``) comes first. A
    convolution's weight gradient is added this way, so a loop that back-propagates
    through a critic with the default ``accumulate=True`` only to reach the generator (the
    critic's gradients cleared by its next ``zero_grad``) does not pay for the critic's weight
    gradients; whoever reads ``grad`` (an optimizer, a clipping or a check) gets exactly what
    the eager sum would have held, the contributions added in the order they were made.
    Layers add their eager contributions with :meth:`accumulate` (Linear's weights), which
    keeps the first one after :meth:`zero_grad` as ``grad`` itself, as a deferred one is kept.
    """

    def __init__(self, data):
        self.data = data
        self._pending = []   # zero-argument callables, each returning an array to add into grad
        self._grad = backend.array_module(data).zeros_like(data)
        self._zeroed = False  # zero_grad was called and _grad not yet written: it reads as zeros

    @property
    def grad(self):
        self.flush()
        if self._zeroed:   # nothing came since zero_grad: the zeros are written now
            self._grad[...] = 0
            self._zeroed = False
        return self._grad

    def flush(self) -> None:
        """Compute the deferred contributions now and add them into ``grad`` (in their order).
        A convolution flushes its weight at its next forward: the arrays they hold (its
        columns and dy, as large as its input and output) are freed before the next pass
        makes its own, and a loop that clears the gradients before that forward (zero_grad
        first, as PyTorch's loops do) still drops the unread ones without computing them.
        The first contribution after :meth:`zero_grad` becomes ``grad`` itself (0 + c = c): no
        pass writes the zeros and none adds them (a DCGAN step's conv weights: two passes over
        each weight gradient fewer)."""
        if self._pending:
            pending, self._pending = self._pending, []
            for contribution in pending:
                self._add(contribution())

    def accumulate(self, part) -> None:
        """``grad += part`` now, after any deferred contributions. ``part`` must be a new
        array that nothing else holds (a layer's fresh product or sum): the first
        contribution after :meth:`zero_grad` becomes ``grad`` itself, so a step's first
        gradient costs no pass that writes zeros and none that adds (Linear's weights)."""
        self.flush()
        self._add(part)

    def _add(self, part) -> None:
        if self._zeroed and self._may_keep(part):
            self._grad = part
        else:
            if self._zeroed:
                self._grad[...] = 0
            self._grad += part
        self._zeroed = False

    def _may_keep(self, part) -> bool:
        """Whether a contribution can stand as the gradient array itself: an array of the
        gradient's kind, shape and dtype, writeable, dense, and in the gradient's memory order
        (C order, or a convolution weight's channels-last order: the optimizers' kernels read
        parameter, gradient and state in one order) (defer's contract: the callable returns a
        new array of its own). CuPy's arrays are always writeable, and its flags (CuPy 14) have
        no ``writeable``: a missing flag reads as writeable."""
        grad = self._grad
        return (type(part) is type(grad) and part.shape == grad.shape and part.dtype == grad.dtype
                and getattr(part.flags, "writeable", True) and _is_dense(part) and _same_order(part, grad))

    @grad.setter
    def grad(self, value):
        self._pending = []
        self._grad = value
        self._zeroed = False

    def defer(self, contribution) -> None:
        """Add ``contribution()`` into ``grad`` when ``grad`` is next read (dropped by
        :meth:`zero_grad`). The callable must hold its own copies of anything that may change
        in between (the caller's arrays), and return a new array that nothing else holds: the
        first contribution after zero_grad is kept as ``grad`` itself."""
        self._pending.append(contribution)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self):
        """Drop the pending contributions; ``grad`` reads as zeros (written when it is read,
        or replaced by the next deferred contribution)."""
        self._pending = []
        self._zeroed = True

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"

    # --- forward-mode tangents (minigan.hvp): θ̇ and R{dθ}, None standing for zero ----------
    tangent = None        # the direction θ̇ of a tangent pass (same shape as data)
    tangent_grad = None   # R{dθ}, accumulated by tangent_backward

    def tangent_or_zeros(self):
        """θ̇, or zeros when no direction was set."""
        if self.tangent is None:
            return backend.array_module(self.data).zeros_like(self.data)
        return self.tangent

    tangent_grad_wanted = True   # False: nothing reads R{dθ} (J·v's G rows pass through D): not formed

    def accumulate_tangent(self, part) -> None:
        """tangent_grad += part: a fresh array, or a zero-argument callable returning one, called
        only when R{dθ} is wanted (``tangent_grad_wanted``): a sweep that goes through a network
        for its input tangent alone (:class:`minigan.hvp.skipped_tangent_grads`) skips the products."""
        if not self.tangent_grad_wanted:
            return
        part = part() if callable(part) else part
        self.tangent_grad = part if self.tangent_grad is None else self.tangent_grad + part


def _is_dense(a) -> bool:
    """a fills its memory without gaps in C order or, 4-d, in channels-last (N, H, W, C) order."""
    return a.flags.c_contiguous or (a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous)


def _same_order(a, b) -> bool:
    """Same strides on every axis longer than 1 (an axis of length 1 has no order)."""
    return all(sa == sb for sa, sb, n in zip(a.strides, b.strides, a.shape) if n > 1)


class DoubleBackwardUnsupported(NotImplementedError):
    """Raised by layers that have no exact second-order pass (never a silently wrong one)."""


class TangentUnsupported(NotImplementedError):
    """Raised by layers that have no exact tangent pass (never a silently wrong one)."""


def _check_float_dtype(dtype, owner: str):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{owner}: dtype must be a floating type (float32 or float64), got {dtype}")
    return dtype


class Module:
    """Base class of every layer and model.

    Attributes that are ``Parameter`` or ``Module`` instances are registered in
    assignment order, which gives ``named_parameters()`` and ``state_dict()`` keys the
    same names and order as PyTorch. Buffers (running statistics) are registered with
    :meth:`register_buffer`.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration -------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        if name in self._buffers:  # re-assigning a buffer (bn.num_batches_tracked += 1) keeps it one
            object.__setattr__(self, name, value)
            return
        for table in (self._parameters, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        self._buffers[name] = None
        object.__setattr__(self, name, array)

    # --- traversal ----------------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = ""):
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self, prefix: str = ""):
        for mod_name, mod in self.named_modules(prefix):
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    # --- modes, dtype, device -----------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype=None, device=None):
        """Convert every parameter and floating buffer to ``dtype`` and/or ``device``."""
        if dtype is not None:
            dtype = _check_float_dtype(dtype, f"{type(self).__name__}.to")

        def convert(a, is_float):
            if device is not None:
                a = backend.to_device(a, device)
            if dtype is not None and is_float:
                a = a.astype(dtype, copy=False)
            return a

        for mod in self.modules():
            for p in mod._parameters.values():
                p.data = convert(p.data, True)
                p.grad = backend.array_module(p.data).zeros_like(p.data)
            for name in mod._buffers:
                a = getattr(mod, name)
                object.__setattr__(mod, name, convert(a, a.dtype.kind == "f"))
            mod._clear_cache()
        return self

    def _first_array(self):
        for p in self.parameters():
            return p.data
        for _, b in self.named_buffers():
            return b
        return None

    @property
    def xp(self):
        a = self._first_array()
        return np if a is None else backend.array_module(a)

    # --- state dict ---------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, object]":
        """name -> array, with the keys a torch.nn module of the same layers would have."""
        sd = OrderedDict()
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                sd[prefix + name] = p.data
            for name in mod._buffers:
                sd[prefix + name] = getattr(mod, name)
        return sd

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays from ``state_dict`` into this module, all or nothing.

        Missing keys, unexpected keys (when ``strict``) and wrong shapes raise a
        ``KeyError``/``ValueError`` naming them, before anything is changed.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if missing and strict:
            problems.append(f"missing keys {missing}")
        if unexpected and strict:
            problems.append(f"unexpected keys {unexpected}")
        wrong = [
            f"{k}: expected shape {tuple(own[k].shape)}, got {tuple(np.shape(state_dict[k]))}"
            for k in own if k in state_dict and tuple(np.shape(state_dict[k])) != tuple(own[k].shape)
        ]
        if wrong:
            problems.append("wrong shapes: " + "; ".join(wrong))
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + ", ".join(problems)
                             + " (nothing was loaded)")
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if prefix + name in state_dict:
                    p.data = backend.new_in_layout_of(p.data, state_dict[prefix + name])
            for name in mod._buffers:
                if prefix + name in state_dict:
                    old = getattr(mod, name)
                    xp = backend.array_module(old)
                    new = state_dict[prefix + name]
                    new = backend.to_numpy(new) if xp is np else new
                    object.__setattr__(mod, name, xp.asarray(new, dtype=old.dtype).copy())
        return self

    # --- the layer contract -------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, dy, accumulate: bool = True, create_graph: bool = False):
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def double_backward(self, c):
        """One layer's double backward: J c, parameter term, s (docs/derivations.md, eq. DB2)."""
        raise DoubleBackwardUnsupported(
            f"{type(self).__name__} has no second-order pass, so it cannot be part of a critic "
            "under the gradient penalty")

    def tangent_forward(self, x_dot):
        raise TangentUnsupported(
            f"{type(self).__name__} has no tangent pass (tangent_forward), so Hessian-vector "
            "products and game Jacobians cannot run through it")

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        raise TangentUnsupported(
            f"{type(self).__name__} has no tangent pass (tangent_backward), so Hessian-vector "
            "products and game Jacobians cannot run through it")

    def forward_caches(self) -> list:
        """What this module and every module below it keep from their last forward (the
        ``_cache*`` attributes), by reference: :meth:`restore_caches` puts them back, so one
        forward's saved values can serve backward passes after a forward on another batch
        (:meth:`minigan.game.Game.jvp`: D's passes on the real and on the fake batch)."""
        return [(m, {k: v for k, v in m.__dict__.items() if k.startswith("_cache")})
                for module in self.modules() for m in module._cache_holders()]

    @staticmethod
    def restore_caches(caches) -> None:
        """Put back what :meth:`forward_caches` took."""
        for m, saved in caches:
            m.__dict__.update(saved)

    def _cache_holders(self) -> list:
        """This module and any layer it runs that is not a registered child (spectral norm's)."""
        return [self]

    def _clear_cache(self):
        """Forget forward/backward caches (after to(), or to free memory)."""
        for key in [k for k in self.__dict__ if k.startswith("_cache")]:
            object.__setattr__(self, key, None)

    # --- helpers for layers -------------------------------------------------------
    def _keep_tangent(self, forward_cache, tangent):
        """Keep tangent_forward's input tangent, tied to the forward it belongs to."""
        object.__setattr__(self, "_cache_tangent", (forward_cache, tangent))

    def _kept_tangent(self, forward_cache):
        """The input tangent kept by tangent_forward after this very forward (else an error:
        a stale tangent from an earlier forward would give a silently wrong result)."""
        kept = getattr(self, "_cache_tangent", None)
        if kept is None or kept[0] is not forward_cache:
            raise RuntimeError(f"{type(self).__name__}: tangent_backward called before tangent_forward "
                               "(after the last forward)")
        return kept[1]

    def _require(self, cache, what: str = "forward"):
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before {what}")
        return cache

    def _check_input(self, x, ndim=None, channels=None, channel_axis=1, what="input"):
        """Reject non-arrays, non-float dtypes, a dtype other than the layer's, wrong rank or channels."""
        name = type(self).__name__
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"{name}: expected an array {what}, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise TypeError(f"{name}: {what} must be a floating array, got dtype {x.dtype}")
        own = self._first_array()
        if own is not None and own.dtype != x.dtype:
            raise TypeError(f"{name}: {what} has dtype {x.dtype} but the layer's parameters are "
                            f"{own.dtype}; convert one of them (x.astype or module.to(dtype=...))")
        if ndim is not None:
            ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
            if x.ndim not in ndims:
                want = " or ".join(str(n) for n in ndims)
                raise ValueError(f"{name}: expected a {want}-D {what}, got shape {tuple(x.shape)}")
        if channels is not None and x.shape[channel_axis] != channels:
            raise ValueError(f"{name}: expected {channels} channels/features on axis {channel_axis} "
                             f"of the {what}, got shape {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        """PyTorch's layout: the extra_repr lines, then each child as "(name): repr" indented."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items()]
        if len(extra_lines) == 1 and not child_lines:
            return f"{type(self).__name__}({extra_lines[0]})"
        lines = extra_lines + child_lines
        body = "\n  " + "\n  ".join(lines) + "\n" if lines else ""
        return f"{type(self).__name__}({body})"


def _add(a, b):
    """a + b where None stands for a zero cotangent."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


class Sequential(Module):
    """Layers applied in order; children are named "0", "1", ... as in torch.nn.Sequential."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a Module")
            setattr(self, str(i), layer)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for layer in self:
            x = layer(x)
        return x

    def backward(self, dy, accumulate=True, create_graph=False):
        """The backward pass that gives the input gradient (docs/derivations.md, eq. DB1)."""
        for layer in reversed(list(self)):
            dy = layer.backward(dy, accumulate=accumulate, create_graph=create_graph)
        return dy

    def double_backward(self, c):
        """Forward-mode sweep first to last, then the second-order cotangents flow back.
        (docs/derivations.md, eqs. DB2, DB3)

        Layer i computed g_{i-1} = J_iᵀ g_i in the backward pass. Sweeping i = 1..L,
        each layer turns the cotangent c_{i-1} on g_{i-1} into c_i = J_i c_{i-1} on g_i
        and reports s_i, the cotangent on its own input a_{i-1}. Each a_{i-1} also fed
        the layers above it, so the s_i are then carried down by ordinary backward
        passes (which add their parameter gradients): t_{i-1} = J_iᵀ t_i + s_i.
        """
        layers = list(self)
        seconds = []
        for layer in layers:
            c, s = layer.double_backward(c)
            seconds.append(s)
        t = None
        for layer, s in zip(reversed(layers), reversed(seconds)):
            if t is not None:
                t = layer.backward(t)
            t = _add(t, s)
        return c, t

    def tangent_forward(self, x_dot):
        for layer in self:
            x_dot = layer.tangent_forward(x_dot)
        return x_dot

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        for layer in reversed(list(self)):
            dy, dy_dot = layer.tangent_backward(dy, dy_dot, accumulate)
        return dy, dy_dot
