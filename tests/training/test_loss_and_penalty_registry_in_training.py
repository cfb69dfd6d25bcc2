"""The registry's losses and penalties in training: the coupled D step against finite
differences, a few steps of every new --loss / --penalty on every model that takes it,
exact resume, and the refusals (one-line messages, exit 2 from the CLI)."""
import numpy as np
import pytest

import minigan.nn as nn
from minigan.cli import main
from minigan.config import ConfigError, TrainConfig
from minigan.gradcheck import check_gradients
from minigan.losses import LOSSES
from minigan.penalty import PENALTIES
from minigan.train import Trainer
from minigan.training.players import backward_coupled_discriminator_loss
from test_train import assert_resume_is_exact, params_of, tiny_config

NEW_LOSSES = ("hinge", "rsgan", "ragan", "ralsgan", "rahinge")
NEW_PENALTIES = ("dragan", "r1", "r2", "wgan-div")


def batchnorm_critic(rng):
    """Float64, BatchNorm with γ, β and running statistics away from their defaults."""
    D = nn.Sequential(nn.Linear(3, 5, dtype=np.float64, rng=rng), nn.BatchNorm1d(5, dtype=np.float64),
                      nn.Tanh(), nn.Linear(5, 1, dtype=np.float64, rng=rng))
    D[1].weight.data[...] = rng.uniform(0.5, 1.5, 5)
    D[1].bias.data[...] = rng.normal(size=5)
    D[1].running_mean[...] = rng.normal(size=5)
    D[1].running_var[...] = rng.uniform(0.5, 2, 5)
    return D


@pytest.mark.parametrize("name", ["rsgan", "ragan", "ralsgan"])
def test_coupled_discriminator_step_is_the_gradient_of_the_loss(name):
    """Both outputs first, then each batch's backward from its own forward: ∂L_D/∂θ by finite
    differences, through a BatchNorm critic (batch statistics differ between the batches)."""
    rng = np.random.default_rng(0)
    D = batchnorm_critic(rng)
    real, fake = rng.normal(size=(4, 3)) + 1, rng.normal(size=(4, 3))
    loss = LOSSES.get(name)(TrainConfig())
    D.zero_grad()
    value, _, _ = backward_coupled_discriminator_loss(D, loss.discriminator, real, fake)
    grads = {k: p.grad.copy() for k, p in D.named_parameters()}
    after = {k: v.copy() for k, v in D.named_buffers()}

    def objective():
        return loss.discriminator(D(real), D(fake))[0]

    assert objective() == pytest.approx(value, rel=1e-12)
    report = check_gradients(objective, {k: p.data for k, p in D.named_parameters()}, grads)
    assert report.worst < 1e-7, str(report)
    # the buffers end as after one D(x) and one D(x̃): the rerun of D(x) left no trace
    reference = batchnorm_critic(np.random.default_rng(0))
    reference(real), reference(fake)
    for k, v in reference.named_buffers():
        np.testing.assert_array_equal(after[k], v, err_msg=k)


def test_coupled_step_needs_the_rerun():
    """The check can fail: backpropagating the real gradient through the fake batch's cached
    forward (what the separable path would do) is not the loss's gradient."""
    rng = np.random.default_rng(1)
    D = batchnorm_critic(rng)
    real, fake = rng.normal(size=(4, 3)) + 1, rng.normal(size=(4, 3))
    loss = LOSSES.get("ragan")(TrainConfig())
    D.zero_grad()
    out_r = D(real).copy()
    out_f = D(fake)
    _, (d_r, d_f) = loss.discriminator(out_r, out_f)
    D.backward(d_f)
    D.backward(d_r)  # wrong cache
    grads = {k: p.grad.copy() for k, p in D.named_parameters()}
    report = check_gradients(lambda: loss.discriminator(D(real), D(fake))[0],
                             {k: p.data for k, p in D.named_parameters()}, grads)
    assert report.worst > 1e-3


SMOKE = [(loss, model, data) for loss in NEW_LOSSES
         for model, data in (("mlp", "8gaussians"), ("cmlp", "digits"), ("dcgan", "digits"))]


