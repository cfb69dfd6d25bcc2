"""The module contract: names, state dicts, modes, dtypes, devices, initialisation and errors."""
import re
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

import minigan.nn as nn
from minigan import backend


def dcgan_like(rng=None):
    rng = rng or np.random.default_rng(0)
    return nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1, bias=False, rng=rng), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 1, rng=rng))


def test_state_dict_keys_follow_torch_sequential():
    model = dcgan_like()
    assert list(model.state_dict()) == [
        "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "4.weight", "4.bias"]
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert model.state_dict()["0.weight"].shape == (4, 1, 4, 4)


def test_parameter_shapes_follow_torch():
    assert nn.Linear(3, 5).weight.shape == (5, 3)
    assert nn.Conv2d(2, 7, 3).weight.shape == (7, 2, 3, 3)
    assert nn.ConvTranspose2d(2, 7, 3).weight.shape == (2, 7, 3, 3)
    assert nn.ConvTranspose2d(2, 7, 3).bias.shape == (7,)
    assert nn.LayerNorm((3, 4)).weight.shape == (3, 4)
    assert nn.Embedding(10, 4).weight.shape == (10, 4)


def test_load_state_dict_round_trip_and_all_or_nothing():
    a, b = dcgan_like(np.random.default_rng(1)), dcgan_like(np.random.default_rng(2))
    b.load_state_dict(a.state_dict())
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    before = {k: v.copy() for k, v in b.state_dict().items()}
    broken = dict(dcgan_like(np.random.default_rng(3)).state_dict())
    broken["4.weight"] = np.zeros((2, 64), np.float32)
    with pytest.raises(ValueError, match=r"4\.weight: expected shape \(1, 64\), got \(2, 64\)"):
        b.load_state_dict(broken)
    missing = dict(broken)
    del missing["1.running_var"]
    with pytest.raises(ValueError, match="missing keys.*1.running_var"):
        b.load_state_dict(missing)
    extra = dict(a.state_dict(), **{"9.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys.*9.weight"):
        b.load_state_dict(extra)
    for k, v in b.state_dict().items():  # nothing was partially loaded
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_train_eval_switches_batchnorm():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(3, momentum=0.5, dtype=np.float64)
    x = rng.standard_normal((8, 3)) * 2 + 5
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(axis=0))
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=0, ddof=1))  # unbiased, as torch
    assert int(bn.num_batches_tracked) == 1
    model = nn.Sequential(bn).eval()
    assert not bn.training
    np.testing.assert_allclose(model(x), (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5))
    model.train()
    assert bn.training


def test_zero_grad_and_accumulation():
    rng = np.random.default_rng(0)
    layer = nn.Linear(3, 2, rng=rng)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    layer(x)
    layer.backward(np.ones((4, 2), np.float32))
    once = layer.weight.grad.copy()
    layer.backward(np.ones((4, 2), np.float32))
    np.testing.assert_allclose(layer.weight.grad, 2 * once)  # gradients accumulate with +=
    layer.zero_grad()
    assert not layer.weight.grad.any()


def test_a_deferred_gradient_is_added_when_read_in_order_and_dropped_by_zero_grad():
    p = nn.Parameter(np.zeros(3))
    calls = []

    def contribution(value):
        def add():
            calls.append(value)
            return np.full(3, value)
        return add

    p.defer(contribution(1.0))
    p.defer(contribution(2.0))
    assert calls == []                                  # nothing computed before a read
    np.testing.assert_array_equal(p.grad, 3.0)
    np.testing.assert_array_equal(p.grad, 3.0)          # computed once
    assert calls == [1.0, 2.0]
    p.defer(contribution(5.0))
    p.zero_grad()                                       # dropped, never computed
    np.testing.assert_array_equal(p.grad, 0.0)
    p.defer(contribution(7.0))
    p.grad = np.ones(3)                                 # assigning replaces what was pending
    np.testing.assert_array_equal(p.grad, 1.0)
    assert calls == [1.0, 2.0]


def test_zero_grad_writes_no_zeros_and_keeps_the_first_contribution():
    """After zero_grad, .grad reads as zeros (written when read); the first deferred
    contribution becomes .grad itself (no zero pass, no add), later ones are added; a
    contribution that cannot stand as the gradient (another dtype, not contiguous) is added
    into zeros instead; assigning .grad ends the zeroed state."""
    p = nn.Parameter(np.ones(3, np.float32))
    p.grad[...] = 5.0
    p.zero_grad()
    np.testing.assert_array_equal(p.grad, 0.0)           # written on read
    p.grad[...] = 5.0
    p.zero_grad()
    first = np.array([1.0, 2.0, 3.0], np.float32)
    p.defer(lambda: first)
    p.defer(lambda: np.full(3, 0.5, np.float32))
    got = p.grad
    assert got is first                                   # kept, not copied into the old array
    np.testing.assert_array_equal(got, [1.5, 2.5, 3.5])
    p.defer(lambda: np.ones(3, np.float32))              # not after a zero_grad: added
    np.testing.assert_array_equal(p.grad, [2.5, 3.5, 4.5])
    for odd in (np.arange(3, dtype=np.float64), np.arange(6, dtype=np.float32)[::2]):
        p.zero_grad()
        p.defer(lambda odd=odd: odd)
        got = p.grad
        assert got is not odd and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, odd)
    p.zero_grad()
    p.grad = np.full(3, 7.0, np.float32)
    np.testing.assert_array_equal(p.grad, 7.0)           # the assignment, not zeros


