"""The WGAN-GP penalty pass in numba.cuda: per-sample norm and coefficient, and the
activation-masked forward-mode step of the second-order sweep.

How they map onto minigan (see minigan/penalty/wgan_gp.py and the layers' ``double_backward``):

``gradient_penalty(critic, x̂, λ)`` is

    g = input_gradient(critic, x̂, create_graph=True)        # ordinary backward, dy = 1
    c, norms, value = penalty_cotangent(g, λ, one_sided)      # <- kernel 1, one launch
    critic.double_backward(c)                                 # the second-order sweep
    return float(value)

Kernel 1 replaces the four NumPy passes over g (square, per-sample sum, coefficient, k·g):
one block per sample reduces Σ_j g_ij² in shared memory, computes ‖g_i‖ and
k_i = (2λ/N)(‖g_i‖ − 1)/‖g_i‖ (excess clamped at 0 when one-sided, k_i = 0 where ‖g_i‖ = 0),
and writes c_i = k_i·g_i and ‖g_i‖. The value λ·mean_i excess_i² is a reduction over N numbers
left to CuPy, as a 0-d device array (no host synchronisation until someone calls float()).

``Sequential.double_backward(c)`` for the common critic Linear → (Leaky)ReLU → Linear → ...
sweeps first to last. Linear's step is J·c = c Wᵀ (and W.grad += gᵀc, both cuBLAS); an
elementwise layer y = σ(a) has J·c = σ'(a)·c and second-order term σ''(a)·g·c, which is zero
for the piecewise-linear ReLU/LeakyReLU (they return s = None, so nothing flows back down).
Kernel 2, ``activation_tangent(a, u, slope)``, is that step: σ'(a)·u with σ' = 1 for a > 0 and
slope (0 for ReLU) otherwise, in one pass reading a and u (NumPy builds the mask array first,
then multiplies). ``linear_activation_tangent(c, W, a, slope)`` chains the two steps of a
Linear + activation pair, σ'(a)·(c Wᵀ): the product goes to cuBLAS and the mask is applied in
place on its output, so the pair costs one GEMM and one elementwise pass and no temporary
(fusing the mask into the GEMM epilogue would need cuBLASLt's DRELU epilogue or a custom GEMM).
The same kernel is the first-order backward of these activations, σ'(a)·dy.

Launch configurations:
    penalty_cotangent   grid = min(N, 65535) blocks, one sample per block (grid-stride over
                        samples); block = min(256, next power of two >= D) threads, a
                        power of two for the shared-memory tree reduction.
    activation_tangent  1-D grid-stride loop over the elements, 256 threads a block,
                        ⌈size/256⌉ blocks (capped).

Kernels compile when they are registered (kernels/cuda.py: per dtype, and per block size for
the reduction) or else on first use; numba.cuda is
imported then, never at import of this file. Under ``NUMBA_ENABLE_CUDASIM=1`` the wrappers
run on NumPy arrays in the simulator.
"""
from __future__ import annotations

import math

import numpy as np

from .cuda_common import array_module, DEFAULT_THREADS, load_numba_cuda, check_out, grid_1d, launch_args, next_pow2

MAX_SAMPLE_BLOCKS = 65535

_NORM_KERNELS: dict = {}
_ACT_KERNEL = None

# numba.cuda, bound on first use. The kernels must name it as a module global: the CUDA
# simulator runs a kernel by swapping the globals that hold numba.cuda for its fake module.
cuda = None


def _load_cuda():
    global cuda
    if cuda is None:
        cuda = load_numba_cuda()


def _norm_kernel(dtype, tpb: int):
    key = (np.dtype(dtype), tpb)
    if key not in _NORM_KERNELS:
        import numba  # noqa: PLC0415
        _load_cuda()

        T = numba.from_dtype(key[0])

        @cuda.jit
        def penalty_cotangent_kernel(g, scale, one_sided, c, norms):
            # g, c: (N, D). Block b handles samples b, b + gridDim, ...; thread t sums the
            # squares of g[i, t], g[i, t + tpb], ... then the block adds the tpb partial sums.
            partial = cuda.shared.array(tpb, T)
            tid = cuda.threadIdx.x
            n_samples = g.shape[0]
            d = g.shape[1]
            for i in range(cuda.blockIdx.x, n_samples, cuda.gridDim.x):
                acc = T(0.0)
                for j in range(tid, d, tpb):
                    acc += g[i, j] * g[i, j]
                partial[tid] = acc
                cuda.syncthreads()
                half = tpb // 2                   # tree reduction: partial[0] = Σ partial
                while half > 0:
                    if tid < half:
                        partial[tid] += partial[tid + half]
                    cuda.syncthreads()
                    half //= 2
                norm = math.sqrt(partial[0])
                excess = norm - T(1.0)
                if one_sided and excess < T(0.0):
                    excess = T(0.0)
                k = T(0.0)                        # subgradient 0 at ‖g_i‖ = 0
                if norm > T(0.0):
                    k = scale * excess / norm     # scale = 2λ/N, in the array's dtype
                if tid == 0:
                    norms[i] = norm
                for j in range(tid, d, tpb):
                    c[i, j] = k * g[i, j]
                cuda.syncthreads()                # everyone has read partial[0] before reuse

        _NORM_KERNELS[key] = penalty_cotangent_kernel
    return _NORM_KERNELS[key]


