"""BatchNorm1d/2d and LayerNorm, first order: constructors (defaults, buffers, checks and their
messages), repr, returned values with every parameter and buffer away from its default,
accumulate=False, and synchronised BatchNorm (data parallel) run in one process on two
threads against one BatchNorm on the concatenated batch.

The gradients themselves are checked by finite differences in test_layers.py, the second
order in test_double_backward.py.
"""
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import minigan.nn as nn

F64 = np.float64


def randomize(layer, rng):
    for _, p in layer.named_parameters():
        p.data[...] = rng.uniform(0.5, 2.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)


# --- constructors --------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: nn.BatchNorm1d(0), "BatchNorm1d: num_features must be a positive integer, got 0"),
    (lambda: nn.BatchNorm2d(3, eps=0.0), "BatchNorm2d: eps must be > 0, got 0.0"),
    (lambda: nn.BatchNorm1d(3, eps=-1e-5), "BatchNorm1d: eps must be > 0, got -1e-05"),
    (lambda: nn.BatchNorm1d(3, momentum=-0.1), "BatchNorm1d: momentum must lie in [0, 1], got -0.1"),
    (lambda: nn.BatchNorm2d(3, momentum=1.5), "BatchNorm2d: momentum must lie in [0, 1], got 1.5"),
    (lambda: nn.LayerNorm(()), "LayerNorm: normalized_shape must be non-empty positive sizes, got ()"),
    (lambda: nn.LayerNorm((3, 0)), "LayerNorm: normalized_shape must be non-empty positive sizes, got (3, 0)"),
    (lambda: nn.LayerNorm(0), "LayerNorm: normalized_shape must be non-empty positive sizes, got (0,)"),
    (lambda: nn.LayerNorm(3, eps=0.0), "LayerNorm: eps must be > 0, got 0.0"),
])
def test_norm_constructor_errors_in_full(make, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


@pytest.mark.parametrize("make, message", [
    (lambda: nn.BatchNorm1d(2, dtype=np.int32), "BatchNorm1d: dtype must be a floating type (float32 or float64), got int32"),
    (lambda: nn.LayerNorm(2, dtype=np.int32), "LayerNorm: dtype must be a floating type (float32 or float64), got int32"),
])
def test_norm_dtype_errors_in_full(make, message):
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        make()


def test_batchnorm_defaults_buffers_and_repr():
    for cls, dtype in ((nn.BatchNorm1d, np.float32), (nn.BatchNorm2d, np.float64)):
        bn = cls(3, dtype=dtype)
        assert (bn.num_features, bn.eps, bn.momentum, bn.affine) == (3, 1e-5, 0.1, True)
        for name, value in (("weight", 1.0), ("bias", 0.0)):
            p = getattr(bn, name)
            assert p.data.dtype == dtype and p.grad.dtype == dtype
            np.testing.assert_array_equal(p.data, np.full(3, value))
        assert bn.running_mean.dtype == dtype and bn.running_var.dtype == dtype
        np.testing.assert_array_equal(bn.running_mean, np.zeros(3))
        np.testing.assert_array_equal(bn.running_var, np.ones(3))
        assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
        assert int(bn.num_batches_tracked) == 0
        assert repr(bn) == f"{cls.__name__}(3, eps=1e-05, momentum=0.1, affine=True)"
        assert [k for k, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    bn = nn.BatchNorm1d(2, eps=0.5, momentum=0.0, affine=False)  # closed ends of momentum's range
    assert repr(bn) == "BatchNorm1d(2, eps=0.5, momentum=0.0, affine=False)"
    assert [k for k, _ in bn.named_parameters()] == []
    assert nn.BatchNorm1d(2, momentum=1.0).momentum == 1.0


def test_layernorm_defaults_and_repr():
    ln = nn.LayerNorm(4)
    assert ln.normalized_shape == (4,) and ln.eps == 1e-5 and ln.elementwise_affine is True
    np.testing.assert_array_equal(ln.weight.data, np.ones(4))
    np.testing.assert_array_equal(ln.bias.data, np.zeros(4))
    assert ln.weight.data.dtype == np.float32 and ln.bias.data.dtype == np.float32
    assert repr(ln) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"
    assert nn.LayerNorm(np.int64(3)).normalized_shape == (3,)
    ln = nn.LayerNorm([2, 3], eps=0.25, bias=False, dtype=F64)
    assert ln.normalized_shape == (2, 3) and ln.bias is None and ln.weight.data.dtype == F64
    assert ln.weight.shape == (2, 3)
    assert repr(ln) == "LayerNorm((2, 3), eps=0.25, elementwise_affine=True)"
    ln = nn.LayerNorm((2,), elementwise_affine=False)
    assert ln.weight is None and ln.bias is None and list(ln.named_parameters()) == []
    assert repr(ln) == "LayerNorm((2,), eps=1e-05, elementwise_affine=False)"


# --- values --------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_shape, affine", [((5,), "weight+bias"), ((2, 3), "weight"), ((3, 2), "none")])
def test_layernorm_values(norm_shape, affine):
    """y = γ (x − μ)/√(var + ε) + β per sample over the trailing dims, ε and γ, β non-default;
    the default ε is 1e-5."""
    rng = np.random.default_rng(len(norm_shape) * 10 + len(affine))
    for eps in (0.3, None):
        kwargs = {} if eps is None else {"eps": eps}
        ln = nn.LayerNorm(norm_shape, elementwise_affine=affine != "none", bias=affine == "weight+bias",
                          dtype=F64, **kwargs)
        randomize(ln, rng)
        x = rng.standard_normal((2, 3) + norm_shape) * 0.2 + 1.0  # small variance: ε matters
        axes = tuple(range(2, x.ndim))
        want = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True)
                                                               + (1e-5 if eps is None else eps))
        if ln.weight is not None:
            want = ln.weight.data * want
        if ln.bias is not None:
            want = want + ln.bias.data
        y = ln(x)
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_batchnorm_input_errors_in_full():
    with pytest.raises(ValueError, match=r"^BatchNorm1d: expected 3 channels/features on axis 1 of the input, "
                                         r"got shape \(4, 5\)$"):
        nn.BatchNorm1d(3, dtype=F64)(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"^BatchNorm2d: expected 2 channels/features on axis 1 of the input, "
                                         r"got shape \(4, 3, 2, 2\)$"):
        nn.BatchNorm2d(2, dtype=F64).eval()(np.ones((4, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"^BatchNorm1d: training mode needs more than one value per channel, "
                                         r"got input shape \(1, 3\)$"):
        nn.BatchNorm1d(3, dtype=F64)(np.ones((1, 3)))


def test_layernorm_needs_a_batch_axis():
    """minigan's layers take batches, (N, ..., *normalized_shape): an input that is only
    normalized_shape is refused (PyTorch would read it as one unbatched sample)."""
    ln = nn.LayerNorm(3, dtype=F64)
    with pytest.raises(ValueError, match=r"^LayerNorm: expected input of shape \(N, \.\.\., 3\), got \(3,\)$"):
        ln(np.ones(3))
    with pytest.raises(ValueError, match=r"^LayerNorm: expected input of shape \(N, \.\.\., 2, 3\), got \(4, 3, 2\)$"):
        nn.LayerNorm((2, 3), dtype=F64)(np.ones((4, 3, 2)))


def test_batchnorm_default_eps_and_batch_counter():
    rng = np.random.default_rng(3)
    bn = nn.BatchNorm1d(2, dtype=F64)
    x = rng.standard_normal((4, 2)) * 0.01  # variance ~1e-4: ε = 1e-5 shows
    y = bn(x)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(0), rtol=1e-12)
    bn(x)
    assert int(bn.num_batches_tracked) == 2
    bn.eval()
    y = bn(x)
    np.testing.assert_allclose(y, (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 2  # eval mode: statistics and counter untouched


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.BatchNorm1d(3, dtype=F64), (4, 3)),
    (lambda: nn.BatchNorm2d(3, dtype=F64).eval(), (2, 3, 2, 2)),
    (lambda: nn.LayerNorm((3,), dtype=F64), (4, 3)),
])
def test_norm_backward_accumulates_only_when_asked(make, shape):
    """accumulate=False leaves .grad alone; the default adds dγ = Σ dy·x̂, dβ = Σ dy to it."""
    rng = np.random.default_rng(1)
    layer = make()
    randomize(layer, rng)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    start = {k: rng.standard_normal(p.shape) for k, p in layer.named_parameters()}
    for k, p in layer.named_parameters():
        p.grad[...] = start[k]
    layer(x)
    dx0 = layer.backward(dy, accumulate=False)
    for k, p in layer.named_parameters():
        np.testing.assert_array_equal(p.grad, start[k])
    dx1 = layer.backward(dy)
    np.testing.assert_array_equal(dx0, dx1)
    if isinstance(layer, nn.LayerNorm):
        gamma, beta, axes = layer.weight.data, layer.bias.data, (0,)
    else:
        gamma, beta = (p.data.reshape((1, -1) + (1,) * (x.ndim - 2)) for p in (layer.weight, layer.bias))
        axes = (0,) + tuple(range(2, x.ndim))
    xhat = (layer(x) - beta) / gamma
    np.testing.assert_allclose(layer.weight.grad, start["weight"] + (dy * xhat).sum(axis=axes), rtol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, start["bias"] + dy.sum(axis=axes), rtol=1e-10)


