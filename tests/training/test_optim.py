"""minigan.optim against independent float64 references written from the published rules.

The references below follow the pseudo-code of the PyTorch documentation and the papers
(Adam: m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), θ ← θ − γ m̂/(√v̂ + ε)), not the optimizer's
own order of operations, and keep the whole trajectory in float64. Gradients change every
step and depend on the current parameters (g = s_t ⊙ θ + n_t with random s_t, n_t), so a
wrong step anywhere shows up in the trajectory.
"""
from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from minigan.nn import Linear, Parameter, Sequential, Tanh
from minigan.optim import SGD, Adam, Optimizer, RMSprop

SETTINGS = settings(max_examples=40, deadline=None)


# --- the references (float64, plain NumPy, one dict of state per parameter) ------------

def ref_sgd(theta, g, s, t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    g = g + weight_decay * theta
    if momentum != 0:
        s["b"] = g.copy() if t == 1 else momentum * s["b"] + (1 - dampening) * g
        g = g + momentum * s["b"] if nesterov else s["b"]
    return theta - lr * g


def ref_rmsprop(theta, g, s, t, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0,
                momentum=0.0, centered=False):
    g = g + weight_decay * theta
    s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g ** 2
    v_tilde = s["v"]
    if centered:
        s["g_ave"] = alpha * s.get("g_ave", 0.0) + (1 - alpha) * g
        v_tilde = v_tilde - s["g_ave"] ** 2
    if momentum > 0:
        s["b"] = momentum * s.get("b", 0.0) + g / (np.sqrt(v_tilde) + eps)
        return theta - lr * s["b"]
    return theta - lr * g / (np.sqrt(v_tilde) + eps)


def ref_adam(theta, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             amsgrad=False):
    b1, b2 = betas
    g = g + weight_decay * theta
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g ** 2
    m_hat = s["m"] / (1 - b1 ** t)
    if amsgrad:
        s["v_max"] = np.maximum(s.get("v_max", 0.0), s["v"])
        v_hat = s["v_max"] / (1 - b2 ** t)
    else:
        v_hat = s["v"] / (1 - b2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps)


REFERENCE = {SGD: ref_sgd, RMSprop: ref_rmsprop, Adam: ref_adam}


# --- hyperparameter strategies -------------------------------------------------------

def sgd_options():
    def build(lr, momentum, dampening, wd, nesterov):
        if nesterov and momentum > 0:
            dampening = 0.0
        else:
            nesterov = False
        return dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd,
                    nesterov=nesterov)
    return st.builds(build, st.floats(1e-3, 0.5), st.sampled_from([0.0, 0.5]) | st.floats(0.0, 0.99),
                     st.sampled_from([0.0]) | st.floats(0.0, 0.9), st.sampled_from([0.0]) | st.floats(0.0, 0.1),
                     st.booleans())


def rmsprop_options():
    return st.builds(dict, lr=st.floats(1e-4, 0.1), alpha=st.floats(0.5, 0.999),
                     eps=st.sampled_from([1e-8, 1e-3]), weight_decay=st.sampled_from([0.0, 0.01]),
                     momentum=st.sampled_from([0.0]) | st.floats(0.0, 0.95), centered=st.booleans())


def adam_options():
    return st.builds(dict, lr=st.floats(1e-4, 0.1),
                     betas=st.tuples(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0.0, 0.99),
                                     st.sampled_from([0.9, 0.999]) | st.floats(0.0, 0.9999)),
                     eps=st.sampled_from([1e-8, 1e-3]), weight_decay=st.sampled_from([0.0, 0.01]),
                     amsgrad=st.booleans())


OPTIONS = {SGD: sgd_options, RMSprop: rmsprop_options, Adam: adam_options}
CASES = [(SGD, OPTIONS[SGD]()), (RMSprop, OPTIONS[RMSprop]()), (Adam, OPTIONS[Adam]())]


# --- helpers ---------------------------------------------------------------------------

