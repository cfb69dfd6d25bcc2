"""Conv2d and ConvTranspose2d through the kernel seam (im2col + one matrix product).

Conv2d, y = conv(x, W) + b, W (O, C, kh, kw), cols = im2col(x):
    forward       y = W(O, C·kh·kw) @ cols + b   (one kernel call, ``conv2d_forward``)
    backward      dW += dy(O, N·oh·ow) @ colsᵀ,  db += Σ_{n,y,x} dy,  dx = col2im(Wᵀ @ dy)
    second order  the layer is linear in x, so s = None; J·c = conv(c, W) (no bias);
                  ∂⟨c, Jᵀg⟩/∂W = ∂⟨conv(c, W), g⟩/∂W = weight gradient with input c and
                  output gradient g, i.e. g @ im2col(c)ᵀ.

ConvTranspose2d is the adjoint of a convolution: with W (C_in, C_out, kh, kw) read as a
convolution from C_out to C_in channels, y = convᵀ(x, W) + b = col2im(Wᵀ @ x) + b, so
    backward      dx = conv(dy, W),  dW += weight gradient with input dy and output gradient x,
                  db += Σ dy
    second order  J·c = convᵀ(c, W) (no bias); ∂⟨c, conv(g, W)⟩/∂W = c @ im2col(g)ᵀ, s = None.
Output size H_out = (H − 1)·s − 2p + k + output_padding, as in PyTorch.

Tangents (docs/tangents.md): both layers are bilinear in (x, W), so with ẋ, Ẇ, ḃ and ḋy
    Conv2d            ẏ = conv(ẋ, W) + conv(x, Ẇ) + ḃ,   R{dx} = convᵀ(ḋy, W) + convᵀ(dy, Ẇ),
                      R{dW} = ḋy @ im2col(x)ᵀ + dy @ im2col(ẋ)ᵀ,   R{db} = Σ ḋy
    ConvTranspose2d   ẏ = convᵀ(ẋ, W) + convᵀ(x, Ẇ) + ḃ,   R{dx} = conv(ḋy, W) + conv(dy, Ẇ),
                      R{dW} = ẋ @ im2col(dy)ᵀ + x @ im2col(ḋy)ᵀ (weight gradients, input/output
                      roles swapped),   R{db} = Σ ḋy
each term one call of the layer's own kernels.

Every pass of one forward and its backward takes the weight as ``conv2d_weight`` prepared it
at the forward (the fast kernels keep its channels-last permutation there, made once). So, as
in PyTorch (which raises an error), a weight changed in place between a forward and its
backward is not supported: the backward may see either values.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module, kernel
from .init import make_rng, torch_default
from ._checks import _positive_int
from .module import Module, Parameter, _check_float_dtype


def _pair_square(value, layer: str, name: str) -> int:
    """Square kernels/strides/paddings only: an int or an (a, a) pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"{layer}: {name} must be an int or a square pair (a, a), got {value!r}")
        value = value[0]
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"{layer}: {name} must be an integer, got {value!r}")
    return int(value)