def test_accumulate_adds_after_the_deferred_ones_and_keeps_a_first_contribution():
    """accumulate(part) is grad += part now: deferred contributions made before it are added
    first (in order), the first contribution after zero_grad is kept as .grad itself, one
    that cannot stand as the gradient is added into zeros, and one that is not first is added
    (into the array that was kept: it is the gradient now)."""
    p = nn.Parameter(np.ones(3, np.float32))
    part = np.full(3, 2.0, np.float32)
    p.accumulate(part)                                   # never zeroed: added into its zeros
    assert p.grad is not part
    np.testing.assert_array_equal(p.grad, 2.0)
    p.zero_grad()
    first = np.array([1.0, 2.0, 3.0], np.float32)
    p.accumulate(first)
    assert p.grad is first
    p.accumulate(np.full(3, 0.5, np.float32))
    assert p.grad is first
    np.testing.assert_array_equal(first, [1.5, 2.5, 3.5])
    p.zero_grad()
    order = []
    p.defer(lambda: order.append("deferred") or np.full(3, 4.0, np.float32))
    second = np.full(3, 1.0, np.float32)
    p.accumulate(second)                                 # the deferred one is flushed first
    assert order == ["deferred"] and p.grad is not second
    np.testing.assert_array_equal(p.grad, 5.0)
    for odd in (np.arange(3, dtype=np.float64), np.arange(6, dtype=np.float32)[::2]):
        p.grad[...] = 9.0
        p.zero_grad()
        p.accumulate(odd)
        got = p.grad
        assert got is not odd and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, odd)          # zeros written, then added