def make_params(shapes, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def gradient_fields(shapes, seed, steps):
    """Per step and parameter: (s_t, n_t) with g = s_t * θ + n_t."""
    rng = np.random.default_rng(seed + 1)
    return [[(rng.uniform(-1, 1, s), rng.standard_normal(s)) for s in shapes] for _ in range(steps)]


def set_grads(params, fields):
    for p, (scale, noise) in zip(params, fields):
        p.grad[...] = scale * p.data + noise


def run(opt, params, all_fields):
    for fields in all_fields:
        set_grads(params, fields)
        opt.step()


def reference_run(cls, thetas, all_fields, options_per_param):
    thetas = [t.astype(np.float64) for t in thetas]
    states = [{} for _ in thetas]
    for t, fields in enumerate(all_fields, start=1):
        for i, (scale, noise) in enumerate(fields):
            g = scale * thetas[i] + noise
            thetas[i] = REFERENCE[cls](thetas[i], g, states[i], t, **options_per_param[i])
    return thetas


shapes_st = st.lists(array_shapes(min_dims=0, max_dims=3, max_side=4), min_size=1, max_size=3)


# --- updates against the references ----------------------------------------------------

@pytest.mark.parametrize("cls, options", CASES, ids=["SGD", "RMSprop", "Adam"])
def test_float64_trajectory_matches_reference(cls, options):
    @SETTINGS
    @given(shapes=shapes_st, opts=options, steps=st.integers(4, 7), seed=st.integers(0, 2**16))
    def check(shapes, opts, steps, seed):
        params = make_params(shapes, seed)
        theta0 = [p.data.copy() for p in params]
        fields = gradient_fields(shapes, seed, steps)
        run(cls(params, **opts), params, fields)
        expected = reference_run(cls, theta0, fields, [opts] * len(params))
        for p, e in zip(params, expected):
            assert p.data.dtype == np.float64
            np.testing.assert_allclose(p.data, e, rtol=1e-9, atol=1e-12)
    check()


@pytest.mark.parametrize("cls, options", CASES, ids=["SGD", "RMSprop", "Adam"])
def test_float32_stays_float32_and_tracks_reference(cls, options):
    @settings(max_examples=15, deadline=None)
    @given(shapes=shapes_st, opts=options, seed=st.integers(0, 2**16))
    def check(shapes, opts, seed):
        params = make_params(shapes, seed, np.float32)
        theta0 = [p.data.copy() for p in params]
        # fixed float32 gradients (s_t = 0) so both runs see the same g exactly
        rng = np.random.default_rng(seed)
        fields = [[(np.zeros(s), rng.standard_normal(s).astype(np.float32).astype(np.float64))
                   for s in shapes] for _ in range(5)]
        opt = cls(params, **opts)
        run(opt, params, fields)
        expected = reference_run(cls, theta0, fields, [opts] * len(params))
        for p, e, t0 in zip(params, expected, theta0):
            assert p.data.dtype == np.float32 and p.grad.dtype == np.float32
            for arr in opt.state[p].values():
                if isinstance(arr, np.ndarray):
                    assert arr.dtype == np.float32
            # float32 rounding: a few ulps of the values involved, per step
            scale = 1 + np.abs(t0) + np.abs(e - t0) * 10
            assert np.all(np.abs(p.data - e) <= 64 * np.finfo(np.float32).eps * scale)
    check()


@SETTINGS
@given(lrs=st.tuples(st.floats(1e-3, 0.1), st.floats(1e-3, 0.1)), seed=st.integers(0, 2**16),
       momentum=st.floats(0.0, 0.9))
def test_param_groups_use_their_own_options(lrs, seed, momentum):
    shapes = [(3, 2), (4,), (2, 2)]
    fields = gradient_fields(shapes, seed, 5)
    for cls, extra in [(SGD, {"momentum": momentum}), (RMSprop, {"momentum": momentum}),
                       (Adam, {"betas": (momentum, 0.99)})]:
        params = make_params(shapes, seed)
        theta0 = [p.data.copy() for p in params]
        groups = [{"params": params[:2]}, {"params": [params[2]], "lr": lrs[1], **extra}]
        opt = cls(groups, lr=lrs[0])
        run(opt, params, fields)
        per_param = [{"lr": lrs[0]}, {"lr": lrs[0]}, {"lr": lrs[1], **extra}]
        expected = reference_run(cls, theta0, fields, per_param)
        for p, e in zip(params, expected):
            np.testing.assert_allclose(p.data, e, rtol=1e-9, atol=1e-12)


def test_zero_learning_rate_group_is_left_alone():
    a, b = make_params([(3,), (3,)], 0)
    a0, b0 = a.data.copy(), b.data.copy()
    opt = Adam([{"params": [a], "lr": 0.0}, {"params": [b]}], lr=0.1)
    a.grad[...] = 1.0
    b.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(a.data, a0)
    assert not np.any(b.data == b0)
    assert opt.state[a]["step"] == 1


# --- state dicts ---------------------------------------------------------------------------

ROUND_TRIP = [
    (SGD, dict(lr=0.05)),
    (SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (RMSprop, dict(lr=0.01)),
    (RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01)),
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.01, betas=(0.0, 0.9), amsgrad=True, weight_decay=0.01)),
    (RMSprop, dict(lr=0.01, centered=True)),   # grad_avg kept, momentum_buffer (listed before it) not
]