@pytest.mark.parametrize("loss, model, data", SMOKE)
def test_new_losses_train(tmp_path, loss, model, data):
    trainer = Trainer(tiny_config(tmp_path, loss, model, data, image_size=28 if model == "dcgan" else None))
    before = {k: v.copy() for k, v in params_of(trainer).items()}
    for _ in range(2):
        metrics = trainer.train_step()
        assert np.isfinite(metrics["loss_d"]) and np.isfinite(metrics["loss_g"])
    after = params_of(trainer)
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("G."))
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("D."))


@pytest.mark.parametrize("penalty", NEW_PENALTIES + ("wgan-gp",))
@pytest.mark.parametrize("loss, model, data", [("wgan-gp", "mlp", "8gaussians"), ("hinge", "cmlp", "digits"),
                                               ("ragan", "dcgan", "digits")])
def test_every_penalty_trains_and_is_logged(tmp_path, penalty, loss, model, data):
    config = tiny_config(tmp_path, loss, model, data, penalty=penalty, n_critic=1,
                         image_size=28 if model == "dcgan" else None)
    trainer = Trainer(config)
    assert trainer.config.critic_norm in (None, "layer")  # a penalty's default critic has no BatchNorm
    metrics = trainer.train_step()
    assert metrics["gp"] > 0 and np.isfinite(metrics["loss_d"])


def test_cogan_trains_with_hinge(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "hinge", "cogan", "digits"))
    assert np.isfinite(trainer.train_step()["loss_g"])


def test_penalty_weight_defaults():
    def resolved(**kw):
        return TrainConfig(**kw).resolved()
    assert resolved(loss="wgan-gp").penalty == "wgan-gp" and resolved(loss="wgan-gp").penalty_weight == 10.0
    assert resolved(loss="wgan-gp", preset="toy").penalty_weight == 0.1
    assert resolved(loss="hinge").penalty == "none"
    assert resolved(loss="hinge", penalty="r1").penalty_weight == 10.0
    assert resolved(loss="wgan-gp", penalty="wgan-div").penalty_weight == 2.0
    assert resolved(loss="wgan-gp", penalty="dragan", gp_weight=3.0).penalty_weight == 3.0
    assert resolved(loss="hinge", penalty="r2", penalty_weight=0.5).penalty_weight == 0.5
    assert resolved(loss="hinge", penalty="r1", model="dcgan").critic_norm == "layer"
    assert resolved(loss="hinge", model="dcgan").critic_norm == "batch"


def test_presets_fill_only_the_settings_left_at_their_defaults():
    def resolved(**kw):
        return TrainConfig(**kw).resolved()

    def optimiser(c):
        return c.lr_d, c.lr_g, c.beta1, c.beta2, c.batch_size, c.n_critic

    # the demo's loss, model and data (given or not) take the demo preset; anything else none
    demo = resolved()
    assert demo.preset == "demo" and optimiser(demo) == (4e-4, 4e-4, 0.5, 0.9, 128, 3)
    assert resolved(loss="wgan-gp", model="mlp", data="digits").preset == "demo"
    for other in (dict(loss="lsgan"), dict(model="dcgan"), dict(data="8gaussians")):
        assert resolved(**other).preset == "none", other
    # --preset none: the WGAN-GP paper's Algorithm 1 settings
    assert optimiser(resolved(preset="none")) == (1e-4, 1e-4, 0.0, 0.9, 64, 5)
    # an explicit value wins over the preset's, the rest is filled
    mine = resolved(lr_g=1e-3, batch_size=32, beta2=0.99)
    assert optimiser(mine) == (4e-4, 1e-3, 0.5, 0.99, 32, 3)
    toy = resolved(data="8gaussians", preset="toy", hidden=32)
    assert (toy.hidden, toy.depth, toy.batch_size, toy.gp_weight, toy.lr_d, toy.beta1) == (32, 3, 256, 0.1, 1e-4, 0.5)
    # a resolved config resolves to itself (config.json and resume see the same run)
    assert TrainConfig(**demo.to_dict()).resolved() == demo
    with pytest.raises(ConfigError, match="unknown preset 'fast'.*toy, demo, none"):
        resolved(preset="fast")