@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (3, 2, 2, 2)])   # the orders differ on a 3 / only on 2s
def test_a_contribution_in_another_memory_order_is_added_into_the_gradients_own(shape):
    """A channels-last parameter (a convolution's weight) keeps a channels-last gradient: a
    C-order contribution after zero_grad is added into it, not kept (the optimizer's kernel
    reads parameter, gradient and state through one flat view of one memory order); a
    channels-last one is kept, and so is a C-order one where one channel makes both orders
    the same memory (strides differ only on an axis of length 1)."""
    values = np.arange(24, dtype=np.float32).reshape(shape)
    channels_last = np.ascontiguousarray(values.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    p = nn.Parameter(channels_last.copy(order="K"))
    p.zero_grad()
    part = values.copy()
    p.accumulate(part)
    assert p.grad is not part and p.grad.strides == channels_last.strides
    np.testing.assert_array_equal(p.grad, values)
    p.zero_grad()
    part = channels_last.copy(order="K")
    p.accumulate(part)
    assert p.grad is part
    one_channel = np.ascontiguousarray(values[:, :1].transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    q = nn.Parameter(one_channel)
    q.grad = np.zeros_like(one_channel.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NHWC strides
    q.zero_grad()
    part = one_channel + 1                               # NumPy's C strides
    assert part.strides != q.grad.strides
    q.zero_grad()
    q.accumulate(part)
    assert q.grad is part


@pytest.mark.parametrize("bias", [False, True])
def test_linear_gradients_over_zero_grad_and_second_order_sweeps(bias):
    """Linear's dW = dyᵀx (+ gᵀc from the second-order sweep), db = Σ dy, accumulated
    across passes and reset by zero_grad: the kept first contribution must not alias an array
    the layer or the caller still writes (the next pass would change the gradient)."""
    rng = np.random.default_rng(1)
    layer = nn.Linear(3, 2, bias=bias, dtype=np.float64, rng=rng)
    x, dy, c = (rng.standard_normal(s) for s in ((4, 3), (4, 2), (4, 3)))
    layer(x)
    for step in range(2):
        layer.zero_grad()
        layer.backward(dy, create_graph=True)
        layer.double_backward(c)
        layer.backward(2 * dy)
        np.testing.assert_allclose(layer.weight.grad, 3 * dy.T @ x + dy.T @ c, rtol=1e-12)
        if bias:
            np.testing.assert_allclose(layer.bias.grad, 3 * dy.sum(axis=0), rtol=1e-12)
        kept = layer.weight.grad
        layer.zero_grad()
        layer.backward(dy)
        np.testing.assert_allclose(kept, 3 * dy.T @ x + dy.T @ c, rtol=1e-12)  # not reused
        np.testing.assert_allclose(layer.weight.grad, dy.T @ x, rtol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("shape", [(3, 6, 6), (16, 4, 4)])   # im2col and channels-last / dense columns
def test_a_convolutions_deferred_weight_gradient_is_what_it_was_given(transposed, shape):
    """The weight gradient is computed when .grad is read: refilling the arrays passed to
    forward and backward in place before that changes nothing; zero_grad drops it."""
    rng = np.random.default_rng(1)
    c, h, w = shape
    make = nn.ConvTranspose2d if transposed else nn.Conv2d
    layer = make(c, 5, 4, stride=1 if h == 4 else 2, padding=0 if h == 4 else 1, rng=rng)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    dy = rng.standard_normal(layer(x).shape).astype(np.float32)
    layer.backward(dy)
    want_w, want_b = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.zero_grad()
    layer(x)
    layer.backward(dy)
    layer.backward(dy)                                  # two contributions, added in turn
    x[...], dy[...] = 7, 7                              # a caller refilling its buffers
    np.testing.assert_array_equal(layer.weight.grad, want_w + want_w)
    np.testing.assert_array_equal(layer.bias.grad, want_b + want_b)
    layer(x)
    layer.backward(dy)
    layer.zero_grad()
    assert not layer.weight.grad.any() and not layer.bias.grad.any()
    layer(x)
    layer.backward(dy)
    layer(x)                                            # the next forward computes it (frees its arrays)
    assert not layer.weight._pending
    layer.zero_grad()                                   # too late to drop it: zeroed like any gradient
    assert not layer.weight.grad.any()


def test_backward_does_not_modify_inputs():
    rng = np.random.default_rng(0)
    model = dcgan_like(rng)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    x0 = x.copy()
    y = model(x)
    dy = np.ones_like(y)
    model.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, 1)


def test_to_dtype_converts_parameters_and_buffers():
    model = dcgan_like().to(dtype=np.float64)
    assert all(v.dtype == np.float64 for k, v in model.state_dict().items() if "num_batches" not in k)
    assert model.state_dict()["1.num_batches_tracked"].dtype == np.int64
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
    with pytest.raises(TypeError, match="floating"):
        model.to(dtype=np.int32)


def test_cuda_unavailable_is_a_clear_error_not_an_import_error():
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="GPU path .* unavailable"):
        dcgan_like().to(device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        dcgan_like().to(device="tpu")


def test_import_without_cupy():
    code = "import sys; sys.modules['cupy'] = None; import minigan, minigan.nn, minigan.penalty; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_pytorch_default_init_bounds_and_dcgan_init():
    rng = np.random.default_rng(0)
    lin = nn.Linear(100, 50, rng=rng)
    assert np.abs(lin.weight.data).max() <= 0.1 and np.abs(lin.weight.data).max() > 0.09
    convt = nn.ConvTranspose2d(8, 4, 3, rng=rng)  # torch's fan_in for (in, out, k, k) is out·k·k = 36
    assert np.abs(convt.weight.data).max() <= 1 / 6 and np.abs(convt.weight.data).max() > 0.15
    model = nn.dcgan_init(dcgan_like(rng), rng=np.random.default_rng(1))
    w = model[0].weight.data
    assert abs(w.std() - 0.02) < 0.005 and abs(w.mean()) < 0.01
    assert abs(model[1].weight.data.mean() - 1) < 0.05 and not model[1].bias.data.any()
    assert not model[4].bias.data.any()


def test_same_rng_same_weights():
    a, b = dcgan_like(np.random.default_rng(7)), dcgan_like(np.random.default_rng(7))
    for k in a.state_dict():
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])


@pytest.mark.parametrize("layer, x, message", [
    (nn.Linear(3, 2), np.zeros((4, 5), np.float32), r"Linear: expected 3 channels/features .* shape \(4, 5\)"),
    (nn.Linear(3, 2), np.zeros((4, 3, 1), np.float32), r"Linear: expected a 2-D input"),
    (nn.Conv2d(3, 2, 3), np.zeros((1, 2, 5, 5), np.float32), r"Conv2d: expected 3 channels"),
    (nn.Conv2d(3, 2, 3), np.zeros((3, 5, 5), np.float32), r"Conv2d: expected a 4-D input"),
    (nn.Conv2d(1, 2, 5), np.zeros((1, 1, 3, 3), np.float32), r"smaller than the kernel"),
    (nn.ConvTranspose2d(3, 2, 3), np.zeros((1, 2, 5, 5), np.float32), r"ConvTranspose2d: expected 3 channels"),
    (nn.BatchNorm2d(3), np.zeros((2, 3, 4), np.float32), r"BatchNorm2d: expected a 4-D input"),
    (nn.BatchNorm1d(3), np.zeros((1, 3), np.float32), r"more than one value per channel"),
    (nn.LayerNorm((4, 4)), np.zeros((2, 4, 5), np.float32), r"LayerNorm: expected input of shape \(N, \.\.\., 4, 4\)"),
])
def test_wrong_shapes_are_named(layer, x, message):
    with pytest.raises(ValueError, match=message):
        layer(x)


def test_wrong_dtypes_are_named():
    with pytest.raises(TypeError, match="Linear: input must be a floating array, got dtype int64"):
        nn.Linear(3, 2)(np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match="Linear: input has dtype float64 but the layer's parameters are float32"):
        nn.Linear(3, 2)(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="Tanh: expected an array input, got list"):
        nn.Tanh()([1.0, 2.0])
    with pytest.raises(TypeError, match="Embedding: expected an integer array"):
        nn.Embedding(3, 2)(np.zeros(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        nn.Embedding(3, 2)(np.array([0, 3]))
    with pytest.raises(TypeError, match="dtype must be a floating type"):
        nn.Linear(3, 2, dtype=np.int32)


@pytest.mark.parametrize("make", [
    lambda: nn.Linear(3, 2), lambda: nn.Conv2d(1, 1, 3), lambda: nn.ConvTranspose2d(1, 1, 3),
    lambda: nn.BatchNorm1d(2), lambda: nn.LayerNorm(3), lambda: nn.Tanh(), lambda: nn.Flatten(),
    lambda: nn.Embedding(2, 2),
])
def test_backward_before_forward(make):
    layer = make()
    with pytest.raises(RuntimeError, match=f"{type(layer).__name__}: backward called before forward"):
        layer.backward(np.zeros((1, 1), np.float32))


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Linear(0, 2), "in_features must be a positive integer"),
    (lambda: nn.Conv2d(1, 1, 3, stride=0), "stride >= 1"),
    (lambda: nn.Conv2d(1, 1, (3, 2)), "square pair"),
    (lambda: nn.ConvTranspose2d(1, 1, 3, stride=2, output_padding=2), "output_padding < stride"),
    (lambda: nn.BatchNorm2d(3, momentum=2), "momentum must lie in"),
    (lambda: nn.LeakyReLU(-1), "negative_slope"),
    (lambda: nn.Sequential(nn.Tanh(), "relu"), "item 1 is a str"),
])
def test_bad_hyperparameters(make, message):
    with pytest.raises(ValueError if "item" not in message else TypeError, match=message):
        make()


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.Linear(0, 2), ValueError, "Linear: in_features must be a positive integer, got 0"),
    (lambda: nn.Linear(True, 2), ValueError, "Linear: in_features must be a positive integer, got True"),
    (lambda: nn.Linear(2, 2.0), ValueError, "Linear: out_features must be a positive integer, got 2.0"),
    (lambda: nn.Linear(2, 2, dtype=np.int32), TypeError,
     "Linear: dtype must be a floating type (float32 or float64), got int32"),
    (lambda: nn.Embedding(0, 2), ValueError, "Embedding: num_embeddings must be a positive integer, got 0"),
    (lambda: nn.Embedding(2, -1), ValueError, "Embedding: embedding_dim must be a positive integer, got -1"),
    (lambda: nn.Embedding(2, 2, dtype=int), TypeError,
     "Embedding: dtype must be a floating type (float32 or float64), got int64"),
    (lambda: nn.Embedding(3, 2)(np.zeros(2)), TypeError,
     "Embedding: expected an integer array of labels, got float64"),
    (lambda: nn.Embedding(3, 2)([0, 1]), TypeError, "Embedding: expected an integer array of labels, got list"),
    (lambda: nn.Embedding(3, 2)(np.array([-1, 2])), ValueError,
     "Embedding: labels must lie in [0, 3), got range [-1, 2]"),
])
def test_linear_and_embedding_errors_in_full(make, error, message):
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        make()