# --- synchronised BatchNorm, two ranks on two threads ---------------------------------------

class ThreadComm:
    """Rank ``rank`` of ``size`` threads of one process; allreduce sums in place and returns
    the array (MPI's semantics), in the same order on every rank."""

    def __init__(self, shared, rank):
        self.shared, self.rank, self.size = shared, rank, len(shared["parts"])

    def allreduce(self, array, op="sum"):
        assert op == "sum"
        parts, barrier, turn = self.shared["parts"], self.shared["barrier"], self.shared["turn"]
        parts[self.rank] = np.array(array, copy=True)
        turn.release()  # the other ranks may compute until they reach this allreduce too
        try:
            barrier.wait()
            total = parts[0].copy()
            for p in parts[1:]:
                total = total + p
            barrier.wait()
        finally:
            turn.acquire()
        array[...] = total
        self.shared["calls"][self.rank] += 1
        return array


def run_on_ranks(sizes, fn):
    """fn(rank, comm) on len(sizes) threads; results in rank order. One rank computes at a
    time (the "turn" lock, released only inside allreduce), so no two threads ever run a
    (Numba) kernel at once. A rank that raises breaks the barrier: the others stop instead of waiting."""
    shared = {"parts": [None] * len(sizes), "barrier": threading.Barrier(len(sizes), timeout=20),
              "calls": [0] * len(sizes), "turn": threading.Lock()}

    def guarded(rank):
        shared["turn"].acquire()
        try:
            return fn(rank, ThreadComm(shared, rank))
        except BaseException:
            shared["barrier"].abort()
            raise
        finally:
            shared["turn"].release()

    with ThreadPoolExecutor(len(sizes)) as pool:
        futures = [pool.submit(guarded, r) for r in range(len(sizes))]
        return [f.result() for f in futures], shared["calls"]