@pytest.mark.parametrize("loss, model, data, extra", [
    ("ragan", "dcgan", "digits", dict(penalty="dragan", critic_norm="none")),  # draws δ, α each step
    ("rsgan", "dcgan", "digits", {}),  # BatchNorm critic: the coupled step's buffer save/restore
    ("hinge", "mlp", "8gaussians", dict(penalty="wgan-div")),
])
def test_resume_is_exact_with_new_losses_and_penalties(tmp_path, loss, model, data, extra):
    extra = dict(extra, steps=4, checkpoint_every=100, image_size=28 if model == "dcgan" else None)
    assert_resume_is_exact(Trainer(tiny_config(tmp_path / "full", loss, model, data, **extra)),
                           Trainer(tiny_config(tmp_path / "half", loss, model, data, **extra)))


@pytest.mark.parametrize("overrides, message", [
    (dict(loss="wgan", penalty="r1"), "clips the critic's weights"),
    (dict(loss="wgan-gp", penalty="none"), "needs a gradient penalty"),
    (dict(loss="rsgan", model="cogan"), "cogan model does not support the rsgan loss"),
    (dict(loss="hinge", model="cogan", penalty="r1"), "cogan model does not support the r1 penalty"),
    (dict(loss="began", penalty="dragan"), "began loss takes no gradient penalty"),
    (dict(loss="hinge", model="dcgan", penalty="r2", critic_norm="batch"), "r2 penalty: the gradient penalty is "
                                                                            "per-sample"),
    (dict(loss="hinge", penalty="r1", penalty_weight=-1.0), "penalty_weight must be >= 0"),
    (dict(loss="hinge", penalty="wgan-div", wgan_div_power=0.5), r"wgan_div_power \(p\) must be"),
    (dict(penalty="gp"), "unknown penalty 'gp'; valid: none, wgan-gp, dragan, r1, r2, wgan-div"),
])
def test_refusals(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(TrainConfig(out=str(tmp_path / "never"), **overrides))
    assert not (tmp_path / "never").exists()


def test_cli_help_names_the_zoo_and_refuses_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping: argparse may break a name at its hyphen
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in LOSSES.names() + PENALTIES.names():
        assert name in text, name
    for flag in ("--penalty", "--penalty-weight", "--wgan-div-power"):
        assert flag in text
    assert main(["train", "--loss", "wgan", "--penalty", "dragan", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "use --loss wgan-gp --penalty dragan" in err


def test_cli_trains_hinge_with_r1(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--loss", "hinge", "--penalty", "r1", "--penalty-weight", "1", "--out", str(out),
                 "--data", "8gaussians", "--steps", "2", "--batch-size", "8", "--hidden", "8", "--depth", "1",
                 "--eval-samples", "200", "--no-progress"]) == 0
    assert '"penalty": "r1"' in (out / "config.json").read_text()


@pytest.mark.parametrize("loss", ["rsgan", "ragan"])
def test_relativistic_generator_step_uses_real_and_fake_in_the_right_roles(tmp_path, loss, monkeypatch):
    """L_G = relativistic_loss(D(x̃), D(x)) (the roles swapped), on the batches the step drew."""
    from minigan.losses import relativistic_loss

    trainer = Trainer(tiny_config(tmp_path, loss, "mlp", "8gaussians"))
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 2)).astype(np.float32)
    z = rng.normal(size=(8, 2)).astype(np.float32)
    monkeypatch.setattr(trainer.draws, "real_batch", lambda: (x, None))
    monkeypatch.setattr(trainer.draws, "noise", lambda n: z)
    expected = relativistic_loss(trainer.D(trainer.G(z)).copy(), trainer.D(x).copy(),
                                 average=loss == "ragan")[0]
    swapped = relativistic_loss(trainer.D(x).copy(), trainer.D(trainer.G(z)).copy(), average=loss == "ragan")[0]
    assert abs(expected - swapped) > 1e-3
    assert trainer.scheme.generator_step()["loss_g"] == pytest.approx(expected, rel=1e-6)