def test_embedding_values_dtype_and_gradient():
    """Labels 0 and N − 1 are valid, an empty batch too; rows come out in the table's dtype and the
    gradient adds up per row (repeated labels add) on top of what .grad holds."""
    emb = nn.Embedding(3, 2, dtype=np.float64, rng=np.random.default_rng(0))
    assert emb.weight.dtype == np.float64 and repr(emb) == "Embedding(3, 2)"
    assert nn.Embedding(3, 2).weight.dtype == np.float32
    np.testing.assert_array_equal(emb(np.array([0, 2, 0])), emb.weight.data[[0, 2, 0]])
    assert emb(np.zeros(0, np.int64)).shape == (0, 2)
    emb(np.array([0, 2, 0]))
    emb.weight.grad[...] = 1.0
    assert emb.backward(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])) is None
    np.testing.assert_array_equal(emb.weight.grad, [[7.0, 9.0], [1.0, 1.0], [4.0, 5.0]])
    emb.backward(np.ones((3, 2)), accumulate=False)
    np.testing.assert_array_equal(emb.weight.grad, [[7.0, 9.0], [1.0, 1.0], [4.0, 5.0]])
    same = nn.Embedding(3, 2, dtype=np.float64, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same.weight.data, emb.weight.data)
    assert repr(nn.Linear(2, 3, bias=False)) == "Linear(in_features=2, out_features=3, bias=False)"


@contextmanager
def counted_im2col(*references):
    """The seam with a counting im2col and the named reference kernels registered as the NumPy
    fast kernels (fast kernels on); yields the list of im2col's input shapes; restores the seam."""
    from minigan import functional

    calls = []

    def counting_im2col(x, *args):
        calls.append(x.shape)
        return functional.im2col(x, *args)

    with backend.kernels_restored():
        backend.register_fast_kernel("im2col", "numpy", counting_im2col)
        for name in references:
            backend.register_fast_kernel(name, "numpy", getattr(functional, name))
        backend.use_fast_kernels(True)
        yield calls


def test_kernel_seam_dispatches_by_array_kind():
    # the reference convolution, which reaches im2col through the seam
    with counted_im2col("conv2d_forward") as calls:
        nn.Conv2d(1, 1, 3)(np.zeros((1, 1, 4, 4), np.float32))
        assert calls == [(1, 1, 4, 4)]
        backend.use_fast_kernels(False)
        nn.Conv2d(1, 1, 3)(np.zeros((1, 1, 4, 4), np.float32))
        assert calls == [(1, 1, 4, 4)]  # the reference ran


def test_an_input_without_dtype_or_shape_is_not_an_array():
    """Both attributes are required: an object with only a shape, or only a dtype, is refused
    with the layer's one-line TypeError (not an AttributeError from inside the layer)."""
    class OnlyShape:
        shape = (2, 3)

    class OnlyDtype:
        dtype = np.dtype(np.float32)

    layer = nn.Linear(3, 2)
    for thing in (OnlyShape(), OnlyDtype(), [[0.0, 1.0, 2.0]]):
        with pytest.raises(TypeError, match=f"^Linear: expected an array input, got {type(thing).__name__}$"):
            layer(thing)


def test_a_bare_layer_loads_its_own_state_dict():
    """A layer that is the root module (its parameters and buffers at top-level keys such as
    "weight", not "0.weight") loads every value."""
    rng = np.random.default_rng(3)
    source, target = nn.BatchNorm1d(4), nn.BatchNorm1d(4)
    for p in source.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    source.running_mean[...] = rng.standard_normal(4)
    source.running_var[...] = rng.random(4) + 0.5
    target.load_state_dict(source.state_dict())
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value, err_msg=key)


def test_nested_repr_is_pytorchs_layout():
    """Module.__repr__ prints children as PyTorch does: "(name): child", two spaces per level."""
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(3, 1, bias=False)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): LeakyReLU(negative_slope=0.2)\n"
        "    (1): Linear(in_features=3, out_features=1, bias=False)\n"
        "  )\n"
        ")")
    assert repr(model[0].weight) == "Parameter(shape=(3, 2), dtype=float32)"


