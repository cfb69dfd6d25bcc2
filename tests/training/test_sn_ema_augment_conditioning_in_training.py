"""--spectral-norm, --ema, --augment and --conditioning in training: wiring, exact resume,
the coupled D step through a spectrally normalised critic, and the refusals."""
import copy

import numpy as np
import pytest

import minigan.nn as nn
from minigan.config import ConfigError, TrainConfig
from minigan.losses import LOSSES
from minigan.train import Trainer
from minigan.training.build import add_spectral_norm
from minigan.training.players import backward_coupled_discriminator_loss
from test_train import assert_resume_is_exact, tiny_config


def image_config(tmp_path, loss, model="dcgan", **extra):
    return tiny_config(tmp_path, loss, model, "digits", image_size=28, **extra)


def test_spectral_norm_wraps_every_critic_weight(tmp_path):
    trainer = Trainer(image_config(tmp_path, "hinge", spectral_norm=True))
    assert trainer.config.critic_norm == "none"  # SNGAN's critic: no BatchNorm
    bare = [m for m in trainer.D.modules() if type(m) in (nn.Linear, nn.Conv2d)]
    wrapped = [m for m in trainer.D.modules() if isinstance(m, nn.SpectralNorm)]
    assert not bare and len(wrapped) >= 3
    keys = list(trainer.D.state_dict())
    assert keys[:4] == ["0.bias", "0.weight_orig", "0.weight_u", "0.weight_v"]
    u_before = [m.weight_u.copy() for m in wrapped]
    trainer.train_step()
    moved = [not np.array_equal(a, m.weight_u) for a, m in zip(u_before, wrapped) if m.weight_u.size > 1]
    assert moved and all(moved)  # the power iteration ran (a 1-vector u is ±1 and stays)


def test_add_spectral_norm_keeps_the_layer_order():
    rng = np.random.default_rng(0)
    D = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.ReLU(), nn.Linear(4, 1, rng=rng))
    x = rng.normal(size=(5, 3)).astype(np.float32)
    add_spectral_norm(D, rng)
    assert [type(m).__name__ for m in D] == ["SpectralNorm", "ReLU", "SpectralNorm"]
    assert D(x).shape == (5, 1)


def sn_critic(rng):
    D = nn.Sequential(nn.Linear(3, 5, dtype=np.float64, rng=rng), nn.Tanh(), nn.Linear(5, 1, dtype=np.float64, rng=rng))
    return add_spectral_norm(D, rng)


@pytest.mark.parametrize("name", ["rsgan", "ragan"])
def test_coupled_step_through_spectral_norm_repeats_the_first_forward(name):
    """The rerun of D(x) must see the power-iteration vectors D(x) saw, and leave them as
    after D(x), D(x̃): the same gradients as two copies of D run in that order."""
    rng = np.random.default_rng(3)
    D = sn_critic(rng)
    real, fake = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    loss = LOSSES.get(name)(TrainConfig())
    first = copy.deepcopy(D)
    out_r = first(real).copy()
    second = copy.deepcopy(first)
    out_f = second(fake)
    _, (d_r, d_f) = loss.discriminator(out_r, out_f)
    first.zero_grad(), second.zero_grad(), D.zero_grad()
    first.backward(d_r)
    second.backward(d_f)
    backward_coupled_discriminator_loss(D, loss.discriminator, real, fake)
    expected = {k: p.grad + q.grad for (k, p), q in zip(first.named_parameters(), second.parameters())}
    for k, p in D.named_parameters():
        np.testing.assert_allclose(p.grad, expected[k], rtol=1e-12, atol=1e-15, err_msg=k)
    for (k, b), (_, e) in zip(D.named_buffers(), second.named_buffers()):
        np.testing.assert_array_equal(b, e, err_msg=k)


def test_ema_generator_makes_the_samples_and_resumes_exactly(tmp_path):
    extra = dict(ema=0.5, steps=3, checkpoint_every=100)
    full = Trainer(image_config(tmp_path / "full", "nonsaturating", **extra))
    for _ in range(3):
        full.train_step()
    assert full.ema.num_updates == 3
    live = dict(full.G.named_parameters())
    assert any(not np.array_equal(p.data, live[k].data) for k, p in full.ema.module.named_parameters())
    full.ema.module.eval()
    np.testing.assert_array_equal(full.samples(), full.ema.module(full.fixed_z))
    half = Trainer(image_config(tmp_path / "half", "nonsaturating", **extra))
    half.train_step()
    half.save_checkpoint()
    resumed = Trainer.resume(half.out, steps=3)
    resumed.train_step(), resumed.train_step()
    a, b = full.ema.state_dict(), resumed.ema.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("loss, extra", [("ragan", dict(augment="color,translation,cutout", penalty="r1")),
                                         ("hinge", dict(augment="translation,cutout", spectral_norm=True))])
def test_augment_trains_and_resumes_exactly(tmp_path, loss, extra):
    extra = dict(extra, steps=4, checkpoint_every=100)
    full = Trainer(image_config(tmp_path / "full", loss, **extra))
    seen = []
    original = type(full.D).forward
    full.D.forward = lambda x: (seen.append(x.copy()), original(full.D, x))[1]
    assert_resume_is_exact(full, Trainer(image_config(tmp_path / "half", loss, **extra)))
    assert any((s == 0).mean() > 0.2 for s in seen) or "cutout" not in extra["augment"]  # cutout squares


def test_augment_reaches_the_generator_gradient(tmp_path):
    """The G step backpropagates through T(·; ξ): with cutout masking everything, G gets no gradient."""
    trainer = Trainer(image_config(tmp_path, "nonsaturating", augment="cutout"))
    trainer.augment.ops[0].ratio = 10.0  # a cutout square covering the whole image
    trainer.scheme.generator_step()
    assert all(not p.grad.any() for name, p in trainer.G.named_parameters() if "weight" in name)


@pytest.mark.parametrize("model, loss, extra", [("cdcgan", "hinge", dict(spectral_norm=True)),
                                                ("cmlp", "wgan-gp", {}), ("cdcgan", "ragan", dict(penalty="r1"))])
def test_projection_conditioning_trains(tmp_path, model, loss, extra):
    trainer = Trainer(tiny_config(tmp_path, loss, model, "digits", conditioning="projection",
                                  image_size=28 if model == "cdcgan" else None, **extra))
    assert isinstance(trainer.D, nn.ProjectionCritic)
    for _ in range(2):
        metrics = trainer.train_step()
    assert np.isfinite(metrics["loss_d"]) and np.isfinite(metrics["loss_g"])
    assert trainer.samples().shape[0] == 64


@pytest.mark.parametrize("overrides, message", [
    (dict(loss="began", spectral_norm=True), "spectral-norm .* auto-encoder"),
    (dict(loss="hinge", model="cogan", spectral_norm=True), "spectral-norm .* cogan"),
    (dict(loss="hinge", augment="color"), "--augment needs images"),
    (dict(loss="hinge", model="dcgan", augment="colour"), "augment: .*unknown augmentation 'colour'"),
    (dict(loss="began", model="dcgan", augment="color"), "began loss does not support --augment"),
    (dict(loss="hinge", ema=1.0), r"ema \(the decay\) must lie in \[0, 1\)"),
    (dict(loss="hinge", conditioning="projection"), "conditioning projection needs a conditional model"),
    (dict(loss="hinge", model="cdcgan", conditioning="projection", critic_norm="batch"), "projection critic"),
])
def test_extras_refusals(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(TrainConfig(out=str(tmp_path / "never"), **overrides))
