"""DiffAugment: each op against its definition on small hand-checked inputs, gradients
(first and second order) by finite differences with the draws held fixed, the penalty
through Sequential(augment, critic)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.augment import AUGMENTATIONS, OPS, Augment, parse_policy
from minigan.gradcheck import check_gradients
from minigan.penalty import gradient_penalty, input_gradient, sample_norms
from second_order import second_order_report
from strategies import off_kinks, seeds

F64 = np.float64
TOL = 1e-7
POLICIES = sorted(OPS) + ["color", "color,translation,cutout", "cutout,brightness,translation"]


@st.composite
def batches(draw):
    rng = np.random.default_rng(draw(seeds()))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    return rng, rng.standard_normal((n, c, h, w)) * 2 + 0.5


@given(batches(), st.sampled_from(POLICIES))
def test_first_order_with_fixed_draws(batch, policy):
    rng, x = batch
    aug = Augment(policy, rng=rng)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    draws = aug.draws
    dy = rng.standard_normal(y.shape)
    dx = aug.backward(dy)
    report = check_gradients(lambda: float(np.sum(dy * aug(x, draws=draws))), {"x": x}, {"x": dx}, rng=rng)
    assert report.worst < TOL, str(report)


@given(batches(), st.sampled_from(POLICIES))
def test_second_order_with_fixed_draws(batch, policy):
    rng, x = batch
    aug = Augment(policy, rng=rng)
    aug(x)
    draws = aug.draws
    g, c = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    report = second_order_report(aug, x, g, c, rng, forward=lambda a: aug(a, draws=draws))
    assert report.worst < TOL, str(report)
    # J·c is the map's linear part: T(c) − T(0)
    aug(x, draws=draws)
    aug.backward(g, create_graph=True)
    jc, s = aug.double_backward(c)
    assert s is None
    np.testing.assert_allclose(jc, aug(c, draws=draws) - aug(np.zeros_like(c), draws=draws), atol=1e-12)


def test_brightness_saturation_contrast_by_hand():
    x = np.array([[[[1.0, 2.0]], [[3.0, 6.0]]]])  # (1, 2, 1, 2): pixels (1, 3) and (2, 6)
    y = OPS["brightness"]().apply(x, {"b": np.array([0.25])})
    np.testing.assert_allclose(y, x + 0.25)
    # saturation: channel means per pixel 2 and 4; a = 1.5 scales deviations ±1 and ±2
    y = OPS["saturation"]().apply(x, {"a": np.array([1.5])})
    np.testing.assert_allclose(y, [[[[0.5, 1.0]], [[3.5, 7.0]]]])
    # contrast: sample mean 3; a = 0.5 halves deviations (−2, −1, 0, 3)
    y = OPS["contrast"]().apply(x, {"a": np.array([0.5])})
    np.testing.assert_allclose(y, [[[[2.0, 2.5]], [[3.0, 4.5]]]])


def test_translation_and_cutout_by_hand():
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    y = OPS["translation"]().apply(x, {"th": np.array([1]), "tw": np.array([-1])})
    # y[i, j] = x[i + 1, j − 1]: rows move up by one, columns right by one, zeros enter
    np.testing.assert_array_equal(y[0, 0], [[0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15], [0, 0, 0, 0]])
    cut = OPS["cutout"]()
    # 4x4 image: a 2x2 square; centre (0, 3) -> rows -1..0 (clipped to 0), columns 2..3
    y = cut.apply(x, {"top": np.array([-1]), "left": np.array([2]), "kh": 2, "kw": 2})
    expected = x.copy()
    expected[0, 0, 0, 2:] = 0
    np.testing.assert_array_equal(y, expected)


@given(seed=seeds(), size=st.integers(1, 12))
def test_draw_ranges_follow_the_official_code(seed, size):
    rng = np.random.default_rng(seed)
    shape = (200, 1, size, size + 1)
    b = OPS["brightness"]().draw(rng, shape)["b"]
    assert b.min() >= -0.5 and b.max() < 0.5
    a = OPS["saturation"]().draw(rng, shape)["a"]
    assert a.min() >= 0 and a.max() < 2
    a = OPS["contrast"]().draw(rng, shape)["a"]
    assert a.min() >= 0.5 and a.max() < 1.5
    t = OPS["translation"]().draw(rng, shape)
    s_h, s_w = int(size / 8 + 0.5), int((size + 1) / 8 + 0.5)
    assert np.abs(t["th"]).max() <= s_h and np.abs(t["tw"]).max() <= s_w
    assert set(np.unique(t["th"])) == set(range(-s_h, s_h + 1))  # every shift is reachable
    d = OPS["cutout"]().draw(rng, shape)
    k = int(size / 2 + 0.5)
    assert d["kh"] == k and d["kw"] == int((size + 1) / 2 + 0.5)
    centres = d["top"] + k // 2
    assert centres.min() >= 0 and centres.max() <= size - k % 2
    mask = OPS["cutout"]().mask(shape, d, np, F64)
    assert ((1 - mask).sum(axis=(1, 2, 3)) >= 1).all()  # something is always cut


def test_registry_and_policies():
    assert set(AUGMENTATIONS) == {"color", "translation", "cutout"}
    assert parse_policy("color,translation,cutout") == ["brightness", "saturation", "contrast",
                                                        "translation", "cutout"]
    assert parse_policy("cutout, brightness") == ["cutout", "brightness"]
    assert parse_policy("") == []
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'.*color"):
        Augment("color,rotate")


def test_float32_fresh_draws_and_exact_resume():
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    a1, a2 = Augment(rng=np.random.default_rng(5)), Augment(rng=np.random.default_rng(5))
    y1, y1b = a1(x), a1(x)
    assert y1.dtype == np.float32 and y1.shape == x.shape
    assert not np.array_equal(y1, y1b)  # fresh draws each call
    np.testing.assert_array_equal(a2(x), y1)  # the same stream gives the same augmentations
    np.testing.assert_array_equal(a2(x), y1b)
    assert a1.backward(np.ones_like(y1)).dtype == np.float32
    with pytest.raises(ValueError, match="4-D"):
        a1(x[0])


@given(seed=seeds(), policy=st.sampled_from(["color,translation,cutout", "color", "translation,cutout"]),
       act=st.sampled_from([lambda: nn.LeakyReLU(0.2), nn.Tanh, nn.Softplus]))
def test_gradient_penalty_through_augment_then_critic(seed, policy, act):
    """Sequential(augment, critic) under the penalty, the draws replayed for the finite differences."""
    rng = np.random.default_rng(seed)
    critic = nn.Sequential(Augment(policy, rng=np.random.default_rng(seed)),
                           nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=rng), act(),
                           nn.Flatten(), nn.Linear(12, 1, dtype=F64, rng=rng))
    x = rng.standard_normal((3, 2, 4, 4))
    assume(off_kinks(critic, x))
    aug = critic[0]
    aug.rng = np.random.default_rng(seed)
    critic.zero_grad()
    gradient_penalty(critic, x, weight=2.0)
    params = dict(critic.named_parameters())
    grads = {k: p.grad.copy() for k, p in params.items()}

    def penalty():
        aug.rng = np.random.default_rng(seed)  # the same draws as the analytic pass
        norms = sample_norms(input_gradient(critic, x))
        return 2.0 * np.mean(norms ** 2 - 2 * norms)

    # along random directions of all weights at once (the conv/linear critic alone is checked
    # per element in tests/losses/test_penalty.py; this checks the augmentation in front of it)
    report = check_gradients(penalty, {k: p.data for k, p in params.items()}, grads, rng=rng,
                             per_element=False, n_directions=6)
    assert report.worst < 1e-6, str(report)