def test_repr_puts_extra_repr_before_the_children_as_pytorch():
    """PyTorch's Module.__repr__: the extra_repr lines first, then the children; one extra line
    and no children on one line; several lines or children one per line, indented."""
    class Block(nn.Module):
        def __init__(self, extra, child=True):
            super().__init__()
            self.extra = extra
            if child:
                self.lin = nn.Linear(2, 3)

        def extra_repr(self):
            return self.extra

    assert repr(Block("width=3")) == (
        "Block(\n"
        "  width=3\n"
        "  (lin): Linear(in_features=2, out_features=3, bias=True)\n"
        ")")
    assert repr(nn.Sequential(Block("a=1\nb=2", child=False))) == (
        "Sequential(\n"
        "  (0): Block(\n"
        "    a=1\n"
        "    b=2\n"
        "  )\n"
        ")")
    assert repr(Block("", child=False)) == "Block()"
    assert repr(Block("width=3", child=False)) == "Block(width=3)"


def test_load_state_dict_names_every_problem_in_full():
    """One ValueError lists every problem, in this order and in these words: missing keys,
    unexpected keys, then each wrong shape (two here, joined by "; ")."""
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    sd = dict(model.state_dict())
    sd["0.weight"], sd["1.bias"], sd["x"] = np.zeros((1, 1)), np.zeros(5), np.zeros(1)
    del sd["1.running_var"]
    message = ("Sequential.load_state_dict: missing keys ['1.running_var'], unexpected keys ['x'], "
               "wrong shapes: 0.weight: expected shape (2, 3), got (1, 1); "
               "1.bias: expected shape (2,), got (5,) (nothing was loaded)")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        model.load_state_dict(sd)


def test_load_state_dict_converts_to_the_models_dtype_and_copies():
    """A float64 state dict (or nested lists) loaded into a float32 model: the values arrive,
    parameters and floating buffers stay float32, the integer counter stays an integer, and
    the model owns its arrays (changing the source afterwards changes nothing)."""
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    sd = {k: rng.standard_normal(np.shape(v)) for k, v in model.state_dict().items()}
    sd["1.num_batches_tracked"] = np.array(7)
    sd["1.running_var"] = (rng.random(2) + 0.5).tolist()
    model.load_state_dict(sd)
    for key, value in model.state_dict().items():
        assert value.dtype == (np.int64 if key == "1.num_batches_tracked" else np.float32), key
        np.testing.assert_array_equal(value, np.asarray(sd[key]).astype(value.dtype), err_msg=key)
    assert all(p.grad.dtype == np.float32 for p in model.parameters())
    sd["0.weight"][...] = 0.0
    sd["1.running_mean"][...] = 0.0
    assert model[0].weight.data.any() and model[1].running_mean.any()


def test_to_converts_both_ways_in_place_and_clears_caches():
    """to(float32) of a float64 model gives float32 (not only the other way); an array already
    right is kept, not copied (as PyTorch keeps a tensor that needs no conversion);
    to(device="cpu") keeps the values; the layers' caches are cleared (a backward after to()
    needs a new forward); a refused dtype is named with the class."""
    rng = np.random.default_rng(2)
    model = nn.Sequential(nn.Linear(3, 2, dtype=np.float64, rng=rng), nn.BatchNorm1d(2, dtype=np.float64))
    model[1].running_mean[...] = rng.standard_normal(2)
    model(rng.standard_normal((4, 3)))   # fills the caches (and updates the running statistics)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    assert model.to(dtype=np.float32) is model
    for key, value in model.state_dict().items():
        assert value.dtype == (np.int64 if "num_batches" in key else np.float32), key
        np.testing.assert_array_equal(value, before[key].astype(value.dtype), err_msg=key)
    assert all(p.grad.dtype == np.float32 and not p.grad.any() for p in model.parameters())
    caches = {k: v for m in model.modules() for k, v in vars(m).items() if k.startswith("_cache")}
    assert caches and all(v is None for v in caches.values()), caches
    with pytest.raises(RuntimeError, match="^BatchNorm1d: backward called before forward$"):
        model.backward(np.ones((4, 2), np.float32))
    arrays = [p.data for p in model.parameters()] + [b for _, b in model.named_buffers()]
    model.to(dtype=np.float32)
    assert all(a is b for a, b in zip(arrays, [p.data for p in model.parameters()]
                                      + [b for _, b in model.named_buffers()]))
    model.to(device="cpu")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key].astype(value.dtype), err_msg=key)
    with pytest.raises(TypeError, match="^" + re.escape(
            "Sequential.to: dtype must be a floating type (float32 or float64), got int32") + "$"):
        model.to(dtype=np.int32)