@pytest.mark.parametrize("cls, opts", ROUND_TRIP)
@pytest.mark.parametrize("k", [1, 3])
def test_state_dict_round_trip_is_bit_exact(cls, opts, k):
    shapes = [(4, 3), (3,), ()]
    fields = gradient_fields(shapes, 7, 7)
    # uninterrupted
    params = make_params(shapes, 7, np.float32)
    run(cls(params, **opts), params, fields)
    # interrupted after k steps: save (through pickle), rebuild everything, load, go on
    first = make_params(shapes, 7, np.float32)
    opt = cls(first, **opts)
    run(opt, first, fields[:k])
    saved = pickle.loads(pickle.dumps(opt.state_dict()))
    for group in saved["param_groups"]:
        assert all(isinstance(v, (float, bool, tuple, list)) for v in group.values())
    for entry in saved["state"].values():
        assert isinstance(entry["step"], int) and entry["step"] == k
        assert all(isinstance(v, np.ndarray) for n, v in entry.items() if n != "step")
    second = [Parameter(p.data.copy()) for p in first]
    fresh = cls(second, **{**opts, "lr": 123.0})  # the hyperparameters come from the dict
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == opts["lr"]
    run(fresh, second, fields[k:])
    for p, q in zip(params, second):
        np.testing.assert_array_equal(p.data, q.data)
        assert q.data.dtype == np.float32


def test_state_dict_is_a_copy():
    (p,) = make_params([(3,)], 0)
    opt = Adam([p], lr=0.1)
    p.grad[...] = 1.0
    opt.step()
    saved = opt.state_dict()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in saved["state"][0].items()}
    opt.step()
    for name, value in before.items():
        np.testing.assert_array_equal(saved["state"][0][name], value)
    assert saved["state"][0]["exp_avg"] is not opt.state[p]["exp_avg"]


def _trained_adam(shapes):
    params = make_params(shapes, 0, np.float32)
    opt = Adam(params, lr=0.01)
    run(opt, params, gradient_fields(shapes, 0, 2))
    return opt.state_dict()


def test_load_rejects_wrong_number_of_params_and_loads_nothing():
    saved = _trained_adam([(3,), (2, 2)])
    params = make_params([(3,)], 1, np.float32)
    opt = Adam(params, lr=0.5)
    with pytest.raises(ValueError, match="parameter group 0 has 2 parameter"):
        opt.load_state_dict(saved)
    assert opt.state == {} and opt.param_groups[0]["lr"] == 0.5
    two_groups = Adam([{"params": params}, {"params": make_params([(2, 2)], 2)}], lr=0.5)
    with pytest.raises(ValueError, match="1 parameter group"):
        two_groups.load_state_dict(saved)


