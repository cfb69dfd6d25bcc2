"""The training schemes through their registry: what the alternating scheme's G step computes
for a loss on the critic's features (feature matching)."""
import numpy as np
import pytest

from minigan.config import TrainConfig
from minigan.train import Trainer
from minigan.training.schemes import SCHEMES, scheme_name


def test_feature_matching_g_step_matches_the_mean_features_before_the_last_layer(tmp_path, monkeypatch):
    """L_G = ‖mean f(x) − mean f(G(z))‖², f = D[:-1], on the batches the step drew; D's gradients untouched."""
    config = TrainConfig(loss="feature-matching", data="8gaussians", batch_size=8, hidden=8, depth=2,
                         out=str(tmp_path / "run"))
    assert scheme_name(config) == "alternating" and SCHEMES.get("alternating") is type(Trainer(config).scheme)
    trainer = Trainer(config)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 2)).astype(np.float32)
    z = rng.normal(size=(8, 2)).astype(np.float32)
    monkeypatch.setattr(trainer.draws, "real_batch", lambda: (x, None))
    monkeypatch.setattr(trainer.draws, "noise", lambda n: z)

    def f(a):
        for layer in list(trainer.D)[:-1]:
            a = layer(a)
        return np.asarray(a, dtype=np.float64)

    fr, ff = f(x), f(trainer.G(z))
    assert fr.shape == (8, 8)  # the hidden features, not D's (N, 1) output
    expected = float(((fr.mean(0) - ff.mean(0)) ** 2).sum())
    trainer.D.zero_grad()
    got = trainer.scheme.generator_step()["loss_g"]
    assert got == pytest.approx(expected, rel=1e-5) and expected > 1e-4
    assert all(not p.grad.any() for p in trainer.D.parameters())
    assert any(p.grad.any() for p in trainer.G.parameters())