def test_traversal_names_with_and_without_a_prefix():
    """named_children/children, named_modules, named_parameters and named_buffers give
    PyTorch's dotted names, at the root (bare names for a bare layer) and under a prefix."""
    inner = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model = nn.Sequential(nn.Tanh(), inner)
    assert [(n, m) for n, m in model.named_children()] == [("0", model[0]), ("1", inner)]
    assert list(model.children()) == [model[0], inner]
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "1.0", "1.1"]
    assert [n for n, _ in model.named_modules("net")] == ["net", "net.0", "net.1", "net.1.0", "net.1.1"]
    assert [n for n, _ in model.named_parameters()] == ["1.0.weight", "1.0.bias", "1.1.weight", "1.1.bias"]
    assert [n for n, _ in model.named_parameters("net")] == [
        "net.1.0.weight", "net.1.0.bias", "net.1.1.weight", "net.1.1.bias"]
    buffers = ["1.1.running_mean", "1.1.running_var", "1.1.num_batches_tracked"]
    assert [n for n, _ in model.named_buffers()] == buffers
    assert [n for n, _ in model.named_buffers("net")] == ["net." + n for n in buffers]
    assert [b for _, b in model.named_buffers()] == [inner[1].running_mean, inner[1].running_var,
                                                     inner[1].num_batches_tracked]
    bn = inner[1]
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert list(bn.named_children()) == [] and repr(nn.Tanh()) == "Tanh()"


def test_the_base_class_says_what_a_layer_lacks():
    class Bare(nn.Module):
        pass

    layer = Bare()
    for call, error, message in [
        (lambda: layer(np.zeros(1)), NotImplementedError, "Bare has no forward"),
        (lambda: layer.backward(np.zeros(1)), NotImplementedError, "Bare has no backward"),
        (lambda: layer.double_backward(np.zeros(1)), nn.DoubleBackwardUnsupported,
         "Bare has no second-order pass, so it cannot be part of a critic under the gradient penalty"),
    ]:
        with pytest.raises(error, match="^" + re.escape(message) + "$"):
            call()


def test_rank_error_lists_the_accepted_ranks():
    with pytest.raises(ValueError, match="^" + re.escape(
            "BatchNorm1d: expected a 2 or 3-D input, got shape (2, 2, 2, 2)") + "$"):
        nn.BatchNorm1d(2)(np.zeros((2, 2, 2, 2), np.float32))


def test_call_passes_keyword_arguments_on():
    rng = np.random.default_rng(0)
    model = nn.Conditional(nn.Linear(5, 1, dtype=np.float64, rng=rng), 3, 2, dtype=np.float64, rng=rng)
    x, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    np.testing.assert_array_equal(model(x, labels=labels), model(x, labels))


def test_sequential_backward_keeps_nothing_for_the_second_order_by_default():
    """create_graph defaults to False: a plain backward leaves no g for double_backward, which
    then says so (as each layer's own backward does)."""
    model = nn.Sequential(nn.Linear(3, 2, dtype=np.float64), nn.Tanh())
    model(np.ones((2, 3)))
    model.backward(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match=r"^Linear: backward called before backward\(create_graph=True\)$"):
        model.double_backward(np.ones((2, 3)))


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.Conv2d(0, 1, 3), ValueError, "Conv2d: in_channels must be a positive integer, got 0"),
    (lambda: nn.ConvTranspose2d(1, 0, 3), ValueError, "ConvTranspose2d: out_channels must be a positive integer, got 0"),
    (lambda: nn.Conv2d(1, 1, (3, 2)), ValueError, "Conv2d: kernel_size must be an int or a square pair (a, a), got (3, 2)"),
    (lambda: nn.ConvTranspose2d(1, 1, (2, 3)), ValueError,
     "ConvTranspose2d: kernel_size must be an int or a square pair (a, a), got (2, 3)"),
    (lambda: nn.ConvTranspose2d(1, 1, 2.0), ValueError, "ConvTranspose2d: kernel_size must be an integer, got 2.0"),
    (lambda: nn.Conv2d(1, 1, (3, 3, 3)), ValueError,
     "Conv2d: kernel_size must be an int or a square pair (a, a), got (3, 3, 3)"),
    (lambda: nn.Conv2d(1, 1, [3]), ValueError, "Conv2d: kernel_size must be an int or a square pair (a, a), got [3]"),
    (lambda: nn.Conv2d(1, 1, 3.0), ValueError, "Conv2d: kernel_size must be an integer, got 3.0"),
    (lambda: nn.Conv2d(1, 1, True), ValueError, "Conv2d: kernel_size must be an integer, got True"),
    (lambda: nn.Conv2d(1, 1, 3, stride=(1, 2)), ValueError,
     "Conv2d: stride must be an int or a square pair (a, a), got (1, 2)"),
    (lambda: nn.Conv2d(1, 1, 3, padding=(1.0, 1.0)), ValueError, "Conv2d: padding must be an integer, got 1.0"),
    (lambda: nn.Conv2d(1, 1, 0), ValueError,
     "Conv2d: need kernel_size >= 1, stride >= 1 and padding >= 0, got 0, 1, 0"),
    (lambda: nn.Conv2d(1, 1, 3, stride=0), ValueError,
     "Conv2d: need kernel_size >= 1, stride >= 1 and padding >= 0, got 3, 0, 0"),
    (lambda: nn.ConvTranspose2d(1, 1, 3, padding=-1), ValueError,
     "ConvTranspose2d: need kernel_size >= 1, stride >= 1 and padding >= 0, got 3, 1, -1"),
    (lambda: nn.ConvTranspose2d(1, 1, 3, stride=2, output_padding=2), ValueError,
     "ConvTranspose2d: output_padding must satisfy 0 <= output_padding < stride (2), got 2"),
    (lambda: nn.ConvTranspose2d(1, 1, 3, stride=2, output_padding=-1), ValueError,
     "ConvTranspose2d: output_padding must satisfy 0 <= output_padding < stride (2), got -1"),
    (lambda: nn.ConvTranspose2d(1, 1, 3, output_padding=(1, 0)), ValueError,
     "ConvTranspose2d: output_padding must be an int or a square pair (a, a), got (1, 0)"),
    (lambda: nn.ConvTranspose2d(1, 1, 3, dtype=np.int32), TypeError,
     "ConvTranspose2d: dtype must be a floating type (float32 or float64), got int32"),
    (lambda: nn.Conv2d(1, 2, 5, padding=1)(np.zeros((1, 1, 2, 3), np.float32)), ValueError,
     "Conv2d: input of spatial size (2, 3) with padding 1 is smaller than the kernel (5x5)"),
    (lambda: nn.Conv2d(1, 2, 5, padding=1)(np.zeros((1, 1, 3, 2), np.float32)), ValueError,
     "Conv2d: input of spatial size (3, 2) with padding 1 is smaller than the kernel (5x5)"),
    (lambda: nn.ConvTranspose2d(1, 2, 1, padding=1)(np.zeros((1, 1, 2, 3), np.float32)), ValueError,
     "ConvTranspose2d: input of spatial size (2, 3) gives an empty output (0x1) with kernel 1, stride 1, padding 1"),
    (lambda: nn.ConvTranspose2d(1, 2, 1, padding=1)(np.zeros((1, 1, 3, 2), np.float32)), ValueError,
     "ConvTranspose2d: input of spatial size (3, 2) gives an empty output (1x0) with kernel 1, stride 1, padding 1"),
    (lambda: nn.ConvTranspose2d(2, 2, 3)(np.zeros((1, 1, 3, 3), np.float32)), ValueError,
     "ConvTranspose2d: expected 2 channels/features on axis 1 of the input, got shape (1, 1, 3, 3)"),
    (lambda: nn.ConvTranspose2d(2, 2, 3)(np.zeros((1, 2, 3), np.float32)), ValueError,
     "ConvTranspose2d: expected a 4-D input, got shape (1, 2, 3)"),
])
def test_convolution_errors_in_full(make, error, message):
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        make()