def test_load_rejects_shape_mismatch_and_loads_nothing():
    saved = _trained_adam([(3,), (2, 2)])
    params = make_params([(3,), (4,)], 1, np.float32)
    opt = Adam(params, lr=0.5)
    p0 = params[0]
    p0.grad[...] = 1.0
    params[1].grad[...] = 1.0
    opt.step()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state[p0].items()}
    with pytest.raises(ValueError, match=r"exp_avg.*shape \(2, 2\).*\(4,\)"):
        opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 0.5
    for name, value in before.items():
        np.testing.assert_array_equal(opt.state[p0][name], value)


def test_load_rejects_foreign_state_and_bad_hyperparameters():
    saved = _trained_adam([(3,)])
    with pytest.raises(ValueError, match="unknown entries"):
        SGD(make_params([(3,)], 0), lr=0.1, momentum=0.9).load_state_dict(
            {"state": saved["state"], "param_groups": [
                {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0,
                 "nesterov": False, "params": [0]}]})
    bad = pickle.loads(pickle.dumps(saved))
    bad["param_groups"][0]["lr"] = -1.0
    opt = Adam(make_params([(3,)], 0), lr=0.5)
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.state == {}


def test_load_converts_and_copies_the_buffers():
    """Loaded buffers take the parameter's dtype and are the optimizer's own (the caller's
    arrays are neither kept nor changed by later steps)."""
    saved = _trained_adam([(3,)])
    for entry in saved["state"].values():
        for name in ("exp_avg", "exp_avg_sq"):
            entry[name] = entry[name].astype(np.float64)
    kept = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in saved["state"][0].items()}
    (p,) = make_params([(3,)], 1, np.float32)
    opt = Adam([p], lr=0.01)
    opt.load_state_dict(saved)
    p.grad[...] = 1.0
    opt.step()
    for name in ("exp_avg", "exp_avg_sq"):
        assert opt.state[p][name].dtype == np.float32
        np.testing.assert_array_equal(saved["state"][0][name], kept[name])
    same = make_params([(3,)], 1)  # float64: no conversion needed, still a copy
    opt = Adam(same, lr=0.01)
    opt.load_state_dict(saved)
    assert not np.shares_memory(opt.state[same[0]]["exp_avg"], saved["state"][0]["exp_avg"])


@pytest.mark.parametrize("step, ok", [(0, True), (5, True), (2.0, True), (-1, False), (1.5, False),
                                      (True, False), ("3", False), (None, False)])
def test_load_checks_the_step_count(step, ok):
    saved = _trained_adam([(3,)])
    saved["state"][0]["step"] = step
    opt = Adam(make_params([(3,)], 1, np.float32), lr=0.01)
    if ok:
        opt.load_state_dict(saved)
        assert opt.state[opt.param_groups[0]["params"][0]]["step"] == int(step)
    else:
        with pytest.raises(ValueError, match=r"^Adam.load_state_dict: state of parameter 0: step must "
                                             r"be a non-negative integer, got "):
            opt.load_state_dict(saved)


def test_load_errors_name_the_optimizer_and_the_problem():
    saved = _trained_adam([(3,)])
    opt = Adam(make_params([(3,)], 1, np.float32), lr=0.01)
    head = r"^Adam.load_state_dict: "
    for bad, match in [
        ({"state": {}}, "expected a dict with keys 'state' and 'param_groups'$"),
        ([saved], "expected a dict with keys 'state' and 'param_groups'$"),
        ({**saved, "param_groups": [{**saved["param_groups"][0], "momentum": 0.9}]},
         r"parameter group 0 has options \['amsgrad', 'betas', 'eps', 'lr', 'momentum', 'weight_decay'\], "
         r"expected \['amsgrad', 'betas', 'eps', 'lr', 'weight_decay'\]$"),
        ({**saved, "state": {7: saved["state"][0]}},
         r"state for parameter index 7, but the parameter groups only list indices \[0\]$"),
        ({**saved, "state": {0: {"exp_avg": saved["state"][0]["exp_avg"]}}}, "state of parameter 0 has no 'step'$"),
        ({**saved, "state": {0: [1]}}, "state of parameter 0 has no 'step'$"),
        ({**saved, "state": {0: {**saved["state"][0], "momentum_buffer": np.zeros(3)}}},
         r"state of parameter 0 has unknown entries \['momentum_buffer'\]; Adam keeps "
         r"\['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'\]$"),
    ]:
        with pytest.raises(ValueError, match=head + match):
            opt.load_state_dict(bad)
    assert opt.state == {}