def _act_kernel():
    global _ACT_KERNEL
    if _ACT_KERNEL is None:
        _load_cuda()

        @cuda.jit
        def activation_tangent_kernel(a, u, slope, out):
            # flat arrays: out[t] = σ'(a[t])·u[t], σ' = 1 (a > 0) or slope (a <= 0)
            for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
                v = u[t]
                if a[t] > 0:
                    out[t] = v
                else:
                    out[t] = slope * v

        _ACT_KERNEL = activation_tangent_kernel
    return _ACT_KERNEL


def penalty_cotangent(g, weight: float = 10.0, one_sided: bool = False, out=None, norms_out=None,
                      threads_per_block: int = DEFAULT_THREADS, max_blocks: int | None = None):
    """(c, norms, value) as minigan.penalty.wgan_gp.penalty_cotangent, in one kernel launch.

    g (N, ...) is ∇ₓD at the interpolates; c has g's shape, norms shape (N,), value is a 0-d
    array. ``out``/``norms_out`` (optional, C-contiguous) receive c and the norms.
    ``threads_per_block`` must be a power of two (the block is min(it, next_pow2(D))).
    """
    if threads_per_block < 1 or threads_per_block & (threads_per_block - 1):
        raise ValueError(f"penalty_cotangent: threads_per_block must be a power of two, got {threads_per_block}")
    xp = array_module(g)
    n = g.shape[0]
    c = check_out(out, g.shape, g.dtype, g, "penalty_cotangent")
    norms = check_out(norms_out, (n,), g.dtype, g, "penalty_cotangent")
    if n > 0:
        g2 = xp.ascontiguousarray(g.reshape(n, -1))
        d = g2.shape[1]
        tpb = min(next_pow2(max(d, 1)), int(threads_per_block))
        blocks = min(n, MAX_SAMPLE_BLOCKS if max_blocks is None else int(max_blocks))
        scale = g.dtype.type(2 * weight / n)
        stream, (g_arg, c_arg, norms_arg) = launch_args(g2, c.reshape(n, d), norms)
        _norm_kernel(g.dtype, tpb)[blocks, tpb, stream](g_arg, scale, bool(one_sided), c_arg, norms_arg)
    excess = norms - 1
    if one_sided:
        excess = xp.maximum(excess, 0)
    return c, norms, weight * (excess * excess).mean()


def activation_tangent(a, u, negative_slope: float = 0.0, out=None,
                       threads_per_block: int = DEFAULT_THREADS, max_blocks: int | None = None):
    """σ'(a)·u for ReLU (negative_slope = 0) / LeakyReLU, as minigan.functional.activation_tangent.

    a and u have the same shape; ``out`` (optional, C-contiguous, may be u itself) receives it.
    """
    if a.shape != u.shape or a.dtype != u.dtype:
        raise ValueError(f"activation_tangent: a and u must have the same shape and dtype, got "
                         f"{tuple(a.shape)} {a.dtype} and {tuple(u.shape)} {u.dtype}")
    xp = array_module(u)
    res = check_out(out, u.shape, u.dtype, u, "activation_tangent")
    if res.size == 0:
        return res
    a1 = xp.ascontiguousarray(a).reshape(-1)
    u1 = xp.ascontiguousarray(u).reshape(-1)
    blocks, threads = grid_1d(res.size, threads_per_block, max_blocks)
    stream, (a_arg, u_arg, out_arg) = launch_args(a1, u1, res.reshape(-1))
    _act_kernel()[blocks, threads, stream](a_arg, u_arg, u.dtype.type(negative_slope), out_arg)
    return res


def linear_activation_tangent(c, weight, a, negative_slope: float = 0.0, out=None, **launch):
    """σ'(a)·(c Wᵀ): the forward-mode step of a Linear (weight W (out, in)) and the ReLU /
    LeakyReLU after it, i.e. the ``c`` after Linear.double_backward then the activation's.
    The product is cuBLAS (CuPy ``@``); the mask is applied in place on its result.
    (Linear's parameter term W.grad += gᵀc is a separate product, as in Linear.double_backward.)
    """
    u = c @ weight.T
    return activation_tangent(a, u, negative_slope, out=u if out is None else out, **launch)