def test_convolution_limits_repr_and_hyperparameter_forms():
    """The smallest legal cases are accepted (kernel 1, an input exactly the padded kernel's
    size, a 1-pixel transposed output, output_padding = stride − 1), pairs and NumPy integers
    stand for ints, and the repr lists what torch's does (PyTorch's argument order)."""
    conv = nn.Conv2d(1, 2, np.int64(5), stride=[2, 2], padding=(1, 1))
    assert (conv.kernel_size, conv.stride, conv.padding) == (5, 2, 1)
    assert all(type(v) is int for v in (conv.kernel_size, conv.stride, conv.padding))
    assert conv(np.zeros((1, 1, 3, 3), np.float32)).shape == (1, 2, 1, 1)     # 3 + 2·1 == 5
    assert repr(conv) == "Conv2d(1, 2, kernel_size=5, stride=2, padding=1)"
    assert nn.Conv2d(1, 1, 1)(np.zeros((1, 1, 1, 1), np.float32)).shape == (1, 1, 1, 1)
    convt = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, bias=False)
    assert convt.output_padding == 1 and convt.bias is None
    assert convt(np.zeros((1, 2, 1, 1), np.float32)).shape == (1, 3, 2, 2)   # 0·2 − 2 + 3 + 1
    assert repr(convt) == "ConvTranspose2d(2, 3, kernel_size=3, stride=2, padding=1, output_padding=1)"
    assert nn.ConvTranspose2d(1, 1, 1, padding=1)(np.zeros((1, 1, 3, 3), np.float32)).shape == (1, 1, 1, 1)
    # the defaults: stride 1, padding 0, output_padding 0, a bias, float32
    conv, convt = nn.Conv2d(1, 1, 3), nn.ConvTranspose2d(1, 1, 3)
    assert repr(conv) == "Conv2d(1, 1, kernel_size=3, stride=1, padding=0)"
    assert repr(convt) == "ConvTranspose2d(1, 1, kernel_size=3, stride=1, padding=0, output_padding=0)"
    assert conv.bias.shape == convt.bias.shape == (1,)
    assert conv.weight.dtype == convt.weight.dtype == conv.bias.dtype == convt.bias.dtype == np.float32
    assert conv(np.zeros((1, 1, 4, 4), np.float32)).shape == (1, 1, 2, 2)
    assert convt(np.zeros((1, 1, 2, 2), np.float32)).shape == (1, 1, 4, 4)


def test_torch_default_init_draws_weight_then_bias_with_torchs_bound():
    """U(−1/√fan_in, 1/√fan_in) for weight then bias, from the given generator in that order,
    fan_in = weight.shape[1] · receptive field (out·k·k for a transposed convolution), in the
    layer's dtype; fan_in = 1 (bound 1) included."""
    for make, shape, fan in [
        (lambda r, d: nn.Linear(3, 2, dtype=d, rng=r), (2, 3), 3),
        (lambda r, d: nn.Linear(1, 4, dtype=d, rng=r), (4, 1), 1),
        (lambda r, d: nn.Conv2d(2, 5, 3, dtype=d, rng=r), (5, 2, 3, 3), 18),
        (lambda r, d: nn.ConvTranspose2d(2, 5, 3, dtype=d, rng=r), (2, 5, 3, 3), 45),
    ]:
        assert nn.init.fan_in(shape) == fan
        for dtype in (np.float32, np.float64):
            layer = make(np.random.default_rng(11), dtype)
            want = np.random.default_rng(11)
            bound = 1 / np.sqrt(fan)
            w = want.uniform(-bound, bound, size=shape).astype(dtype)
            b = want.uniform(-bound, bound, size=layer.bias.shape).astype(dtype)
            assert layer.weight.dtype == dtype and layer.bias.dtype == dtype
            np.testing.assert_array_equal(layer.weight.data, w)
            np.testing.assert_array_equal(layer.bias.data, b)
    assert nn.init.fan_in((6, 4, 2)) == 8
    with pytest.raises(TypeError, match="^rng must be a numpy.random.Generator, got int$"):
        nn.Linear(2, 2, rng=3)
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)     # no rng: a fresh generator each time
    assert not np.array_equal(a.weight.data, b.weight.data)


