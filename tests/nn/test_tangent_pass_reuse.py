"""What Game.jvp's one sweep relies on (minigan/game.py, ``_sweep_jvp``): a module's saved forward
values can be taken and put back (``forward_caches``/``restore_caches``), one tangent forward
serves several tangent backward passes, and ``skipped_tangent_grads`` forms no R{dθ} while the
input tangents stay exact."""
import numpy as np
from hypothesis import given, settings

import minigan.nn as nn
from minigan.hvp import clear_tangents, set_tangents, size_of, skipped_tangent_grads, tangent_grads
from strategies import randomize_parameters, seeds

F64 = np.float64


def every_kind(rng):
    """Conv2d, BatchNorm in training mode, ConvTranspose2d, LayerNorm, spectral norm, Linear."""
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=rng), nn.BatchNorm2d(3, dtype=F64), nn.ELU(0.7),
        nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, dtype=F64, rng=rng),
        nn.LayerNorm((2, 4, 4), dtype=F64), nn.Softplus(), nn.Flatten(),
        nn.spectral_norm(nn.Linear(32, 3, dtype=F64, rng=rng), rng=rng), nn.Tanh(),
        nn.Linear(3, 1, dtype=F64, rng=rng))
    randomize_parameters(model, rng)
    for m in model.modules():   # spectral norm: the stored u, v serve every forward (as in Game)
        if isinstance(m, nn.SpectralNorm):
            object.__setattr__(m, "training", False)
    return model


def tangent_sweep(model, x, x_dot, dy, dy_dot, forward=True):
    """(dx, R{dx}, R{dθ}) of one tangent backward (after a forward and tangent forward if asked)."""
    params = list(model.parameters())
    if forward:
        model(x)
        model.tangent_forward(x_dot)
    for p in params:
        p.tangent_grad = None
    dx, dx_dot = model.tangent_backward(dy, dy_dot, accumulate=False)
    return dx, dx_dot, tangent_grads(params)


@settings(max_examples=4)
@given(seed=seeds())
def test_restored_caches_give_the_first_batch_passes_exactly(seed):
    """Forward on a, caches taken, forward on b, caches put back: the passes are a's, bit for bit,
    and the same tangent forward serves a second and third tangent backward."""
    rng = np.random.default_rng(seed)
    model = every_kind(rng)
    params = list(model.parameters())
    a, b = rng.standard_normal((3, 2, 4, 4)), 3 * rng.standard_normal((3, 2, 4, 4))
    a_dot = rng.standard_normal(a.shape)
    dy, dy_dot = rng.standard_normal((3, 1)), rng.standard_normal((3, 1))
    set_tangents(params, rng.standard_normal(size_of(params)))
    alone = tangent_sweep(model, a, a_dot, dy, dy_dot)
    again = tangent_sweep(model, a, a_dot, dy, dy_dot, forward=False)   # the same forward, once more

    model(a)
    model.tangent_forward(a_dot)
    on_a = model.forward_caches()
    other = tangent_sweep(model, b, np.zeros_like(b), dy, dy_dot)
    model.restore_caches(on_a)
    restored = tangent_sweep(model, a, a_dot, dy, dy_dot, forward=False)
    for want, got, between in zip(alone, restored, other):
        assert np.array_equal(want, got) and not np.allclose(want, between)
    for want, got in zip(alone, again):
        assert np.array_equal(want, got)
    clear_tangents(params)


@settings(max_examples=4)
@given(seed=seeds())
def test_skipped_tangent_grads_leave_the_input_tangent_exact(seed):
    rng = np.random.default_rng(seed)
    model = every_kind(rng)
    params = list(model.parameters())
    x, x_dot = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal((3, 2, 4, 4))
    dy, dy_dot = rng.standard_normal((3, 1)), rng.standard_normal((3, 1))
    set_tangents(params, rng.standard_normal(size_of(params)))
    dx, dx_dot, r_theta = tangent_sweep(model, x, x_dot, dy, dy_dot)
    assert np.count_nonzero(r_theta) > 0.9 * r_theta.size   # R{dθ} formed when not skipped
    model(x)
    model.tangent_forward(x_dot)
    for p in params:
        p.tangent_grad = None
    with skipped_tangent_grads(model):
        got, got_dot = model.tangent_backward(dy, dy_dot, accumulate=False)
        assert not any(p.tangent_grad_wanted for p in params)
    assert np.array_equal(got, dx) and np.array_equal(got_dot, dx_dot)
    assert all(p.tangent_grad is None for p in params) and all(p.tangent_grad_wanted for p in params)
    clear_tangents(params)


def test_a_parameter_calls_its_tangent_part_only_when_wanted():
    p = nn.Parameter(np.ones(2))
    calls = []

    def part():
        calls.append(1)
        return np.full(2, 3.0)
    p.tangent_grad_wanted = False
    p.accumulate_tangent(part)
    p.accumulate_tangent(np.ones(2))
    assert calls == [] and p.tangent_grad is None
    p.tangent_grad_wanted = True
    p.accumulate_tangent(part)
    p.accumulate_tangent(np.ones(2))
    assert calls == [1] and np.array_equal(p.tangent_grad, [4.0, 4.0])