def test_repr_lists_groups_and_options():
    a, b = make_params([(3,), (2, 2)], 0)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert repr(opt) == (
        "SGD(\n"
        "  group 0: 1 parameter(s), lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False\n"
        "  group 1: 1 parameter(s), lr=0.5, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False\n"
        ")")


# --- construction and validation ---------------------------------------------------------

@pytest.mark.parametrize("make, word", [
    (lambda ps: SGD(ps, lr=-0.1), "lr"),
    (lambda ps: SGD(ps, lr=float("nan")), "lr"),
    (lambda ps: Adam(ps, lr=float("inf")), "lr"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), "momentum"),
    (lambda ps: RMSprop(ps, momentum=-0.5), "momentum"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1.0), "weight_decay"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "nesterov"),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.5, nesterov=True), "nesterov"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), "betas"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), "betas"),
    (lambda ps: Adam(ps, betas=(0.9,)), "betas"),
    (lambda ps: Adam(ps, eps=-1e-8), "eps"),
    (lambda ps: RMSprop(ps, eps=-1e-8), "eps"),
    (lambda ps: RMSprop(ps, alpha=1.5), "alpha"),
    (lambda ps: RMSprop(ps, alpha=-0.1), "alpha"),
    (lambda ps: Adam(ps, lr="fast"), "lr"),
    (lambda ps: Adam([{"params": ps, "lr": -1.0}]), "lr"),
    (lambda ps: Adam([{"params": ps, "betaz": (0.5, 0.9)}]), "betaz"),
])
def test_bad_hyperparameters_are_rejected(make, word):
    with pytest.raises(ValueError, match=word):
        make(make_params([(2,)], 0))