@pytest.mark.parametrize("dtype, spatial, affine", [(F64, (2, 3), True), (F64, (), False), (np.float32, (3,), True)])
def test_sync_batchnorm_equals_one_batchnorm_on_the_whole_batch(dtype, spatial, affine):
    """Ranks with 2 and 3 samples: outputs, dx, running statistics (unbiased over the global
    count), the counter, and dγ, dβ summed over the ranks equal one BatchNorm's on the
    concatenated batch of 5; the outputs keep the input's dtype."""
    rng = np.random.default_rng(11)
    c, sizes = 3, (2, 3)
    x = (rng.standard_normal((sum(sizes), c) + spatial) * 2 + 1.5).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, c), rng.standard_normal(c)
    mean0, var0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    cls = nn.BatchNorm2d if len(spatial) == 2 else nn.BatchNorm1d
    starts = np.cumsum((0,) + sizes)

    def make(comm):
        bn = cls(c, eps=0.05, momentum=0.3, affine=affine, dtype=dtype, comm=comm)
        if affine:
            bn.weight.data[...], bn.bias.data[...] = gamma, beta
        bn.running_mean[...], bn.running_var[...] = mean0, var0
        return bn

    single = make(None)
    single(x)
    y_ref = single(x)  # two steps: the running statistics move twice, the counter counts both
    dx_ref = single.backward(dy)

    def rank_step(rank, comm):
        rows = slice(starts[rank], starts[rank + 1])
        bn = make(comm)
        bn(x[rows])
        y = bn(x[rows])
        dx = bn.backward(dy[rows])
        grads = (bn.weight.grad.copy(), bn.bias.grad.copy()) if affine else None
        return y, dx, grads, bn

    results, calls = run_on_ranks(sizes, rank_step)
    assert calls == [5, 5]  # two reductions per forward (sums, then squares about the global μ), one backward
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == F64 else dict(rtol=2e-5, atol=2e-5)
    for rank, (y, dx, _, bn) in enumerate(results):
        rows = slice(starts[rank], starts[rank + 1])
        assert y.dtype == dtype and dx.dtype == dtype
        np.testing.assert_allclose(y, y_ref[rows], **tol)
        np.testing.assert_allclose(dx, dx_ref[rows], **tol)
        assert bn.running_mean.dtype == dtype and bn.running_var.dtype == dtype
        np.testing.assert_allclose(bn.running_mean, single.running_mean, **tol)
        np.testing.assert_allclose(bn.running_var, single.running_var, **tol)
        assert int(bn.num_batches_tracked) == 2
    if affine:
        for i, name in enumerate(("weight", "bias")):
            local = [res[2][i] for res in results]
            # each rank keeps its own batch's dγ, dβ (the trainer's gradient reduction adds them)
            axes = (0,) + tuple(range(2, x.ndim))
            rows = slice(starts[0], starts[1])
            xhat0 = (y_ref[rows] - beta.reshape((1, -1) + (1,) * len(spatial))) / gamma.reshape(
                (1, -1) + (1,) * len(spatial))
            if name == "weight":
                np.testing.assert_allclose(local[0], (dy[rows] * xhat0).sum(axis=axes), **tol)
            else:
                np.testing.assert_allclose(local[0], dy[rows].sum(axis=axes), **tol)
            np.testing.assert_allclose(local[0] + local[1], getattr(single, name).grad, **tol)


