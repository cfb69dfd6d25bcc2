"""Generator EMA: exact values against the closed form, buffers copied, state round trip."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.ema import EMA
from strategies import seeds


def small_generator(rng, dtype=np.float64):
    return nn.Sequential(nn.Linear(3, 4, dtype=dtype, rng=rng), nn.BatchNorm1d(4, dtype=dtype), nn.ReLU(),
                         nn.spectral_norm(nn.Linear(4, 2, dtype=dtype, rng=rng), rng=rng))


@given(seed=seeds(), decay=st.floats(0.0, 1.0), k=st.integers(1, 5))
def test_update_matches_the_closed_form(seed, decay, k):
    """θ_ema after k updates = decay^k θ₀ + (1 − decay) Σ_j decay^{k−j} θ_j."""
    rng = np.random.default_rng(seed)
    g = small_generator(rng)
    ema = EMA(g, decay=decay)
    theta0 = {n: p.data.copy() for n, p in g.named_parameters()}
    history = []
    for _ in range(k):
        for p in g.parameters():  # an "optimizer step"
            p.data += rng.standard_normal(p.shape)
        g(rng.standard_normal((5, 3)))  # moves BatchNorm's running stats and SN's u, v
        history.append({n: p.data.copy() for n, p in g.named_parameters()})
        ema.update()
    for name, p in ema.module.named_parameters():
        expected = decay ** k * theta0[name] + (1 - decay) * sum(
            decay ** (k - j) * history[j - 1][name] for j in range(1, k + 1))
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-12)
    for (name, b_ema), (_, b) in zip(ema.module.named_buffers(), g.named_buffers()):
        np.testing.assert_array_equal(b_ema, b, err_msg=name)  # buffers are copied
    assert ema.num_updates == k
    assert not ema.module.training and g.training


def test_live_model_is_not_touched_and_grads_are_separate():
    rng = np.random.default_rng(0)
    g = small_generator(rng)
    before = {n: v.copy() for n, v in g.state_dict().items()}
    ema = EMA(g, decay=0.5)
    for p in g.parameters():
        p.data += 1.0
    ema.update()
    for n, v in g.state_dict().items():
        if n.endswith(("weight", "bias", "weight_orig")):
            np.testing.assert_allclose(v, before[n] + 1.0)
    for (_, pe), (_, p) in zip(ema.module.named_parameters(), g.named_parameters()):
        assert pe is not p and pe.data is not p.data
        np.testing.assert_allclose(pe.data, p.data - 0.5)


def test_start_step_copies_before_averaging():
    rng = np.random.default_rng(1)
    g = small_generator(rng)
    ema = EMA(g, decay=0.9, start_step=2)
    for step in range(3):
        for p in g.parameters():
            p.data += 1.0
        previous = {n: p.data.copy() for n, p in ema.module.named_parameters()}
        ema.update()
        for (n, pe), (_, p) in zip(ema.module.named_parameters(), g.named_parameters()):
            expected = p.data if step < 2 else 0.9 * previous[n] + 0.1 * p.data
            np.testing.assert_allclose(pe.data, expected, rtol=1e-12)


def test_state_dict_round_trip_and_copy_to():
    rng = np.random.default_rng(2)
    g = small_generator(rng, np.float32)
    ema = EMA(g, decay=0.99)
    for _ in range(3):
        for p in g.parameters():
            p.data += rng.standard_normal(p.shape).astype(np.float32)
        g(rng.standard_normal((4, 3)).astype(np.float32))
        ema.update()
    sd = ema.state_dict()
    assert set(sd) == set(g.state_dict()) | {"ema.decay", "ema.num_updates"}
    fresh = EMA(small_generator(np.random.default_rng(9), np.float32), decay=0.5)
    fresh.load_state_dict(sd)
    assert fresh.decay == 0.99 and fresh.num_updates == 3
    z = rng.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(fresh.module(z), ema.module(z))
    target = small_generator(np.random.default_rng(7), np.float32).eval()
    assert ema.copy_to(target) is target
    np.testing.assert_array_equal(target(z), ema.module(z))
    with pytest.raises(KeyError, match="ema.decay"):
        fresh.load_state_dict(g.state_dict())


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(2, 2), decay=1.5)
    with pytest.raises(TypeError, match="Module"):
        EMA(object())