@pytest.mark.parametrize("make, message", [
    (lambda ps: SGD(ps, lr=-0.1), "SGD: invalid lr -0.1: must be >= 0"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-1), "SGD: invalid momentum -1: must be >= 0"),
    (lambda ps: SGD(ps, lr=0.1, dampening=float("nan")), "SGD: invalid dampening nan: must be finite"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1), "SGD: invalid weight_decay -1: must be >= 0"),
    (lambda ps: SGD(ps, lr=0.1, nesterov="no"), "SGD: invalid nesterov 'no': expected True or False"),
    (lambda ps: RMSprop(ps, lr=True), "RMSprop: invalid lr True: expected a number, got a bool"),
    (lambda ps: RMSprop(ps, alpha=-1), "RMSprop: invalid alpha -1: must be >= 0"),
    (lambda ps: RMSprop(ps, eps=-1), "RMSprop: invalid eps -1: must be >= 0"),
    (lambda ps: RMSprop(ps, weight_decay=-1), "RMSprop: invalid weight_decay -1: must be >= 0"),
    (lambda ps: RMSprop(ps, momentum=-1), "RMSprop: invalid momentum -1: must be >= 0"),
    (lambda ps: RMSprop(ps, centered=1), "RMSprop: invalid centered 1: expected True or False"),
    (lambda ps: Adam(ps, lr=-1), "Adam: invalid lr -1: must be >= 0"),
    (lambda ps: Adam(ps, betas=("x", 0.9)), "Adam: invalid betas[0] 'x': expected a number"),
    (lambda ps: Adam(ps, betas=(0.9, None)), "Adam: invalid betas[1] None: expected a number"),
    (lambda ps: Adam(ps, eps=-1), "Adam: invalid eps -1: must be >= 0"),
    (lambda ps: Adam(ps, weight_decay=-1), "Adam: invalid weight_decay -1: must be >= 0"),
    (lambda ps: Adam(ps, amsgrad="yes"), "Adam: invalid amsgrad 'yes': expected True or False"),
    (lambda ps: Adam([ps[0], {"params": ps}]), "Adam: params mixes Parameters and dicts (parameter groups); "
                                               "give either a list of Parameters or a list of dicts"),
    (lambda ps: Adam(ps).add_param_group([ps[0]]), "Adam: a parameter group must be a dict, got list"),
    (lambda ps: Adam(ps).add_param_group({"lr": 0.1}), "Adam: a parameter group needs a 'params' entry"),
    (lambda ps: Adam([{"params": [ps[0], 3]}]), "Adam: params item 1 is a int, not a minigan Parameter "
                                                "(pass model.parameters())"),
    (lambda ps: Adam(ps).add_param_group({"params": ps}), "Adam: some parameters appear more than once "
                                                          "(in one group or in several)"),
    (lambda ps: Adam(3), "Adam: params must be an iterable of Parameters or of dicts (parameter groups), got a int"),
])
def test_bad_hyperparameters_are_named_in_full(make, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        make(make_params([(2,)], 0))


def test_hyperparameters_are_normalised_and_defaults_kept():
    """Each group holds exactly its optimizer's options as floats and bools (an int lr becomes a
    float), the documented defaults, and the closed ends (RMSprop's α = 1) are allowed."""
    ps = make_params([(2,)], 0)
    for opt, want in [
        (SGD(ps, lr=1), dict(lr=1.0, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)),
        (RMSprop(ps), dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)),
        (RMSprop(ps, lr=1, alpha=1, eps=0, weight_decay=0, momentum=0, centered=np.bool_(True)),
         dict(lr=1.0, alpha=1.0, eps=0.0, weight_decay=0.0, momentum=0.0, centered=True)),
        (Adam(ps), dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)),
        (Adam(ps, lr=1, betas=[0, 0], eps=0, amsgrad=np.bool_(False)),
         dict(lr=1.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0, amsgrad=False)),
    ]:
        group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
        assert group == want and all(type(v) is type(want[k]) for k, v in group.items()), group


def test_a_group_may_hold_a_single_parameter():
    a, b = make_params([(2, 3), (3,)], 0)
    opt = SGD([{"params": a}, {"params": b, "lr": 0.5}], lr=0.1)
    assert [g["params"] for g in opt.param_groups] == [[a], [b]]


def test_rmsprop_weight_decay_one_and_no_momentum_buffer_without_momentum():
    (p,) = make_params([(3,)], 0)
    theta0 = p.data.copy()
    opt = RMSprop([p], lr=0.1, weight_decay=1.0)
    p.grad[...] = 0.0   # g = 0 + 1·θ: the step is −lr·θ/(sqrt((1 − α)θ²) + ε)
    opt.step()
    want = theta0 - 0.1 * theta0 / (np.sqrt(0.01 * theta0 ** 2) + 1e-8)
    np.testing.assert_allclose(p.data, want, rtol=1e-12)
    assert set(opt.state[p]) == {"step", "square_avg"}


@pytest.mark.parametrize("params, word", [
    ([], "empty"),
    ((p for p in []), "empty"),
    ([{"params": []}], "empty"),
    ([np.zeros(3)], "not a minigan Parameter"),
    ("abc", "not a minigan Parameter"),
    (None, "iterable"),
])
def test_bad_parameter_lists_are_rejected(params, word):
    with pytest.raises(ValueError, match=word):
        SGD(params, lr=0.1)


def test_duplicate_parameters_are_rejected():
    (p,) = make_params([(2,)], 0)
    with pytest.raises(ValueError, match="more than once"):
        Adam([p, p])
    with pytest.raises(ValueError, match="more than once"):
        Adam([{"params": [p]}, {"params": [p], "lr": 0.1}])


