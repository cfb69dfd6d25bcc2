"""Lazy regularisation (StyleGAN2, Karras et al. 2020 appendix B) through its registration:
``--lazy-reg K`` trains with the penalty as its own critic update after every critic step ≡ 0
mod K, weight K·λ, and D's Adam at lr·c, β^c with c = K/(K + 1)."""
import copy

import numpy as np
import pytest

from minigan import cli
from minigan.config import ConfigError, TrainConfig
from minigan.penalty import r1_penalty
from minigan.train import Trainer
from minigan.training.schemes import SCHEMES, scheme_name
from minigan.training.schemes.lazy import LazyRegularisation

TINY = dict(data="8gaussians", batch_size=8, hidden=8, depth=1, sample_every=100, checkpoint_every=100,
            eval_samples=20)


def config(tmp_path, name="run", **extra):
    return TrainConfig(**{**TINY, "loss": "hinge", "penalty": "r1", "out": str(tmp_path / name), **extra})


def test_the_flag_selects_the_registered_scheme(tmp_path):
    assert scheme_name(config(tmp_path)) == "alternating"
    assert scheme_name(config(tmp_path, lazy_reg=4)) == "lazy"
    assert SCHEMES.get("lazy") is LazyRegularisation
    assert type(Trainer(config(tmp_path, lazy_reg=4)).scheme) is LazyRegularisation


def test_penalty_steps_fall_on_critic_steps_divisible_by_k_with_weight_k_lambda(tmp_path, monkeypatch):
    """n_critic = 2, K = 3: the penalty follows critic steps 3 and 6 (steps 2 and 3), each time as
    its own D update whose gradient is r1's at weight K·λ on that step's real batch."""
    k, lam = 3, 0.7
    trainer = Trainer(config(tmp_path, n_critic=2, lazy_reg=k, penalty_weight=lam, steps=3))
    assert trainer.penalty.weight == pytest.approx(k * lam)
    events, expected = [], []
    apply, step = trainer.penalty.apply, trainer.opt_d.step

    def recording_apply(critic, real, fake, draw, labels=None):
        events.append(("gp", trainer.step))
        twin = copy.deepcopy(critic)
        twin.zero_grad()
        r1_penalty(twin, real.copy(), k * lam)
        expected.append([p.grad.copy() for p in twin.parameters()])
        return apply(critic, real, fake, draw, labels)

    def recording_step():
        events.append(("step", trainer.step, [p.grad.copy() for p in trainer.D.parameters()]))
        return step()

    monkeypatch.setattr(trainer.penalty, "apply", recording_apply)
    monkeypatch.setattr(trainer.opt_d, "step", recording_step)
    logged = [trainer.train_step() for _ in range(3)]
    assert [e[:2] for e in events] == [("step", 1), ("step", 1),
                                       ("step", 2), ("gp", 2), ("step", 2), ("step", 2),
                                       ("step", 3), ("step", 3), ("gp", 3), ("step", 3)]
    reg_steps = [events[i + 1][2] for i, e in enumerate(events) if e[0] == "gp"]
    for got, want in zip(reg_steps, expected, strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9)
        assert any(np.abs(w).max() > 1e-4 for w in want)  # a penalty that moves D
    # gp is logged when the iteration's last critic step was a penalty step; loss_d is the loss alone
    assert "gp" not in logged[0] and "gp" not in logged[1] and logged[2]["gp"] > 0


@pytest.mark.parametrize("k", [1, 4])
def test_adam_settings_follow_the_formula(tmp_path, k):
    c = k / (k + 1)
    trainer = Trainer(config(tmp_path, lazy_reg=k, lr_d=3e-4, lr_g=5e-4, beta1=0.3, beta2=0.95))
    (d,), (g,) = trainer.opt_d.param_groups, trainer.opt_g.param_groups
    assert d["lr"] == pytest.approx(c * 3e-4, rel=1e-12)
    assert d["betas"] == pytest.approx((0.3 ** c, 0.95 ** c), rel=1e-12)
    assert (g["lr"], tuple(g["betas"])) == (5e-4, (0.3, 0.95))  # G's optimizer is not regularised


def test_a_resumed_learning_rate_is_adjusted_too(tmp_path):
    trainer = Trainer(config(tmp_path, lazy_reg=4, steps=1))
    trainer.train_step()
    trainer.save_checkpoint()
    resumed = Trainer.resume(tmp_path / "run", steps=3, overrides={"lr_d": 1e-3})
    assert resumed.opt_d.param_groups[0]["lr"] == pytest.approx(0.8e-3, rel=1e-12)
    assert resumed.penalty.weight == pytest.approx(4 * resumed.config.penalty_weight)


def test_resume_across_a_k_boundary_is_bit_exact(tmp_path):
    """K = 3, n_critic = 2, wgan-gp (the penalty draws from the run's stream): stop after critic
    step 4, resume through the penalty step after critic step 6."""
    extra = dict(loss="wgan-gp", penalty="wgan-gp", n_critic=2, lazy_reg=3, steps=4)
    whole = Trainer(config(tmp_path, "whole", **extra))
    for _ in range(4):
        whole.train_step()
    half = Trainer(config(tmp_path, "half", **extra))
    for _ in range(2):
        half.train_step()
    half.save_checkpoint()
    resumed = Trainer.resume(tmp_path / "half")
    for _ in range(2):
        resumed.train_step()
    for model in ("G", "D"):
        a, b = getattr(whole, model).state_dict(), getattr(resumed, model).state_dict()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{model}.{key}")
    assert whole.rng.bit_generator.state == resumed.rng.bit_generator.state
    for opt in ("opt_d", "opt_g"):
        a, b = getattr(whole, opt).state_dict(), getattr(resumed, opt).state_dict()
        assert a["param_groups"] == b["param_groups"] and sorted(a["state"]) == sorted(b["state"])
        for i in a["state"]:
            for key in a["state"][i]:
                np.testing.assert_array_equal(a["state"][i][key], b["state"][i][key], err_msg=f"{opt} {i} {key}")


@pytest.mark.parametrize("extra, message", [
    (dict(lazy_reg=0), r"^lazy_reg \(K, the critic steps between penalty steps\) must be >= 1, got 0$"),
    (dict(lazy_reg=2, penalty="none"), r"^--lazy-reg needs a penalty"),
    (dict(lazy_reg=2, optimizer="rmsprop"), r"needs --optimizer adam, got rmsprop$"),
    (dict(lazy_reg=2, model="cogan", data="digits", loss="nonsaturating"), r"the cogan training scheme"),
])
def test_settings_it_cannot_train_are_refused(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **extra).resolved()


def test_the_cli_refuses_a_bad_k_in_one_line(tmp_path, capsys):
    code = cli.main(["train", "--data", "8gaussians", "--loss", "hinge", "--penalty", "r1", "--lazy-reg", "0",
                     "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "lazy_reg" in err
