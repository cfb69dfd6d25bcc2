"""Reference compute kernels (NumPy/CuPy-agnostic): convolution as im2col + one matrix product.

These are the readable reference implementations. Layers reach them through
``backend.kernel(name, x)``, so the Numba and CUDA twins in ``kernels/`` can replace
them for their array kind. Every function here works on numpy and cupy arrays alike.

Shapes: x (N, C, H, W); conv weight (O, C, kh, kw); the "columns" matrix holds every
receptive field as a column, cols[(c, i, j), (n, oy, ox)] = xpad[n, c, oy·s + i, ox·s + j],
so the convolution is the single product W(O, C·kh·kw) @ cols.
"""
from __future__ import annotations

from .backend import array_module, kernel, reference_kernel


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@reference_kernel
def im2col(x, kh: int, kw: int, stride: int, padding: int):
    """(N, C, H, W) -> cols (C·kh·kw, N·oh·ow)."""
    xp = array_module(x)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    xpad = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xpad[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            cols[:, i, j] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * oh * ow)


@reference_kernel
def col2im(cols, x_shape, kh: int, kw: int, stride: int, padding: int):
    """The adjoint of im2col: scatter-add every column back into an (N, C, H, W) array."""
    xp = array_module(cols)
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    xpad = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += \
                cols[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, padding:padding + h, padding:padding + w] if padding else xpad


def _flat_channels_first(y):
    """(N, O, oh, ow) -> (O, N·oh·ow), the layout of a product with the columns matrix."""
    return y.transpose(1, 0, 2, 3).reshape(y.shape[1], -1)


@reference_kernel
def conv2d_forward(x, weight, stride: int, padding: int):
    """y = conv(x, W) without bias; returns (y, cols) so backward can reuse the columns."""
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    cols = kernel("im2col", x)(x, kh, kw, stride, padding)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    y = (weight.reshape(o, -1) @ cols).reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    return y, cols


@reference_kernel
def conv2d_backward_input(dy, weight, x_shape, stride: int, padding: int):
    """dx = Jᵀ dy of the convolution: col2im(Wᵀ @ dy).  Also the transposed convolution's forward."""
    o, _, kh, kw = weight.shape
    dcols = weight.reshape(o, -1).T @ _flat_channels_first(dy)
    return kernel("col2im", dcols)(dcols, x_shape, kh, kw, stride, padding)


@reference_kernel
def conv2d_backward_weight(dy, cols, weight_shape):
    """dW = dy(O, N·oh·ow) @ colsᵀ, reshaped to (O, C, kh, kw)."""
    return (_flat_channels_first(dy) @ cols.T).reshape(weight_shape)
