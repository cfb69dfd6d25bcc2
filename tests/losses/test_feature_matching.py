"""Feature matching (minigan/losses/feature_matching.py): the value and gradients by float64 finite
differences, the registered loss wired to them, G's gradient through the critic's first layers
only (the public layer API), and a few training steps from the CLI."""
import csv

import numpy as np
import pytest

from minigan import models
from minigan.cli import main
from minigan.config import ConfigError, TrainConfig
from minigan.gradcheck import numerical_gradient
from minigan.losses import LOSSES, discriminator_loss_minimax
from minigan.losses.feature_matching import FeatureMatching, feature_matching_loss
from minigan.testing import check_loss_gradient


@pytest.mark.parametrize("n, m, shape, seed", [(5, 3, (4,), 0), (2, 6, (2, 3, 2), 1), (1, 1, (1,), 2)])
def test_feature_matching_gradients_match_finite_differences(n, m, shape, seed):
    rng = np.random.default_rng(seed)
    r, f = rng.standard_normal((n,) + shape) * 2, rng.standard_normal((m,) + shape) + 0.5
    check_loss_gradient(lambda a, b: feature_matching_loss(a, b)[0], lambda a, b: feature_matching_loss(a, b)[1],
                        [r, f])


def test_feature_matching_value_is_the_squared_distance_of_the_means():
    r = np.array([[1.0, 2.0], [3.0, 4.0]])       # mean (2, 3)
    f = np.array([[0.0, 1.0], [0.0, 3.0], [3.0, 2.0]])  # mean (1, 2)
    value, (d_r, d_f) = feature_matching_loss(r, f)
    assert value == pytest.approx(2.0, rel=1e-15)
    np.testing.assert_allclose(d_f, np.full((3, 2), -2.0 / 3), rtol=1e-15)
    np.testing.assert_allclose(d_r, np.full((2, 2), 1.0), rtol=1e-15)
    value32, (_, d32) = feature_matching_loss(r.astype(np.float32), f.astype(np.float32))
    assert isinstance(value32, float) and d32.dtype == np.float32
    with pytest.raises(ValueError, match="one shape per sample"):
        feature_matching_loss(r, f[:, :1])


def test_the_registered_loss_is_the_documented_functions():
    cls = LOSSES.get("feature-matching")
    assert cls is FeatureMatching and cls.needs_real_in_g_step and cls.separable and cls.feature_layer == -1
    loss = cls(TrainConfig(loss="feature-matching").resolved())
    rng = np.random.default_rng(3)
    r, f = rng.standard_normal((4, 3)), rng.standard_normal((6, 3)) - 1
    d_value, d_grads = loss.discriminator(r[:, :1], f[:, :1])
    want_value, want_grads = discriminator_loss_minimax(r[:, :1], f[:, :1])
    assert d_value == want_value and all(np.array_equal(a, b) for a, b in zip(d_grads, want_grads))
    value, d_f = loss.generator(f, r)
    want, (_, want_f) = feature_matching_loss(r, f)
    assert value == want and np.array_equal(d_f, want_f)


def test_feature_matching_tangents_are_differences_of_the_gradient():
    """R{d} along (ṙ, ḟ) is the directional derivative of the gradient (it is linear: exact)."""
    rng = np.random.default_rng(4)
    loss = FeatureMatching(TrainConfig(loss="feature-matching").resolved())
    r, f = rng.standard_normal((3, 2, 2)), rng.standard_normal((5, 2, 2))
    r_dot, f_dot = rng.standard_normal(r.shape), rng.standard_normal(f.shape)
    h = 1e-3

    def grads(t):
        return feature_matching_loss(r + t * r_dot, f + t * f_dot)[1]
    (r_plus, f_plus), (r_minus, f_minus) = grads(h), grads(-h)
    np.testing.assert_allclose(loss.generator_tangent(f, f_dot, r, r_dot), (f_plus - f_minus) / (2 * h), rtol=1e-9)
    d_r, t_r = loss.generator_real_part(f, f_dot, r, r_dot)
    np.testing.assert_allclose(t_r, (r_plus - r_minus) / (2 * h), rtol=1e-9)
    np.testing.assert_array_equal(d_r, feature_matching_loss(r, f)[1][0])


def test_generator_gradient_runs_through_the_critics_first_layers_only():
    """The G step with the hook (module docstring): f(x̃) = critic[:-1](G(z)), L_G's gradient from
    the feature layer back through those layers and G, checked against finite differences of
    L_G(θ_G); the critic's last layer takes no part (perturbing it leaves L_G unchanged)."""
    rng = np.random.default_rng(5)
    G = models.mlp(2, 3, hidden=4, depth=1, dtype=np.float64, rng=rng)
    D = models.mlp(3, 1, hidden=5, depth=2, activation="tanh", dtype=np.float64, rng=rng)
    loss = FeatureMatching(TrainConfig(loss="feature-matching").resolved())
    z, x = rng.standard_normal((6, 2)), rng.standard_normal((4, 3))

    def objective():
        return loss.generator(loss.features(D, G(z)), loss.features(D, x).copy())[0]

    real_features = loss.features(D, x).copy()
    assert real_features.shape == (4, 5)
    value, d_features = loss.generator(loss.features(D, G(z)), real_features)
    G.zero_grad()
    D.zero_grad()
    G.backward(loss.backward_features(D, d_features))
    assert all(not p.grad.any() for p in D.parameters())  # the critic's parameters are constants for G
    for p in G.parameters():
        np.testing.assert_allclose(p.grad, numerical_gradient(objective, p.data), rtol=1e-7, atol=1e-10)
    last = list(D)[-1]
    before = objective()
    last.weight.data += 1.0
    assert objective() == before and value == pytest.approx(before, rel=1e-15)


def test_feature_matching_trains_from_the_cli_and_refuses_a_conditional_critic(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--loss", "feature-matching", "--data", "8gaussians", "--steps", "3", "--batch-size", "8",
                 "--hidden", "8", "--depth", "2", "--eval-samples", "200", "--no-progress", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows] == [1, 2, 3]
    assert all(np.isfinite(float(row["loss_g"])) and float(row["loss_g"]) >= 0 for row in rows)
    with pytest.raises(ConfigError, match="one chain of layers"):
        TrainConfig(loss="feature-matching", model="cmlp").resolved()
    assert main(["train", "--loss", "feature-matching", "--model", "cogan", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_the_trainer_matches_the_intermediate_features(tmp_path, monkeypatch):
    from minigan.train import Trainer

    calls = []
    original = FeatureMatching.features
    monkeypatch.setattr(FeatureMatching, "features", lambda self, critic, x: calls.append(x.shape) or
                        original(self, critic, x))
    config = TrainConfig(loss="feature-matching", data="8gaussians", steps=1, batch_size=8, hidden=8, depth=2,
                         eval_samples=200, out=str(tmp_path / "run"))
    Trainer(config).train()
    assert calls  # the G step took its features through FeatureMatching.features
