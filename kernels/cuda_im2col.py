"""im2col as a numba.cuda kernel: one thread per element of the columns matrix.

Same contract as :func:`minigan.functional.im2col`: x (N, C, H, W) -> cols (C·kh·kw, N·oh·ow),

    cols[r, q] = x[n, c, oy·s + i − p, ox·s + j − p]   (0 where that falls in the padding)
    with r = (c·kh + i)·kw + j  and  q = (n·oh + oy)·ow + ox.

Launch: a 1-D grid-stride loop over the C·kh·kw·N·oh·ow elements, 256 threads a block and
⌈size/256⌉ blocks (capped; each thread then takes several elements). Consecutive threads
write consecutive q (the ox index), so the writes are coalesced.

The kernel is compiled when the kernels are registered (kernels/cuda.py) or else on first use
(numba.cuda imported then, never at import of this file).
Under ``NUMBA_ENABLE_CUDASIM=1`` the wrapper runs on NumPy arrays in the simulator.
"""
from __future__ import annotations

from .cpu_common import conv_output_size
from .cuda_common import array_module, DEFAULT_THREADS, load_numba_cuda, check_out, grid_1d, launch_args

_KERNEL = None

# numba.cuda, bound on first use. The kernels must name it as a module global: the CUDA
# simulator runs a kernel by swapping the globals that hold numba.cuda for its fake module.
cuda = None


def _load_cuda():
    global cuda
    if cuda is None:
        cuda = load_numba_cuda()


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        _load_cuda()

        @cuda.jit
        def im2col_kernel(x, cols, kh, kw, stride, padding, oh, ow):
            h = x.shape[2]
            w = x.shape[3]
            ncols = cols.shape[1]
            total = cols.shape[0] * ncols
            for t in range(cuda.grid(1), total, cuda.gridsize(1)):
                r = t // ncols              # row (c, i, j)
                q = t - r * ncols           # column (n, oy, ox)
                j = r % kw
                i = (r // kw) % kh
                c = r // (kh * kw)
                ox = q % ow
                oy = (q // ow) % oh
                n = q // (oh * ow)
                yy = oy * stride + i - padding    # row of x (unpadded coordinates)
                xx = ox * stride + j - padding
                if 0 <= yy < h and 0 <= xx < w:
                    cols[r, q] = x[n, c, yy, xx]
                else:
                    cols[r, q] = 0

        _KERNEL = im2col_kernel
    return _KERNEL


def im2col(x, kh: int, kw: int, stride: int, padding: int, out=None,
           threads_per_block: int = DEFAULT_THREADS, max_blocks: int | None = None):
    """(N, C, H, W) -> cols (C·kh·kw, N·oh·ow), as minigan.functional.im2col.

    ``out`` (optional) is written completely and returned; the output is allocated with the
    array module of ``x`` otherwise (cupy on a GPU, numpy under the simulator).
    ``threads_per_block``/``max_blocks`` set the launch (tests use tiny grids).
    """
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    if oh < 1 or ow < 1:
        raise ValueError(f"im2col: input {tuple(x.shape)} with padding {padding} is smaller than "
                         f"the kernel ({kh}x{kw})")
    cols = check_out(out, (c * kh * kw, n * oh * ow), x.dtype, x, "im2col")
    if cols.size == 0:
        return cols
    x = array_module(x).ascontiguousarray(x)  # e.g. a conv output, (O, N, ...) transposed to NCHW
    blocks, threads = grid_1d(cols.size, threads_per_block, max_blocks)
    stream, (x_arg, cols_arg) = launch_args(x, cols)
    _kernel()[blocks, threads, stream](x_arg, cols_arg, kh, kw, stride, padding, oh, ow)
    return cols