def test_base_class_needs_a_subclass():
    with pytest.raises(NotImplementedError):
        Optimizer(make_params([(2,)], 0), {"lr": 0.1})


def test_accepts_a_generator_of_module_parameters():
    rng = np.random.default_rng(0)
    model = Sequential(Linear(3, 4, rng=rng), Tanh(), Linear(4, 1, rng=rng))
    opt = Adam(model.parameters(), lr=0.01)
    assert len(opt.param_groups[0]["params"]) == 4
    y = model(rng.standard_normal((5, 3)).astype(np.float32))
    model.backward(np.ones_like(y))
    before = [p.data.copy() for p in model.parameters()]
    opt.step()
    for p, b in zip(model.parameters(), before):
        assert not np.array_equal(p.data, b)
    opt.zero_grad()
    assert all(not np.any(p.grad) for p in model.parameters())


@pytest.mark.parametrize("cls, opts", ROUND_TRIP)
def test_updates_in_place_and_leaves_grad_alone(cls, opts):
    params = make_params([(3, 2), (2,)], 3, np.float32)
    arrays = [p.data for p in params]
    grad_arrays = [p.grad for p in params]
    opt = cls(params, **opts)
    for fields in gradient_fields([(3, 2), (2,)], 3, 3):
        set_grads(params, fields)
        grads = [p.grad.copy() for p in params]
        before = [p.data.copy() for p in params]
        opt.step()
        for p, a, ga, g, b in zip(params, arrays, grad_arrays, grads, before):
            assert p.data is a and p.grad is ga
            np.testing.assert_array_equal(p.grad, g)
            assert not np.array_equal(p.data, b)


def test_a_parameter_with_zero_grad_is_still_updated():
    (p,) = make_params([(4,)], 0)
    theta0 = p.data.copy()
    opt = SGD([p], lr=0.1, weight_decay=0.5)
    opt.step()
    np.testing.assert_allclose(p.data, theta0 * (1 - 0.05), rtol=1e-15)
    p.data[...] = theta0
    SGD([p], lr=0.1, weight_decay=1.0).step()   # λ = 1 decays too (no special value but 0)
    np.testing.assert_allclose(p.data, theta0 * (1 - 0.1), rtol=1e-15)
    (q,) = make_params([(4,)], 1)
    adam = Adam([q], lr=0.1)
    q.grad[...] = 1.0
    adam.step()
    q.grad[...] = 0.0
    moved = q.data.copy()
    adam.step()  # m ≠ 0 still moves θ, and the step count advances
    assert adam.state[q]["step"] == 2
    assert not np.array_equal(q.data, moved)


def test_closure_value_is_returned():
    (p,) = make_params([(2,)], 0)
    assert SGD([p], lr=0.1).step(lambda: 3.5) == 3.5


# --- GPU (CuPy), skipped without a device ------------------------------------------------

def _gpu():
    from minigan import backend
    return backend.gpu_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu(), reason="needs CuPy and an NVIDIA GPU")
@pytest.mark.parametrize("cls, opts", ROUND_TRIP)
def test_cupy_matches_numpy(cls, opts):
    import cupy
    shapes = [(5, 3), (3,)]
    fields = gradient_fields(shapes, 5, 5)
    host = make_params(shapes, 5, np.float32)
    dev = [Parameter(cupy.asarray(p.data)) for p in host]
    run(cls(host, **opts), host, fields)
    opt = cls(dev, **opts)
    for step_fields in fields:
        for p, (scale, noise) in zip(dev, step_fields):
            p.grad[...] = cupy.asarray(scale) * p.data + cupy.asarray(noise)
        opt.step()
    for h, d in zip(host, dev):
        assert isinstance(d.data, cupy.ndarray) and d.data.dtype == np.float32
        np.testing.assert_allclose(cupy.asnumpy(d.data), h.data, rtol=1e-5, atol=1e-6)
    sd = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for e in sd["state"].values() for k, v in e.items() if k != "step")
