"""Reference compute kernels (NumPy/CuPy-agnostic): convolution as im2col + one matrix product.

These are the readable reference implementations. Layers reach them through
``backend.kernel(name, x)``, so the Numba and CUDA twins in ``kernels/`` can replace
them for their array kind. Every function here works on numpy and cupy arrays alike.

Shapes: x (N, C, H, W); conv weight (O, C, kh, kw); the "columns" matrix holds every
receptive field as a column, cols[(c, i, j), (n, oy, ox)] = xpad[n, c, oy·s + i, ox·s + j],
so the convolution is the single product W(O, C·kh·kw) @ cols.

Besides the convolution, the kernels that the layers' hot loops go through:
``leaky_relu`` (ReLU and LeakyReLU forward), ``activation_tangent`` (their σ'(a)·u: backward,
second-order and tangent passes), ``batch_norm_forward``/``batch_norm_backward``
(training mode) and ``layer_norm_forward``/``layer_norm_backward``. Their formulas are the
layers' (derivations in the docstrings of :mod:`minigan.nn.norm` and docs/derivations.md);
they are here, behind the seam, so that ``kernels/`` can give them fast twins.
"""
from __future__ import annotations

from .backend import array_module, kernel, reference_kernel


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@reference_kernel
def im2col(x, kh: int, kw: int, stride: int, padding: int):
    """(N, C, H, W) -> cols (C·kh·kw, N·oh·ow). (docs/derivations.md, eq. L10)"""
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
    """The adjoint of im2col: scatter-add every column back into an (N, C, H, W) array.
    (docs/derivations.md, eq. L11)"""
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
def conv2d_weight(weight):
    """The weight as the convolution passes of one forward and its backward take it
    (``conv2d_forward``, ``conv2d_backward_input``; a layer asks once per forward). The
    reference passes take the array itself; a fast twin may return an object that keeps the
    weight in the layout its passes use as well (kernels/conv2d.py: the channels-last W',
    permuted once instead of in every pass). Every pass takes either."""
    return weight


def weight_array(weight):
    """The array of a weight from ``conv2d_weight`` (fast or reference), or the array itself."""
    return getattr(weight, "array", weight)


@reference_kernel
def conv2d_forward(x, weight, stride: int, padding: int, bias=None):
    """y = conv(x, W) (+ bias per output channel, if given); returns (y, cols) so backward
    can reuse the columns.
    (docs/derivations.md, eqs. L2, L10)"""
    weight = weight_array(weight)
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    cols = kernel("im2col", x)(x, kh, kw, stride, padding)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    y = (weight.reshape(o, -1) @ cols).reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y, cols


@reference_kernel
def conv2d_backward_input(dy, weight, x_shape, stride: int, padding: int):
    """dx = Jᵀ dy of the convolution: col2im(Wᵀ @ dy).  Also the transposed convolution's forward.
    (docs/derivations.md, eqs. L2, L11)"""
    weight = weight_array(weight)
    o, _, kh, kw = weight.shape
    dcols = weight.reshape(o, -1).T @ _flat_channels_first(dy)
    return kernel("col2im", dcols)(dcols, x_shape, kh, kw, stride, padding)


@reference_kernel
def conv2d_backward_weight(dy, cols, weight_shape):
    """dW = dy(O, N·oh·ow) @ colsᵀ, reshaped to (O, C, kh, kw).
    (docs/derivations.md, eqs. L2, L11)"""
    return (_flat_channels_first(dy) @ cols.T).reshape(weight_shape)


# --- elementwise ----------------------------------------------------------------------

@reference_kernel
def leaky_relu(a, negative_slope: float = 0.0):
    """σ(a) = a (a > 0), negative_slope·a (a ≤ 0): LeakyReLU, and ReLU for slope 0.
    (docs/derivations.md, eq. A2)

    (σ'(a)·u is :func:`activation_tangent` below.)"""
    xp = array_module(a)
    return a * xp.where(a > 0, 1.0, negative_slope).astype(a.dtype)


@reference_kernel
def activation_tangent(a, u, negative_slope: float = 0.0):
    """σ'(a)·u for ReLU (negative_slope = 0) and LeakyReLU(negative_slope).
    (docs/derivations.md, eq. DB7)

    One product, three uses: the first-order backward σ'(a)·dy; the forward-mode product J·u
    of the second-order pass (``double_backward``; its term σ''(a)·g·u is zero); the tangent
    ẏ = σ'(a)·ȧ."""
    xp = array_module(a)
    return xp.where(a > 0, 1.0, negative_slope).astype(a.dtype) * u


# --- normalisation --------------------------------------------------------------------
# x̂ = (x − μ)·r with r = (var + ε)^{-1/2} over a group of axes, y = γ x̂ + β, and the
# backward dx = r·P(γ·dy) with P(w) = w − mean(w) − x̂·mean(w x̂) (see minigan.nn.norm).

def normalize(x, axes, eps):
    """Return (x̂, r, biased var) over ``axes`` (kept as size-1 dims).
    (docs/derivations.md, eq. N1)"""
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=axes, keepdims=True)
    r = 1.0 / (var + eps) ** 0.5
    return xc * r, r, var


def project(w, xhat, axes):
    """P(w) = w − mean(w) − x̂·mean(w x̂) over the normalised axes.
    (docs/derivations.md, eqs. N3, N4)"""
    return w - w.mean(axis=axes, keepdims=True) - xhat * (w * xhat).mean(axis=axes, keepdims=True)


