# minigan.kernels.norm (the folder kernels/ installs under minigan's namespace)
"""Batch norm (training mode) and layer norm on the CPU (Numba).

Fast twins of :func:`minigan.functional.batch_norm_forward`, ``batch_norm_backward``,
``layer_norm_forward`` and ``layer_norm_backward``. Same formulas,
    μ = mean x,  var = mean (x − μ)²,  r = (var + ε)^{-1/2},  x̂ = (x − μ)·r,  y = γ x̂ + β,
    dx = r·(v − mean v − x̂·mean(v x̂)) with v = γ·dy,  dγ = Σ dy·x̂,  dβ = Σ dy,
but one group (a channel for batch norm, a sample for layer norm) per parallel task, two
passes over it (sums, then the elementwise results) instead of the reference's seven or
eight whole-array passes with their temporaries. Sums are accumulated in float64 (the
reference sums pairwise in the array's dtype), so float32 results agree to float32 rounding;
batch norm's forward takes Σ(x − K) and Σ(x − K)² in one pass, K a value of the channel
(_moments), and its elementwise passes run in the array's dtype with μ, r and the
backward's coefficients rounded to it (float32 moves half the bytes of float64 and fills
twice the vector lanes; the reference computes in the dtype too).
The loops are compiled with ``fastmath={"reassoc"}`` and nothing else: it lets LLVM split a
sum over several vector accumulators (a strict left-to-right float64 sum runs at one add per
four cycles, the adder's latency), and changes only the order of the float64 additions.

Layouts: batch norm sees x as (N, C, S) with S the product of the spatial dims (1 for
(N, C) inputs), or, when x is channels-last (NHWC memory, see kernels/cpu_common.py), as
(N·H·W, C) rows, and then returns y, x̂ and dx channels-last too; layer norm as (M, D) with D
the product of the normalised dims.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import cpu_common
from .cpu_common import (SizedKernel, check_float, choose_threading_layer, contiguous,
                         empty_channels_last, is_channels_last, nhwc_rows, output)
from .im2row import to_channels_first, to_channels_last

choose_threading_layer()   # before this file's parallel kernels can start Numba's pool

_COLS = 64  # features per task of the layer-norm parameter-gradient reduction


@njit(cache=True, nogil=True, error_model="numpy")
def _moments(shift, s1, s2, count, eps):  # pragma: no cover - compiled
    """(μ, var, r) of a channel from its shifted sums s1 = Σ(x − K), s2 = Σ(x − K)², K = shift.

    var = s2/count − (s1/count)², exact in exact arithmetic for any K. With K one of the
    channel's own values, (K − μ)² ≤ count·var, so the cancellation costs at most about
    2·log2(count) of float64's 53 bits: results agree to float32 rounding, and to float64's
    but for those bits (the unshifted formula, K = 0, loses everything once |μ| ≫ σ). The
    max(·, 0) only guards rounding beyond that bound (count above ~10⁸ values)."""
    d = s1 / count
    var = max(s2 / count - d * d, 0.0)
    return shift + d, var, 1.0 / np.sqrt(var + eps)


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_forward(x, gamma, beta, eps, y, xhat, r_out, mean_out, var_out):  # pragma: no cover
    n, c, s = x.shape
    affine = gamma.shape[0] == c
    for ch in prange(c):
        shift = np.float64(x[0, ch, 0])
        s1 = 0.0
        s2 = 0.0
        for b in range(n):
            for k in range(s):
                d = x[b, ch, k] - shift
                s1 += d
                s2 += d * d
        mean_out[ch], var_out[ch], r_out[ch] = _moments(shift, s1, s2, n * s, eps)
        m, r = mean_out[ch], r_out[ch]   # μ and r rounded to x's dtype: the pass below in it
        if affine:
            g, be = gamma[ch], beta[ch]
            for b in range(n):
                for k in range(s):
                    h = (x[b, ch, k] - m) * r
                    xhat[b, ch, k] = h
                    y[b, ch, k] = g * h + be
        else:
            for b in range(n):
                for k in range(s):
                    h = (x[b, ch, k] - m) * r
                    xhat[b, ch, k] = h
                    y[b, ch, k] = h


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_backward(dy, xhat, r, gamma, dx, dgamma, dbeta):  # pragma: no cover - compiled
    n, c, s = dy.shape
    affine = gamma.shape[0] == c
    count = n * s
    coef = np.empty((c, 3), dy.dtype)   # per channel, in dy's dtype: r·γ, mean dy, mean dy·x̂
    for ch in prange(c):
        sdy = 0.0
        sdyx = 0.0
        for b in range(n):
            for k in range(s):
                d = dy[b, ch, k]
                sdy += d
                sdyx += d * xhat[b, ch, k]
        dbeta[ch] = sdy
        dgamma[ch] = sdyx
        # v = γ·dy: mean v = γ·Σdy/count, mean(v x̂) = γ·Σdy·x̂/count
        coef[ch, 0] = r[ch] * (gamma[ch] if affine else 1.0)
        coef[ch, 1] = sdy / count
        coef[ch, 2] = sdyx / count
        scale, mv, mvx = coef[ch, 0], coef[ch, 1], coef[ch, 2]
        for b in range(n):
            for k in range(s):
                dx[b, ch, k] = scale * (dy[b, ch, k] - mv - xhat[b, ch, k] * mvx)


# Channels-last batch norm: x as (M, C) rows, M = N·H·W, the channel the fastest axis. The
# per-channel sums are a column reduction: each of _ROW_BLOCKS tasks sums its block of rows
# into float64 vectors of C partial sums (vectorised along the channels), then the partial
# sums are added. The elementwise pass runs over the same row blocks.
_ROW_BLOCKS = 16


@njit(cache=True, nogil=True, error_model="numpy")
def _row_block(t, blocks, m):  # pragma: no cover - compiled
    return t * m // blocks, (t + 1) * m // blocks


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _block_sums(a, xhat, lo, hi, part, t):  # pragma: no cover - compiled
    """Σa and Σa·x̂ per channel over rows lo..hi−1 of (M, C) rows, added into part[0, t], part[1, t]
    (float64): one block of a batch-norm reduction."""
    for i in range(lo, hi):
        for k in range(a.shape[1]):
            d = a[i, k]
            part[0, t, k] += d
            part[1, t, k] += d * xhat[i, k]


@njit(cache=True, nogil=True, error_model="numpy")
def _channel_totals(part, k):  # pragma: no cover - compiled
    """The blocks' partial sums of channel k added up: (Σa, Σa·x̂)."""
    s = 0.0
    q = 0.0
    for t in range(part.shape[1]):
        s += part[0, t, k]
        q += part[1, t, k]
    return s, q


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_forward_rows(x, gamma, beta, eps, y, xhat, r_out, mean_out, var_out):  # pragma: no cover
    m, c = x.shape
    affine = gamma.shape[0] == c
    blocks = min(m, _ROW_BLOCKS)
    shift = np.empty(c)        # the first row: one value of each channel (see _moments)
    for k in range(c):
        shift[k] = x[0, k]
    part = np.zeros((2, blocks, c))
    for t in prange(blocks):
        lo, hi = _row_block(t, blocks, m)
        for i in range(lo, hi):
            for k in range(c):
                d = x[i, k] - shift[k]
                part[0, t, k] += d
                part[1, t, k] += d * d
    g = np.ones(c, x.dtype)
    b = np.zeros(c, x.dtype)
    for k in range(c):
        s1 = 0.0
        s2 = 0.0
        for t in range(blocks):
            s1 += part[0, t, k]
            s2 += part[1, t, k]
        mean_out[k], var_out[k], r_out[k] = _moments(shift[k], s1, s2, m, eps)
        if affine:
            g[k] = gamma[k]
            b[k] = beta[k]
    for t in prange(blocks):   # in x's dtype, with μ and r rounded to it
        lo, hi = _row_block(t, blocks, m)
        for i in range(lo, hi):
            for k in range(c):
                h = (x[i, k] - mean_out[k]) * r_out[k]
                xhat[i, k] = h
                y[i, k] = g[k] * h + b[k]


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_backward_rows(dy, xhat, r, gamma, dx, dgamma, dbeta):  # pragma: no cover - compiled
    m, c = dy.shape
    affine = gamma.shape[0] == c
    blocks = min(m, _ROW_BLOCKS)
    part = np.zeros((2, blocks, c))
    for t in prange(blocks):
        lo, hi = _row_block(t, blocks, m)
        _block_sums(dy, xhat, lo, hi, part, t)
    scale = np.empty(c, dy.dtype)   # in dy's dtype, as the elementwise pass
    mv = np.empty(c, dy.dtype)
    mvx = np.empty(c, dy.dtype)
    for k in range(c):
        sdy, sdyx = _channel_totals(part, k)
        dbeta[k] = sdy
        dgamma[k] = sdyx
        scale[k] = r[k] * (gamma[k] if affine else 1.0)   # v = γ·dy: mean v = γ·Σdy/count, ...
        mv[k] = sdy / m
        mvx[k] = sdyx / m
    for t in prange(blocks):
        lo, hi = _row_block(t, blocks, m)
        for i in range(lo, hi):
            for k in range(c):
                dx[i, k] = scale[k] * (dy[i, k] - mv[k] - xhat[i, k] * mvx[k])


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_tangent_forward_rows(x_dot, xhat, r, gamma, gamma_dot, beta_dot, y_dot, xhat_dot):  # pragma: no cover
    """Batch norm's tangent forward over (M, C) rows: the per-channel sums S = Σẋ, T = Σx̂·ẋ in one
    reading pass, then x̂̇ = r·(ẋ − S/M − x̂·T/M) and ẏ = γ·x̂̇ + γ̇·x̂ + β̇ in one writing pass
    (``y_dot`` unwritten without γ: ẏ is x̂̇)."""
    m, c = x_dot.shape
    affine = gamma.shape[0] == c
    blocks = min(m, _ROW_BLOCKS)
    part = np.zeros((2, blocks, c))
    for t in prange(blocks):
        lo, hi = _row_block(t, blocks, m)
        _block_sums(x_dot, xhat, lo, hi, part, t)
    mean_dot = np.empty(c, x_dot.dtype)   # in the dtype of the elementwise pass
    mean_cross = np.empty(c, x_dot.dtype)
    for k in range(c):
        s, q = _channel_totals(part, k)
        mean_dot[k] = s / m
        mean_cross[k] = q / m
    for t in prange(blocks):
        lo, hi = _row_block(t, blocks, m)
        for i in range(lo, hi):
            for k in range(c):
                h = xhat[i, k]
                hd = r[k] * (x_dot[i, k] - mean_dot[k] - h * mean_cross[k])
                xhat_dot[i, k] = hd
                if affine:
                    y_dot[i, k] = gamma[k] * hd + gamma_dot[k] * h + beta_dot[k]


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _bn_tangent_backward_rows(dy, dy_dot, xhat, xhat_dot, x_dot, r, gamma, gamma_dot, dx, dx_dot,
                              sums):  # pragma: no cover - compiled
    """Batch norm's backward and its tangent over (M, C) rows, one reading pass for six
    per-channel sums (A = Σdy, B = Σdy·x̂, Ȧ = Σḋy, Ḃ = Σḋy·x̂, E = Σdy·x̂̇, F = Σx̂·ẋ) and one
    writing pass:  dx = c·dy − c·A/M − c·x̂·B/M  (c = r·γ), and, expanding the reference's
    R{dx} = r·P(v̇) − r·[F/M·dx + x̂̇·γB/M + x̂·γE/M],  v̇ = γ·ḋy + γ̇·dy:
        R{dx} = c·ḋy + r·γ̇·dy − r(γȦ + γ̇A)/M − x̂·r(γḂ + γ̇B + γE)/M − x̂̇·rγB/M − dx·rF/M.
    ``sums`` (6, C) receives A, B, Ȧ, Ḃ, E, F (dβ, dγ, R{dβ}, R{dγ} = Ḃ + E)."""
    m, c = dy.shape
    affine = gamma.shape[0] == c
    blocks = min(m, _ROW_BLOCKS)
    part = np.zeros((6, blocks, c))
    for t in prange(blocks):
        lo, hi = _row_block(t, blocks, m)
        for i in range(lo, hi):
            for k in range(c):
                d, dd, h = dy[i, k], dy_dot[i, k], xhat[i, k]
                part[0, t, k] += d
                part[1, t, k] += d * h
                part[2, t, k] += dd
                part[3, t, k] += dd * h
                part[4, t, k] += d * xhat_dot[i, k]
                part[5, t, k] += h * x_dot[i, k]
    coef = np.empty((8, c), dy.dtype)   # in dy's dtype, as the elementwise pass
    for k in range(c):
        for q in range(6):
            acc = 0.0
            for t in range(blocks):
                acc += part[q, t, k]
            sums[q, k] = acc
        a, b, a_dot, b_dot, e, f = sums[0, k], sums[1, k], sums[2, k], sums[3, k], sums[4, k], sums[5, k]
        g = gamma[k] if affine else 1.0
        g_dot = gamma_dot[k] if affine else 0.0
        rk = r[k]
        coef[0, k] = rk * g                                      # c: dy in dx, ḋy in R{dx}
        coef[1, k] = -rk * g * a / m                             # dx's constant
        coef[2, k] = -rk * g * b / m                             # dx's x̂; R{dx}'s x̂̇
        coef[3, k] = rk * g_dot                                  # dy in R{dx}
        coef[4, k] = -rk * (g * a_dot + g_dot * a) / m           # R{dx}'s constant
        coef[5, k] = -rk * (g * b_dot + g_dot * b + g * e) / m   # R{dx}'s x̂
        coef[6, k] = -rk * f / m                                 # dx in R{dx}
    for t in prange(blocks):
        lo, hi = _row_block(t, blocks, m)
        for i in range(lo, hi):
            for k in range(c):
                h = xhat[i, k]
                g = coef[0, k] * dy[i, k] + coef[1, k] + coef[2, k] * h
                dx[i, k] = g
                dx_dot[i, k] = (coef[0, k] * dy_dot[i, k] + coef[3, k] * dy[i, k] + coef[4, k]
                                + coef[5, k] * h + coef[2, k] * xhat_dot[i, k] + coef[6, k] * g)


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _ln_forward(x, gamma, beta, eps, y, xhat, r_out):  # pragma: no cover - compiled
    m, d = x.shape
    has_gamma = gamma.shape[0] == d
    has_beta = beta.shape[0] == d
    for i in prange(m):
        acc = 0.0
        for k in range(d):
            acc += x[i, k]
        mu = acc / d
        acc2 = 0.0
        for k in range(d):
            t = x[i, k] - mu
            acc2 += t * t
        r = 1.0 / np.sqrt(acc2 / d + eps)
        r_out[i] = r
        mm = mu
        for k in range(d):
            h = (x[i, k] - mm) * r
            xhat[i, k] = h
            v = h
            if has_gamma:
                v = gamma[k] * h
            if has_beta:
                v = v + beta[k]
            y[i, k] = v


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _ln_backward(dy, xhat, r, gamma, dx):  # pragma: no cover - compiled
    m, d = dy.shape
    has_gamma = gamma.shape[0] == d
    for i in prange(m):
        sv = 0.0
        svx = 0.0
        for k in range(d):
            v = dy[i, k]
            if has_gamma:
                v = gamma[k] * v
            sv += v
            svx += v * xhat[i, k]
        mv = sv / d
        mvx = svx / d
        ri = r[i]
        for k in range(d):
            v = dy[i, k]
            if has_gamma:
                v = gamma[k] * v
            dx[i, k] = ri * (v - mv - xhat[i, k] * mvx)


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _column_sums(dy, xhat, dgamma, dbeta):  # pragma: no cover - compiled
    """dγ = Σ_rows dy·x̂, dβ = Σ_rows dy, parallel over blocks of columns (no races)."""
    m, d = dy.shape
    for t in prange((d + _COLS - 1) // _COLS):
        lo = t * _COLS
        hi = min(d, lo + _COLS)
        acc_g = np.zeros(hi - lo)
        acc_b = np.zeros(hi - lo)
        for i in range(m):
            for k in range(lo, hi):
                acc_g[k - lo] += dy[i, k] * xhat[i, k]
                acc_b[k - lo] += dy[i, k]
        for k in range(lo, hi):
            dgamma[k] = acc_g[k - lo]
            dbeta[k] = acc_b[k - lo]


def _group_view(x):
    """(N, C, ...) -> (N, C, S) contiguous view (or copy)."""
    n, c = x.shape[:2]
    return to_channels_first(x).reshape(n, c, -1) if x.ndim == 4 else contiguous(x).reshape(n, c, -1)



def _param(p, dtype):
    return np.empty(0, dtype=dtype) if p is None else contiguous(p.astype(dtype, copy=False)).reshape(-1)


# One-thread twins of the channels-last passes, for batches below PARALLEL_MIN elements: each
# pass has two or three parallel loops, and below that size waking and joining Numba's pool
# for each costs more than the loop (a DCGAN-32 generator's (1024, 128) batch at batch 16 is
# such a case; around PARALLEL_MIN elements the pool starts to win; docs/speed.md has the
# timings).
_bn_forward_by_size = SizedKernel(_bn_forward_rows)
_bn_backward_by_size = SizedKernel(_bn_backward_rows)
_bn_tangent_forward_by_size = SizedKernel(_bn_tangent_forward_rows)
_bn_tangent_backward_by_size = SizedKernel(_bn_tangent_backward_rows)


def batch_norm_forward(x, weight, bias, eps: float, *, out=None):
    """(y, x̂, r, μ, var) as the reference; ``out`` = (y, x̂) buffers may be given."""
    dtype = check_float("batch_norm_forward", x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm_forward: expected (N, C, ...) input, got shape {x.shape}")
    n, c = x.shape[:2]
    r = np.empty((1, c) + (1,) * (x.ndim - 2), dtype=dtype)
    mean, var = np.empty(c, dtype=dtype), np.empty(c, dtype=dtype)
    if out is None and is_channels_last(x):   # y and x̂ channels-last as x (no transposes)
        y, xhat = empty_channels_last(x.shape, dtype), empty_channels_last(x.shape, dtype)
        _bn_forward_by_size.for_size(x.size)(nhwc_rows(x), _param(weight, dtype), _param(bias, dtype),
                                             float(eps), nhwc_rows(y), nhwc_rows(xhat), r.reshape(-1),
                                             mean, var)
        return y, xhat, r, mean, var
    y_out, xhat_out = out if out is not None else (None, None)
    y = output(y_out, x.shape, dtype, "batch_norm_forward", "out[0] (y)")
    xhat = output(xhat_out, x.shape, dtype, "batch_norm_forward", "out[1] (x̂)")
    _bn_forward(_group_view(x), _param(weight, dtype), _param(bias, dtype), float(eps),
                y.reshape(n, c, -1), xhat.reshape(n, c, -1), r.reshape(-1), mean, var)
    return y, xhat, r, mean, var


def batch_norm_backward(dy, xhat, r, weight, *, out=None):
    """(dx, dγ, dβ) as the reference; ``out`` = a dx buffer may be given."""
    dtype = check_float("batch_norm_backward", dy, xhat, r)
    n, c = dy.shape[:2]
    dgamma, dbeta = np.empty(c, dtype=dtype), np.empty(c, dtype=dtype)
    if out is None and is_channels_last(xhat):   # dx channels-last as x̂ (dy read in that order)
        dx = empty_channels_last(dy.shape, dtype)
        _bn_backward_by_size.for_size(dy.size)(to_channels_last(dy).reshape(-1, c), nhwc_rows(xhat),
                                               contiguous(r).reshape(-1), _param(weight, dtype),
                                               nhwc_rows(dx), dgamma, dbeta)
        return dx, dgamma, dbeta
    dx = output(out, dy.shape, dtype, "batch_norm_backward")
    _bn_backward(_group_view(dy), _group_view(xhat), contiguous(r).reshape(-1), _param(weight, dtype),
                 dx.reshape(n, c, -1), dgamma, dbeta)
    return dx, dgamma, dbeta


def _channel_rows(a, c):
    """(M, C) rows of an (N, C, ...) array: a view when its memory has the channels last (NHWC,
    or an (N, C) matrix), else one copying pass."""
    moved = np.moveaxis(a, 1, -1)
    return (moved if moved.flags.c_contiguous else np.ascontiguousarray(moved)).reshape(-1, c)


def _channels_last_result(like):
    """A new array of ``like``'s shape and dtype with the channels last in memory, and its (M, C)
    rows (the tangent kernels' results, in the order the kernels read their inputs)."""
    c = like.shape[1]
    moved = cpu_common._empty((like.shape[0],) + like.shape[2:] + (c,), like.dtype)
    return np.moveaxis(moved, -1, 1), moved.reshape(-1, c)


def batch_norm_tangent_forward(x_dot, xhat, r, weight, weight_dot, bias_dot):
    """(ẏ, x̂̇) as the reference, in one reading and one writing pass; both with the channels last
    in memory."""
    dtype = check_float("batch_norm_tangent_forward", x_dot, xhat, r)
    c = x_dot.shape[1]
    xhat_dot, xhat_dot_rows = _channels_last_result(x_dot)
    y_dot, y_dot_rows = (xhat_dot, xhat_dot_rows) if weight is None else _channels_last_result(x_dot)
    _bn_tangent_forward_by_size.for_size(x_dot.size)(
        _channel_rows(x_dot, c), _channel_rows(xhat, c), contiguous(r).reshape(-1), _param(weight, dtype),
        _param(weight_dot, dtype), _param(bias_dot, dtype), y_dot_rows, xhat_dot_rows)
    return y_dot, xhat_dot


def batch_norm_tangent_backward(dy, dy_dot, xhat, xhat_dot, x_dot, r, weight, weight_dot):
    """(dx, R{dx}, dγ, dβ, R{dγ}, R{dβ}) as the reference, in one reading and one writing pass;
    dx and R{dx} with the channels last in memory."""
    dtype = check_float("batch_norm_tangent_backward", dy, dy_dot, xhat, xhat_dot, x_dot, r)
    c = dy.shape[1]
    (dx, dx_rows), (dx_dot, dx_dot_rows) = _channels_last_result(dy), _channels_last_result(dy)
    sums = np.empty((6, c))
    _bn_tangent_backward_by_size.for_size(dy.size)(
        *(_channel_rows(a, c) for a in (dy, dy_dot, xhat, xhat_dot, x_dot)), contiguous(r).reshape(-1),
        _param(weight, dtype), _param(weight_dot, dtype), dx_rows, dx_dot_rows, sums)
    a, b, a_dot, b_dot, e, _ = sums.astype(dtype)
    return dx, dx_dot, b, a, b_dot + e, a_dot


def _rows(x, normalized_ndim):
    d = int(np.prod(x.shape[x.ndim - normalized_ndim:], dtype=np.int64))
    return contiguous(x).reshape(-1, d)


def layer_norm_forward(x, weight, bias, eps: float, normalized_ndim: int, *, out=None):
    """(y, x̂, r) as the reference; ``out`` = (y, x̂) buffers may be given."""
    dtype = check_float("layer_norm_forward", x)
    k = int(normalized_ndim)
    y_out, xhat_out = out if out is not None else (None, None)
    y = output(y_out, x.shape, dtype, "layer_norm_forward", "out[0] (y)")
    xhat = output(xhat_out, x.shape, dtype, "layer_norm_forward", "out[1] (x̂)")
    r = np.empty(x.shape[:x.ndim - k] + (1,) * k, dtype=dtype)
    if x.size:
        _ln_forward(_rows(x, k), _param(weight, dtype), _param(bias, dtype), float(eps),
                    _rows(y, k), _rows(xhat, k), r.reshape(-1))
    return y, xhat, r


def layer_norm_backward(dy, xhat, r, weight, normalized_ndim: int, *, out=None):
    """(dx, dγ, dβ) as the reference (dγ, dβ of the normalised shape)."""
    dtype = check_float("layer_norm_backward", dy, xhat, r)
    k = int(normalized_ndim)
    dx = output(out, dy.shape, dtype, "layer_norm_backward")
    shape = dy.shape[dy.ndim - k:]
    dgamma, dbeta = np.empty(shape, dtype=dtype), np.empty(shape, dtype=dtype)
    if dy.size:
        dy_rows, xhat_rows = _rows(dy, k), _rows(xhat, k)
        _ln_backward(dy_rows, xhat_rows, contiguous(r).reshape(-1), _param(weight, dtype), _rows(dx, k))
        _column_sums(dy_rows, xhat_rows, dgamma.reshape(-1), dbeta.reshape(-1))
    return dx, dgamma, dbeta