def channels_last_memory(w):
    """A weight (A, B, kh, kw) with the same shape and values, its memory in (A, kh, kw, B)
    order: PyTorch's channels_last memory format. The fast kernels' W' (A, kh·kw·B) is then a
    view of the weight, not a permutation made at every forward, and their weight gradient is
    made in this order, kept as ``.grad`` with no permutation back (otherwise every wide layer
    permutes 0.5-2 MiB of weight, for a DCGAN, at each forward and weight gradient). Shapes,
    names and state_dict values are PyTorch's; only ``weight.data.flags.c_contiguous`` says
    otherwise."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _stacked(a, b, axis):
    """[a, b] along ``axis`` in a's memory order (a channels-last a stacks channels-last).
    Both convolutions are linear in the stacked operand, so ḋy∗W + dy∗Ẇ is ONE convolution of
    [ḋy, dy] with [W; Ẇ] over twice the channels: one product with twice the inner dimension
    and one scatter (row2im/col2im) instead of two, and no sum of two outputs."""
    shape = list(a.shape)
    shape[axis] += b.shape[axis]
    out = array_module(a).empty_like(a, shape=tuple(shape))
    split = [slice(None)] * a.ndim
    split[axis] = slice(0, a.shape[axis])
    out[tuple(split)] = a
    split[axis] = slice(a.shape[axis], None)
    out[tuple(split)] = b
    return out


class _ConvBase(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, bias, dtype, rng,
                 weight_shape):
        super().__init__()
        name = type(self).__name__
        _positive_int(in_channels, name, "in_channels")
        _positive_int(out_channels, name, "out_channels")
        self.kernel_size = _pair_square(kernel_size, name, "kernel_size")
        self.stride = _pair_square(stride, name, "stride")
        self.padding = _pair_square(padding, name, "padding")
        if self.kernel_size < 1 or self.stride < 1 or self.padding < 0:
            raise ValueError(f"{name}: need kernel_size >= 1, stride >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        dtype = _check_float_dtype(dtype, name)
        self.in_channels, self.out_channels = in_channels, out_channels
        w, b = torch_default(make_rng(rng), weight_shape, (out_channels,) if bias else None, dtype)
        self.weight = Parameter(channels_last_memory(w))
        self.bias = Parameter(b) if bias else None
        self._cache_x = self._cache_cols = self._cache_g = self._cache_gcols = self._cache_w = None

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")

    def _add_bias(self, y):
        """y + b per output channel, in place: y is always a fresh array the layer owns."""
        if self.bias is not None:
            y += self.bias.data.reshape(1, -1, 1, 1)
        return y

    def _defer_weight_grad(self, g, cols):
        """weight.grad += conv2d_backward_weight(g, cols), computed when weight.grad is next
        read or at this layer's next forward (Parameter.defer, flush): a critic's weight
        gradients in a generator step that reaches the generator through ``backward()``'s
        default ``accumulate=True`` are dropped by the critic's next zero_grad (before its
        next forward, as loops call it), never computed. g and array columns the layer does not own
        (a view of its input) are copied, so a caller that refills its arrays in place before
        reading .grad still gets the gradient of what it passed."""
        g = g.copy(order="K")   # K: a channels-last g stays channels-last (no transpose)
        flags = getattr(cols, "flags", None)   # None: the kernels' RowColumns
        if getattr(cols, "borrowed", False) or (flags is not None and not flags.owndata):
            cols = cols.copy()   # a view of the input (RowColumns.borrowed: a channels-last x)
        weight_grad, shape = kernel("conv2d_backward_weight", g), self.weight.shape
        self.weight.defer(lambda: weight_grad(g, cols, shape))

    def _prepare_weight(self, x):
        """The weight for this forward's passes and its backward's (``conv2d_weight``: the fast
        kernels keep its channels-last permutation there, made once), cached with the input."""
        self._cache_w = kernel("conv2d_weight", x)(self.weight.data)
        return self._cache_w

    def _cached_weight(self, keep: bool):
        """The forward's prepared weight (the array itself after it was released); released
        now unless ``keep`` (the second-order sweep comes back for it)."""
        w = self.weight.data if self._cache_w is None else self._cache_w
        if not keep:
            self._cache_w = None
        return w

    def _accumulate_bias(self, dy):
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=(0, 2, 3)))

    def _bias_tangent(self, y_dot):
        """ẏ + ḃ per output channel; R{db} = Σ ḋy is added by :meth:`_accumulate_bias_tangent`."""
        if self.bias is not None:
            y_dot += self.bias.tangent_or_zeros().reshape(1, -1, 1, 1)
        return y_dot

    def _transposed_pair(self, u, w, out_shape):
        """convᵀ(u, W) + convᵀ(w, Ẇ) (Conv2d's R{dx} with u = ḋy, w = dy; ConvTranspose2d's ẏ with
        u = ẋ, w = x) as one convolution of [u, w] with [W; Ẇ] (see :func:`_stacked`)."""
        w_stack = _stacked(self.weight.data, self.weight.tangent_or_zeros(), 0)
        return kernel("conv2d_backward_input", u)(_stacked(u, w, 1), w_stack, out_shape, self.stride, self.padding)

    def _accumulate_bias_tangent(self, dy_dot):
        if self.bias is not None:
            self.bias.accumulate_tangent(lambda: dy_dot.sum(axis=(0, 2, 3)))


class Conv2d(_ConvBase):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, dtype=np.float32, rng=None):
        k = _pair_square(kernel_size, "Conv2d", "kernel_size")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, dtype, rng,
                         (out_channels, in_channels, k, k))

    def forward(self, x):
        self._check_input(x, ndim=4, channels=self.in_channels)
        self.weight.flush()   # the last backward's deferred weight gradient frees its arrays first
        k, s, p = self.kernel_size, self.stride, self.padding
        if x.shape[2] + 2 * p < k or x.shape[3] + 2 * p < k:
            raise ValueError(f"Conv2d: input of spatial size {tuple(x.shape[2:])} with padding {p} is "
                             f"smaller than the kernel ({k}x{k})")
        bias = None if self.bias is None else self.bias.data
        y, cols = kernel("conv2d_forward", x)(x, self._prepare_weight(x), s, p, bias)  # conv(x, W) + b
        self._cache_x, self._cache_cols = x, cols
        return y

    def backward(self, dy, accumulate=True, create_graph=False):
        """Conv2d backward: dx, dW, db (docs/derivations.md, eq. L2)."""
        x = self._require(self._cache_x)
        if accumulate:
            cols = self._cache_cols
            if cols is None:  # a second backward after one forward: rebuild the columns
                k = self.kernel_size
                cols = kernel("im2col", x)(x, k, k, self.stride, self.padding)
            self._defer_weight_grad(dy, cols)
            self._accumulate_bias(dy)
        if create_graph:
            # the second-order sweep's backward passes (Sequential.double_backward) may come
            # back for the weight gradient: keep the columns
            self._cache_g = dy
        else:
            # The columns serve this weight gradient only: free them now, before dx's are
            # made, and before a generator's backward that follows a critic's (they would
            # otherwise stay cached until this layer's next forward).
            self._cache_cols = None
        w = self._cached_weight(keep=create_graph)
        return kernel("conv2d_backward_input", dy)(dy, w, x.shape, self.stride, self.padding)

    def double_backward(self, c):
        """Conv2d, second order (docs/derivations.md, eq. DB5)."""
        g = self._require(self._cache_g, "backward(create_graph=True)")
        w = self._cached_weight(keep=True)
        jc, c_cols = kernel("conv2d_forward", c)(c, w, self.stride, self.padding)
        self.weight.accumulate(kernel("conv2d_backward_weight", g)(g, c_cols, self.weight.shape))
        return jc, None

    def tangent_forward(self, x_dot):
        x = self._require(self._cache_x)
        s, p = self.stride, self.padding
        conv = kernel("conv2d_forward", x)
        y_dot, x_dot_cols = conv(x_dot, self._cached_weight(keep=True), s, p)     # conv(ẋ, W)
        y_dot += conv(x, self.weight.tangent_or_zeros(), s, p)[0]                # + conv(x, Ẇ)
        self._keep_tangent(x, (x_dot, x_dot_cols))
        return self._bias_tangent(y_dot)

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        x = self._require(self._cache_x)
        _, x_dot_cols = self._kept_tangent(x)
        s, p, shape = self.stride, self.padding, self.weight.shape
        cols = self._cache_cols

        def weight_tangent():   # R{dW} = dW(ḋy, x) + dW(dy, ẋ)
            columns = kernel("im2col", x)(x, self.kernel_size, self.kernel_size, s, p) if cols is None else cols
            weight_grad = kernel("conv2d_backward_weight", dy)
            return weight_grad(dy_dot, columns, shape) + weight_grad(dy, x_dot_cols, shape)
        self.weight.accumulate_tangent(weight_tangent)
        self._accumulate_bias_tangent(dy_dot)
        return self.backward(dy, accumulate=accumulate), self._transposed_pair(dy_dot, dy, x.shape)


class ConvTranspose2d(_ConvBase):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, bias: bool = True, dtype=np.float32, rng=None):
        k = _pair_square(kernel_size, "ConvTranspose2d", "kernel_size")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, dtype, rng,
                         (in_channels, out_channels, k, k))
        self.output_padding = _pair_square(output_padding, "ConvTranspose2d", "output_padding")
        if not 0 <= self.output_padding < self.stride:
            raise ValueError(f"ConvTranspose2d: output_padding must satisfy 0 <= output_padding < "
                             f"stride ({self.stride}), got {self.output_padding}")
        self._cache_out_shape = None

    def extra_repr(self):
        return super().extra_repr() + f", output_padding={self.output_padding}"

    def output_shape(self, x_shape):
        """ConvTranspose2d output size, output_padding (docs/derivations.md, eq. L12)."""
        k, s, p, op = self.kernel_size, self.stride, self.padding, self.output_padding
        h, w = ((size - 1) * s - 2 * p + k + op for size in x_shape[2:])
        if h < 1 or w < 1:
            raise ValueError(f"ConvTranspose2d: input of spatial size {tuple(x_shape[2:])} gives an "
                             f"empty output ({h}x{w}) with kernel {k}, stride {s}, padding {p}")
        return (x_shape[0], self.out_channels, h, w)

    def forward(self, x):
        """ConvTranspose2d forward (docs/derivations.md, eq. L3)."""
        self._check_input(x, ndim=4, channels=self.in_channels)
        self.weight.flush()   # the last backward's deferred weight gradient frees its arrays first
        out_shape = self.output_shape(x.shape)
        y = kernel("conv2d_backward_input", x)(x, self._prepare_weight(x), out_shape, self.stride,
                                               self.padding)
        self._cache_x, self._cache_out_shape = x, out_shape
        return self._add_bias(y)

    def backward(self, dy, accumulate=True, create_graph=False):
        """ConvTranspose2d backward: dx, dW, db (docs/derivations.md, eq. L3)."""
        x = self._require(self._cache_x)
        w = self._cached_weight(keep=create_graph)
        dx, dy_cols = kernel("conv2d_forward", dy)(dy, w, self.stride, self.padding)
        if accumulate:
            self._defer_weight_grad(x, dy_cols)
            self._accumulate_bias(dy)
        if create_graph:
            self._cache_g, self._cache_gcols = dy, dy_cols
        return dx

    def double_backward(self, c):
        """ConvTranspose2d, second order (docs/derivations.md, eq. DB6)."""
        self._require(self._cache_g, "backward(create_graph=True)")
        jc = kernel("conv2d_backward_input", c)(c, self._cached_weight(keep=True), self._cache_out_shape,
                                                self.stride, self.padding)
        self.weight.accumulate(kernel("conv2d_backward_weight", c)(c, self._cache_gcols, self.weight.shape))
        return jc, None

    def tangent_forward(self, x_dot):
        x = self._require(self._cache_x)
        y_dot = self._transposed_pair(x_dot, x, self._cache_out_shape)
        self._keep_tangent(x, x_dot)
        return self._bias_tangent(y_dot)

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        x = self._require(self._cache_x)
        x_dot = self._kept_tangent(x)
        s, p, shape = self.stride, self.padding, self.weight.shape
        conv = kernel("conv2d_forward", dy)
        dx_dot, dy_dot_cols = conv(dy_dot, self._cached_weight(keep=True), s, p)   # conv(ḋy, W)
        dx_w, dy_cols = conv(dy, self.weight.tangent_or_zeros(), s, p)             # conv(dy, Ẇ)
        dx_dot += dx_w
        weight_grad = kernel("conv2d_backward_weight", x)
        self.weight.accumulate_tangent(lambda: weight_grad(x_dot, dy_cols, shape) + weight_grad(x, dy_dot_cols, shape))
        self._accumulate_bias_tangent(dy_dot)
        return self.backward(dy, accumulate=accumulate), dx_dot