def test_dcgan_init_draws_in_module_order_and_keeps_dtypes():
    """Weights of conv, transposed conv and linear layers ~ N(0, std), BatchNorm γ ~ N(1, std),
    biases 0, drawn from the given generator in module order; a BatchNorm without affine
    parameters is skipped; the dtype of each parameter is kept; std defaults to 0.02."""
    def model(dtype):
        rng = np.random.default_rng(1)
        return nn.Sequential(nn.Conv2d(1, 2, 3, dtype=dtype, rng=rng), nn.BatchNorm2d(2, affine=False, dtype=dtype),
                             nn.ConvTranspose2d(2, 2, 2, dtype=dtype, rng=rng), nn.BatchNorm2d(2, dtype=dtype),
                             nn.Flatten(), nn.Linear(8, 3, dtype=dtype, rng=rng))
    for dtype, std in ((np.float32, None), (np.float64, 0.5)):
        m = model(dtype)
        got = nn.dcgan_init(m, rng=np.random.default_rng(4)) if std is None else \
            nn.dcgan_init(m, rng=np.random.default_rng(4), std=std)
        assert got is m
        s = 0.02 if std is None else std
        want = np.random.default_rng(4)
        expected = {"0.weight": want.normal(0.0, s, (2, 1, 3, 3)), "0.bias": np.zeros(2),
                    "2.weight": want.normal(0.0, s, (2, 2, 2, 2)), "2.bias": np.zeros(2),
                    "3.weight": want.normal(1.0, s, 2), "3.bias": np.zeros(2),
                    "5.weight": want.normal(0.0, s, (3, 8)), "5.bias": np.zeros(3)}
        assert [k for k, _ in m.named_parameters()] == list(expected)
        for key, p in m.named_parameters():
            assert p.dtype == dtype, key
            np.testing.assert_array_equal(p.data, expected[key].astype(dtype), err_msg=key)


def test_conv2d_backward_reuses_the_forwards_columns():
    """The columns im2col built in forward serve the first backward (no second im2col); a second
    backward after one forward rebuilds them once (tests/nn/test_layers.py checks its values)."""
    with counted_im2col("conv2d_forward", "conv2d_backward_weight", "conv2d_backward_input") as calls:
        rng = np.random.default_rng(0)
        layer = nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=rng)
        x = rng.standard_normal((2, 2, 5, 5))
        dy = rng.standard_normal(layer(x).shape)
        assert len(calls) == 1
        layer.backward(dy)
        first = layer.weight.grad.copy()
        assert len(calls) == 1
        layer.backward(dy)
        np.testing.assert_allclose(layer.weight.grad, 2 * first, rtol=1e-13)
        assert len(calls) == 2


def test_a_layer_without_bias_draws_only_its_weight():
    """A layer built with bias=False takes only its weight's draws from the generator, as torch
    draws no bias: the next layer built from the same generator gets the next numbers."""
    for make in (lambda r: nn.Conv2d(2, 3, 3, bias=False, rng=r), lambda r: nn.Linear(4, 3, bias=False, rng=r),
                 lambda r: nn.ConvTranspose2d(2, 3, 3, bias=False, rng=r)):
        rng = np.random.default_rng(9)
        layer = make(rng)
        assert layer.bias is None
        after = rng.standard_normal(3)
        want = np.random.default_rng(9)
        want.uniform(size=layer.weight.shape)
        np.testing.assert_array_equal(after, want.standard_normal(3))


class _FlagsWithoutWriteable:
    """CuPy 14's ``ndarray.flags``: c_contiguous, f_contiguous and owndata, no ``writeable``."""

    def __init__(self, flags):
        self.c_contiguous, self.f_contiguous, self.owndata = flags.c_contiguous, flags.f_contiguous, flags.owndata


class _CupyLikeArray(np.ndarray):
    """An array type whose flags lack ``writeable``, as CuPy's (whose arrays are all writeable)."""

    @property
    def flags(self):
        return _FlagsWithoutWriteable(np.ndarray.flags.__get__(self))


def test_a_contribution_whose_flags_lack_writeable_is_kept_as_cupy_arrays_are():
    """CuPy arrays are always writeable and their flags have no ``writeable``: a first
    contribution of that kind is kept as the gradient (not an AttributeError), a strided one is
    still added into zeros; a read-only NumPy array is still never kept."""
    p = nn.Parameter(np.zeros((2, 3), np.float32).view(_CupyLikeArray))
    p.zero_grad()
    part = np.arange(6, dtype=np.float32).reshape(2, 3).view(_CupyLikeArray)
    p.accumulate(part)
    assert p.grad is part
    p.zero_grad()
    strided = np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2].view(_CupyLikeArray)
    p.accumulate(strided)
    assert p.grad is not strided and type(p.grad) is _CupyLikeArray
    np.testing.assert_array_equal(p.grad, np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2])
    q = nn.Parameter(np.zeros(3, np.float32))
    q.zero_grad()
    frozen = np.ones(3, np.float32)
    frozen.flags.writeable = False
    q.accumulate(frozen)
    assert q.grad is not frozen and q.grad.flags.writeable
    np.testing.assert_array_equal(q.grad, 1.0)