def project_tangent(dx, xhat, r, x_dot, xhat_dot, v, rp_v_dot, axes):
    """R{r·P(v)} for dx = r·P(v) over ``axes``: ṙ·P(v) + r·P(v̇) − r·[x̂̇·mean(v x̂) + x̂·mean(v x̂̇)],
    where ṙ·P(v) = (ṙ/r)·dx = −r·mean(x̂ ẋ)·dx and rp_v_dot = r·P(v̇) (docs/tangents.md,
    "Normalisation"): the tangent of batch and layer norm's input gradient."""
    def mean(a):
        return a.mean(axis=axes, keepdims=True)

    return rp_v_dot - r * (mean(xhat * x_dot) * dx + xhat_dot * mean(v * xhat) + xhat * mean(v * xhat_dot))


def _channel_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _channel_shape(x):
    return (1, -1) + (1,) * (x.ndim - 2)


@reference_kernel
def batch_norm_forward(x, weight, bias, eps: float):
    """Training-mode batch norm over every axis but axis 1 (the channels).
    (docs/derivations.md, eq. L5)

    Returns (y, x̂, r, μ, var): r with size-1 dims (as the layer caches it), the batch mean μ
    and biased variance var of shape (C,). ``weight``/``bias`` (γ, β) may be None (no affine).
    """
    axes = _channel_axes(x)
    xhat, r, var = normalize(x, axes, eps)
    if weight is None:
        y = xhat.copy()  # never hand out the cached x̂ itself
    else:
        y = weight.reshape(_channel_shape(x)) * xhat + bias.reshape(_channel_shape(x))
    return y, xhat, r, x.mean(axis=axes), var.reshape(-1)


@reference_kernel
def batch_norm_backward(dy, xhat, r, weight):
    """(dx, dγ, dβ) of training-mode batch norm: dx = r·P(γ·dy), dγ = Σ dy·x̂, dβ = Σ dy.
    (docs/derivations.md, eqs. L5, N2, N4)"""
    axes = _channel_axes(dy)
    v = dy if weight is None else weight.reshape(_channel_shape(dy)) * dy
    return r * project(v, xhat, axes), (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


@reference_kernel
def batch_norm_tangent_forward(x_dot, xhat, r, weight, weight_dot, bias_dot):
    """Training-mode batch norm's tangent forward: (ẏ, x̂̇) with x̂̇ = r·P(ẋ) (the statistics move
    with the batch) and ẏ = γ·x̂̇ + γ̇·x̂ + β̇ (docs/tangents.md, "Normalisation"). ``weight`` None
    (no affine): ẏ is x̂̇ itself."""
    axes, shape = _channel_axes(x_dot), _channel_shape(x_dot)
    xhat_dot = r * project(x_dot, xhat, axes)
    if weight is None:
        return xhat_dot, xhat_dot
    y_dot = weight.reshape(shape) * xhat_dot + weight_dot.reshape(shape) * xhat + bias_dot.reshape(shape)
    return y_dot, xhat_dot


@reference_kernel
def batch_norm_tangent_backward(dy, dy_dot, xhat, xhat_dot, x_dot, r, weight, weight_dot):
    """Training-mode batch norm's backward and its tangent in one call: (dx, R{dx}, dγ, dβ,
    R{dγ}, R{dβ}). With v = γ·dy, v̇ = γ·ḋy + γ̇·dy and x̂̇ = r·P(ẋ) from the tangent forward:
        dx = r·P(v),  R{dx} = r·P(v̇) − r·[mean(x̂ ẋ)·dx + x̂̇·mean(v x̂) + x̂·mean(v x̂̇)],
        dγ = Σ dy·x̂,  dβ = Σ dy,  R{dγ} = Σ (ḋy·x̂ + dy·x̂̇),  R{dβ} = Σ ḋy
    (docs/tangents.md, "Normalisation"). ``weight``/``weight_dot`` (γ, γ̇) None: no affine."""
    axes, shape = _channel_axes(dy), _channel_shape(dy)
    v, v_dot = dy, dy_dot
    if weight is not None:
        gamma = weight.reshape(shape)
        v, v_dot = gamma * dy, gamma * dy_dot + weight_dot.reshape(shape) * dy
    dx = r * project(v, xhat, axes)
    dx_dot = project_tangent(dx, xhat, r, x_dot, xhat_dot, v, r * project(v_dot, xhat, axes), axes)
    return (dx, dx_dot, (dy * xhat).sum(axis=axes), dy.sum(axis=axes),
            (dy_dot * xhat + dy * xhat_dot).sum(axis=axes), dy_dot.sum(axis=axes))


@reference_kernel
def layer_norm_forward(x, weight, bias, eps: float, normalized_ndim: int):
    """Layer norm over the trailing ``normalized_ndim`` axes; returns (y, x̂, r).
    (docs/derivations.md, eq. L7)"""
    xhat, r, _ = normalize(x, tuple(range(x.ndim - normalized_ndim, x.ndim)), eps)
    y = xhat.copy() if weight is None else weight * xhat  # never hand out the cached x̂ itself
    return (y if bias is None else y + bias), xhat, r


@reference_kernel
def layer_norm_backward(dy, xhat, r, weight, normalized_ndim: int):
    """(dx, dγ, dβ) of layer norm: dx = r·P(γ·dy), dγ = Σ_batch dy·x̂, dβ = Σ_batch dy.
    (docs/derivations.md, eqs. L7, N2, N4)"""
    axes = tuple(range(dy.ndim - normalized_ndim, dy.ndim))
    batch_axes = tuple(range(dy.ndim - normalized_ndim))
    v = dy if weight is None else weight * dy
    return r * project(v, xhat, axes), (dy * xhat).sum(axis=batch_axes), dy.sum(axis=batch_axes)