def test_sync_batchnorm_eval_mode_and_one_rank_need_no_collective():
    """Eval mode uses the running statistics, and a one-rank communicator the local path:
    neither calls allreduce."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 2))

    class OneRank:
        size, rank = 1, 0

        def allreduce(self, array, op="sum"):
            raise AssertionError("allreduce on one rank")

    bn = nn.BatchNorm1d(2, dtype=F64, comm=OneRank())
    ref = nn.BatchNorm1d(2, dtype=F64)
    np.testing.assert_array_equal(bn(x), ref(x))
    np.testing.assert_array_equal(bn.backward(x), ref.backward(x))

    def rank_step(rank, comm):
        bn = nn.BatchNorm1d(2, dtype=F64, comm=comm).eval()
        return bn(x), bn.backward(x)

    results, calls = run_on_ranks((4, 4), rank_step)
    assert calls == [0, 0]
    ref = nn.BatchNorm1d(2, dtype=F64).eval()
    for y, dx in results:
        np.testing.assert_array_equal(y, ref(x))
        np.testing.assert_array_equal(dx, ref.backward(x))


# --- the cached x̂ is never handed out --------------------------------------------------------

def test_norm_output_never_aliases_the_cached_xhat():
    """Without γ, y = x̂: the forward (reference kernel and layer) must return a copy, or an
    in-place change of the output (a caller's y *= 2) would change the backward's x̂."""
    from minigan import backend
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 2))
    y, xhat, *_ = backend._REFERENCE["batch_norm_forward"](x, None, None, 1e-5)
    assert not np.shares_memory(y, xhat)
    y, xhat, _ = backend._REFERENCE["layer_norm_forward"](x, None, None, 1e-5, 2)
    assert not np.shares_memory(y, xhat)
    for make in (lambda: nn.BatchNorm1d(3, affine=False, dtype=F64),
                 lambda: nn.LayerNorm((3, 2), elementwise_affine=False, dtype=F64)):
        layer, twin = make(), make()
        dy = rng.standard_normal(x.shape)
        y = layer(x)
        y *= 2.0
        twin(x)
        np.testing.assert_array_equal(layer.backward(dy), twin.backward(dy))


def test_sync_batchnorm_sums_float32_batches_in_float64():
    """The global Σx and Σ(x − μ)² are float64 sums (a float32 running sum over 10⁶ values of
    about 1000 drifts by ~1 %, the sum of squares by ~5e-4): outputs and running statistics stay
    at float32 rounding from the float64 statistics of the whole batch."""
    rng = np.random.default_rng(12)
    n = 10 ** 6
    x = (rng.standard_normal((2 * n, 2)) + 1000.0).astype(np.float32)
    mu, var = x.mean(axis=0, dtype=F64), x.astype(F64).var(axis=0)

    def rank_step(rank, comm):
        bn = nn.BatchNorm1d(2, affine=False, comm=comm)
        y = bn(x[rank * n:(rank + 1) * n])
        return y[:1000].astype(F64), bn.running_mean.copy(), bn.running_var.copy()

    results, _ = run_on_ranks((n, n), rank_step)
    want = (x[:1000].astype(F64) - mu) / np.sqrt(var + 1e-5)
    y, running_mean, running_var = results[0]
    np.testing.assert_allclose(y, want, rtol=0, atol=3e-4)
    np.testing.assert_allclose(running_mean, 0.1 * mu, rtol=1e-6)
    np.testing.assert_allclose(running_var, 0.9 + 0.1 * var * (2 * n) / (2 * n - 1), rtol=2e-6)
