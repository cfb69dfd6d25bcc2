"""col2im as a gather in numba.cuda: one thread per output element, no atomics.

Same contract as :func:`minigan.functional.col2im` (the adjoint of im2col, and with a matrix
product in front the transposed convolution / the convolution's input gradient):
cols (C·kh·kw, N·oh·ow) -> x (N, C, H, W),

    x[n, c, y, x] = Σ_{i, j} cols[(c·kh + i)·kw + j, (n·oh + oy)·ow + ox]
    over the kernel offsets (i, j) with  y + p = oy·s + i,  x + p = ox·s + j,
                                          0 <= oy < oh,      0 <= ox < ow.

So for a fixed output pixel, the contributing kernel rows are i ≡ (y + p) (mod s) with
i <= y + p (oy >= 0) and i < kh, each giving oy = (y + p − i)/s, kept if oy < oh; the same
for columns j. A scatter (the NumPy reference) would need atomics on a GPU; the gather has
each thread own its output element, and it adds the terms in the reference's order (i outer,
j inner, starting from 0) in the array's own dtype.

Launch: a 1-D grid-stride loop over the N·C·H·W outputs, 256 threads a block, ⌈size/256⌉
blocks (capped). Consecutive threads own consecutive x and read consecutive ox (for s = 1).
One variant per dtype (the accumulator has the array's dtype), compiled when the kernels are
registered (kernels/cuda.py) or else on first use.
"""
from __future__ import annotations

import numpy as np

from .cpu_common import conv_output_size
from .cuda_common import array_module, DEFAULT_THREADS, load_numba_cuda, check_out, grid_1d, launch_args

_KERNELS: dict = {}

# numba.cuda, bound on first use. The kernels must name it as a module global: the CUDA
# simulator runs a kernel by swapping the globals that hold numba.cuda for its fake module.
cuda = None


def _load_cuda():
    global cuda
    if cuda is None:
        cuda = load_numba_cuda()


def _kernel(dtype):
    dtype = np.dtype(dtype)
    if dtype not in _KERNELS:
        import numba  # noqa: PLC0415
        _load_cuda()

        acc_type = numba.from_dtype(dtype)

        @cuda.jit
        def col2im_kernel(cols, out, kh, kw, stride, padding, oh, ow):
            c_img = out.shape[1]
            h = out.shape[2]
            w = out.shape[3]
            for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
                xx = t % w                      # t = ((n·C + c)·H + y)·W + x
                yy = (t // w) % h
                c = (t // (w * h)) % c_img
                n = t // (w * h * c_img)
                yp = yy + padding               # coordinates in the padded image
                xp = xx + padding
                i_end = kh if kh < yp + 1 else yp + 1    # i <= yp keeps oy >= 0
                j_end = kw if kw < xp + 1 else xp + 1
                acc = acc_type(0.0)
                for i in range(yp % stride, i_end, stride):   # (yp − i) divisible by s
                    oy = (yp - i) // stride
                    if oy < oh:
                        for j in range(xp % stride, j_end, stride):
                            ox = (xp - j) // stride
                            if ox < ow:
                                acc += cols[(c * kh + i) * kw + j, (n * oh + oy) * ow + ox]
                out[n, c, yy, xx] = acc

        _KERNELS[dtype] = col2im_kernel
    return _KERNELS[dtype]


def col2im(cols, x_shape, kh: int, kw: int, stride: int, padding: int, out=None,
           threads_per_block: int = DEFAULT_THREADS, max_blocks: int | None = None):
    """cols (C·kh·kw, N·oh·ow) -> (N, C, H, W) = x_shape, as minigan.functional.col2im.

    ``out`` (optional) is written completely and returned; otherwise the output is allocated
    with the array module of ``cols`` (cupy on a GPU, numpy under the simulator).
    """
    n, c, h, w = (int(s) for s in x_shape)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    if oh < 1 or ow < 1:
        raise ValueError(f"col2im: image {tuple(x_shape)} with padding {padding} is smaller than "
                         f"the kernel ({kh}x{kw})")
    if cols.size != c * kh * kw * n * oh * ow:
        raise ValueError(f"col2im: cols of shape {tuple(cols.shape)} do not fit image {tuple(x_shape)} "
                         f"with kernel {kh}x{kw}, stride {stride}, padding {padding}: expected "
                         f"({c * kh * kw}, {n * oh * ow})")
    cols2 = array_module(cols).ascontiguousarray(cols.reshape(c * kh * kw, n * oh * ow))
    x = check_out(out, (n, c, h, w), cols.dtype, cols, "col2im")
    if x.size == 0:
        return x
    blocks, threads = grid_1d(x.size, threads_per_block, max_blocks)
    stream, (cols_arg, x_arg) = launch_args(cols2, x)
    _kernel(cols.dtype)[blocks, threads, stream](cols_arg, x_arg, kh, kw, stride, padding, oh, ow)
    return x
