"""The game's update rules as training schemes (``--update NAME``, minigan.training.schemes.updates):
one step against the rule's formula on the step's own batch, bit-exact resume, the CLI, refusals."""
import copy

import numpy as np
import pytest

from minigan import cli
from minigan.checkpoint import load_checkpoint
from minigan.config import ConfigError, TrainConfig
from minigan.train import Trainer
from minigan.training.players import backward_discriminator_loss
from minigan.training.schemes import scheme_name, update_names

TINY = dict(data="8gaussians", loss="hinge", batch_size=8, hidden=8, depth=1, sample_every=100,
            checkpoint_every=100, eval_samples=20, seed=3)
LR_D, LR_G = 0.07, 0.03  # SGD: a step is w − lr·g, so the formula is checked exactly


def config(tmp_path, name="run", **extra):
    return TrainConfig(**{**TINY, "out": str(tmp_path / name), **extra})


def sgd_trainer(tmp_path, update, **extra):
    return Trainer(config(tmp_path, update=update, optimizer="sgd", lr_d=LR_D, lr_g=LR_G, **extra))


def recording(trainer, monkeypatch):
    """Record every real batch and z the step draws, in order."""
    batches = []
    real_batch, noise = trainer.draws.real_batch, trainer.draws.noise

    def rec_real():
        x, y = real_batch()
        batches.append(("x", x.copy()))
        return x, y

    def rec_noise(n):
        z = noise(n)
        batches.append(("z", z.copy()))
        return z

    monkeypatch.setattr(trainer.draws, "real_batch", rec_real)
    monkeypatch.setattr(trainer.draws, "noise", rec_noise)
    return batches


def field(trainer, G, D, x, z):
    """ξ = (∇_θD L_D, ∇_θG L_G) of twins of (G, D) at their weights, on (x, z) — by the players'
    forward/backward, independently of the scheme's order of steps."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    fake = G(z)
    D.zero_grad()
    backward_discriminator_loss(D, trainer.loss.discriminator, x, fake.copy(), None)
    g_d = [p.grad.copy() for p in D.parameters()]
    G(z)
    _, d_out = trainer.loss.generator(D(fake))
    G.zero_grad()
    G.backward(D.backward(d_out, accumulate=False))
    return g_d, [p.grad.copy() for p in G.parameters()]


def weights(module):
    return [p.data.copy() for p in module.parameters()]


def assert_weights(module, expected):
    for got, want in zip(weights(module), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def sgd(w, g, lr):
    return [a - np.float32(lr) * b for a, b in zip(w, g)]


def test_the_flag_selects_the_scheme_and_lists_the_rules(tmp_path):
    assert update_names() == ("alternating", "simultaneous", "extragradient", "optimistic", "consensus", "sga",
                              "cgd", "lookahead")
    assert scheme_name(config(tmp_path)) == "alternating"
    for name in update_names()[1:]:
        assert scheme_name(config(tmp_path, update=name)) == name
        assert Trainer(config(tmp_path, update=name)).scheme.name == name


def test_simultaneous_takes_both_gradients_at_the_old_point(tmp_path, monkeypatch):
    t = sgd_trainer(tmp_path, "simultaneous")
    t.train_step()  # away from the initial point
    G0, D0 = copy.deepcopy(t.G), copy.deepcopy(t.D)
    batches = recording(t, monkeypatch)
    metrics = t.train_step()
    assert [k for k, _ in batches] == ["x", "z"]  # one batch for both players
    g_d, g_g = field(t, G0, D0, batches[0][1], batches[1][1])
    assert_weights(t.D, sgd(weights(D0), g_d, LR_D))
    assert_weights(t.G, sgd(weights(G0), g_g, LR_G))
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(metrics)


def test_extragradient_steps_w_with_the_field_at_the_extrapolated_point(tmp_path, monkeypatch):
    t = sgd_trainer(tmp_path, "extragradient")
    G0, D0 = copy.deepcopy(t.G), copy.deepcopy(t.D)
    batches = recording(t, monkeypatch)
    t.train_step()
    assert [k for k, _ in batches] == ["x", "z", "x", "z"]  # a fresh batch at w½ (Gidel et al.)
    assert not np.array_equal(batches[0][1], batches[2][1])
    g_d, g_g = field(t, G0, D0, batches[0][1], batches[1][1])
    G_half, D_half = copy.deepcopy(G0), copy.deepcopy(D0)
    for module, w in ((D_half, sgd(weights(D0), g_d, LR_D)), (G_half, sgd(weights(G0), g_g, LR_G))):
        for p, v in zip(module.parameters(), w):
            p.data[...] = v
    h_d, h_g = field(t, G_half, D_half, batches[2][1], batches[3][1])
    assert_weights(t.D, sgd(weights(D0), h_d, LR_D))
    assert_weights(t.G, sgd(weights(G0), h_g, LR_G))


def test_extra_adam_updates_the_moments_at_both_steps(tmp_path):
    t = Trainer(config(tmp_path, update="extragradient"))
    t.train_step()
    assert {s["step"] for s in t.opt_d.state.values()} == {2}
    assert {s["step"] for s in t.opt_g.state.values()} == {2}


def test_optimistic_steps_with_twice_the_field_minus_the_last(tmp_path, monkeypatch):
    t = sgd_trainer(tmp_path, "optimistic")
    G0, D0 = copy.deepcopy(t.G), copy.deepcopy(t.D)
    batches = recording(t, monkeypatch)
    t.train_step()  # the first step: a plain one
    g_d, g_g = field(t, G0, D0, batches[0][1], batches[1][1])
    assert_weights(t.D, sgd(weights(D0), g_d, LR_D))
    assert_weights(t.G, sgd(weights(G0), g_g, LR_G))
    for step in (1, 2):  # ξ_{t−1} is the last field itself, not the last step's 2ξ − ξ'
        G1, D1 = copy.deepcopy(t.G), copy.deepcopy(t.D)
        t.train_step()
        h_d, h_g = field(t, G1, D1, batches[2 * step][1], batches[2 * step + 1][1])
        assert_weights(t.D, sgd(weights(D1), [2 * h - g for h, g in zip(h_d, g_d)], LR_D))
        assert_weights(t.G, sgd(weights(G1), [2 * h - g for h, g in zip(h_g, g_g)], LR_G))
        g_d, g_g = h_d, h_g


@pytest.mark.parametrize("update", ["simultaneous", "extragradient", "optimistic", "lookahead", "consensus",
                                    "sga", "cgd"])
def test_resume_is_bit_exact(tmp_path, update):
    """Adam (its moments), 6 steps straight = 3, checkpoint, resume, 3 more (lookahead: k = 2, the
    slow weights of step 2's synchronisation carried to those of steps 4 and 6)."""
    extra = dict(update=update, penalty="r1", penalty_weight=0.3, lookahead_k=2, lookahead_alpha=0.4)
    if update in ("consensus", "sga", "cgd"):
        extra.update(penalty="none", consensus_gamma=0.5, sga_lambda=0.7, cgd_maxiter=3, cgd_tol=1e-3)
    whole = Trainer(config(tmp_path, "whole", steps=6, **extra))
    for _ in range(6):
        whole.train_step()
    half = Trainer(config(tmp_path, "half", steps=3, **extra))
    half.train()
    resumed = Trainer.resume(tmp_path / "half", steps=6)
    for _ in range(3):
        resumed.train_step()
    for model in ("G", "D"):
        a, b = getattr(whole, model).state_dict(), getattr(resumed, model).state_dict()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert whole.rng.bit_generator.state == resumed.rng.bit_generator.state
    for opt in ("opt_g", "opt_d"):
        a, b = getattr(whole, opt).state_dict(), getattr(resumed, opt).state_dict()
        assert [s["step"] for s in a["state"].values()] == [s["step"] for s in b["state"].values()]
        for sa, sb in zip(a["state"].values(), b["state"].values()):
            for k in sa:
                np.testing.assert_array_equal(sa[k], sb[k])
    if update == "optimistic":
        saved = load_checkpoint(tmp_path / "half" / "checkpoint.ckpt")["optimistic"]
        assert len(saved["G"]) == len(list(whole.G.parameters())) and len(saved["D"]) > 0
        for which in ("G", "D"):
            for a, b in zip(whole.scheme.previous[which], resumed.scheme.previous[which], strict=True):
                np.testing.assert_array_equal(a, b)
    if update == "lookahead":
        assert len(load_checkpoint(tmp_path / "half" / "checkpoint.ckpt")["lookahead"]["slow"]) > 0
        for a, b in zip(whole.scheme.slow, resumed.scheme.slow, strict=True):
            np.testing.assert_array_equal(a, b)


def test_lookahead_moves_the_slow_weights_every_k_steps(tmp_path):
    """k = 2, α = 0.3 over Algorithm 1 with n_critic 2: the fast steps are Algorithm 1's (a run without
    lookahead on the same seed draws the same batches); after steps 2 and 4, ω ← ω + α(w − ω), w ← ω."""
    k, alpha = 2, 0.3
    extra = dict(n_critic=2, optimizer="sgd", lr_d=LR_D, lr_g=LR_G)
    t = Trainer(config(tmp_path, update="lookahead", lookahead_k=k, lookahead_alpha=alpha, **extra))
    plain = Trainer(config(tmp_path, "plain", **extra))
    slow = [weights(t.G), weights(t.D)]
    for step in range(1, 5):
        t.train_step()
        plain.train_step()
        fast = [weights(plain.G), weights(plain.D)]
        if step % k == 0:
            slow = [[w + np.float32(alpha) * (f - w) for w, f in zip(ws, fs)] for ws, fs in zip(slow, fast)]
            fast = slow
            for module, w in zip((plain.G, plain.D), slow):  # the fast weights restart from ω
                for p, v in zip(module.parameters(), w):
                    p.data[...] = v
        assert_weights(t.G, fast[0])
        assert_weights(t.D, fast[1])


def adjusted_expectation(t, G0, D0, x, z, direction):
    """w − lr·direction(ξ, ops) by a Game over twins of (G, D) at w on the step's batch."""
    from minigan.game import Game
    from minigan.game_optim import game_ops
    from minigan.hvp import parameter_vector

    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    game = Game(G, D, t.loss)
    ops = game_ops(game, z, x)
    w = parameter_vector(game.params_G + game.params_D)
    xi = np.concatenate([np.concatenate([g.ravel() for g in part]) for part in reversed(field(t, G0, D0, x, z))])
    np.testing.assert_allclose(ops.field(w), xi, rtol=1e-5, atol=1e-7)  # the trainer's ξ is the game's
    d = direction(w, ops)
    lr = np.concatenate([np.full(game.n_G, LR_G), np.full(game.n_D, LR_D)])
    expected = w - lr * d
    return expected[:game.n_G], expected[game.n_G:]


def flat(module):
    return np.concatenate([p.data.ravel() for p in module.parameters()]).astype(np.float64)


@pytest.mark.parametrize("update, settings", [("consensus", dict(consensus_gamma=0.6)),
                                              ("sga", dict(sga_lambda=0.8, sga_align=True)),
                                              ("sga", dict(sga_lambda=-0.5, sga_align=False))])
def test_consensus_and_sga_step_with_the_adjusted_field(tmp_path, monkeypatch, update, settings):
    from minigan.game_optim import sga_direction

    t = sgd_trainer(tmp_path, update, **settings)
    t.train_step()
    G0, D0 = copy.deepcopy(t.G), copy.deepcopy(t.D)
    batches = recording(t, monkeypatch)
    t.train_step()
    if update == "consensus":
        def direction(w, ops):
            xi = ops.field(w)
            return xi + settings["consensus_gamma"] * ops.vjp(w, xi)
    else:
        def direction(w, ops):
            d, lam = sga_direction(w, ops, settings["sga_lambda"], settings["sga_align"], 0.1)
            return d
    want_G, want_D = adjusted_expectation(t, G0, D0, batches[0][1], batches[1][1], direction)
    plain_G = flat(G0) - LR_G * np.concatenate([g.ravel() for g in field(t, G0, D0, batches[0][1], batches[1][1])[1]])
    assert np.abs(want_G - plain_G).max() > 1e-5  # the adjustment is not negligible here
    np.testing.assert_allclose(flat(t.G), want_G, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat(t.D), want_D, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align, want", [(True, [1.0, -0.8]), (False, [1.0, 0.8])])
def test_sga_flips_lambda_when_the_alignment_is_negative(tmp_path, align, want):
    """J = [[−1, 1], [−1, 0]], ξ = (1, 0): Jᵀξ = (−1, 1), Jξ = (−1, −1), Aᵀξ = (0, 1);
    ⟨ξ, Jᵀξ⟩⟨Aᵀξ, Jᵀξ⟩/d + ε = (−1)(1)/2 + 0.1 < 0, so the aligned λ = 0.8 turns to −0.8."""
    from minigan.game_optim import FieldOps

    J = np.array([[-1.0, 1.0], [-1.0, 0.0]])
    xi = np.array([1.0, 0.0])
    ops = FieldOps(lambda w: xi, 1, lambda w, v: J @ v, lambda w, u: J.T @ u)
    scheme = Trainer(config(tmp_path, update="sga", sga_lambda=0.8, sga_align=align)).scheme
    np.testing.assert_allclose(scheme.direction(xi, ops), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("extra, message", [
    (dict(update="simultaneous", n_critic=2), r"^--update simultaneous takes one critic step .*got 2$"),
    (dict(update="optimistic", loss="wgan-gp"), r"^--update optimistic .*--n-critic 1, got 5$"),
    (dict(update="extragradient", loss="ragan"), r"^--update extragradient does not support --loss ragan"),
    (dict(update="simultaneous", loss="began"), r"^--update simultaneous replaces Algorithm 1; the began"),
    (dict(update="optimistic", penalty="r1", lazy_reg=2), r"^--lazy-reg .* cannot be combined with --update"),
    (dict(update="lookahead", loss="began"), r"^--update lookahead replaces Algorithm 1; the began"),
    (dict(update="lookahead", lookahead_k=0), r"^lookahead_k \(the fast steps .*\) must be >= 1, got 0$"),
    (dict(update="lookahead", lookahead_alpha=1.5), r"^lookahead_alpha must be in \(0, 1\], got 1.5$"),
    (dict(update="lookahead", lookahead_alpha=0.0), r"^lookahead_alpha must be in \(0, 1\], got 0.0$"),
    (dict(update="consensus", penalty="r1"), r"^--update consensus needs J exactly; with --penalty r1 J is a finite"),
    (dict(update="sga", augment="color"), r"^--update sga takes J of the un-augmented game: not with --augment$"),
    (dict(update="sga", n_critic=3), r"^--update sga takes one critic step .*got 3$"),
    (dict(update="sideways"), r"^unknown update 'sideways'; valid: alternating, simultaneous"),
])
def test_settings_it_cannot_train_are_refused(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **extra).resolved().validate()


@pytest.mark.parametrize("update", ["simultaneous", "extragradient", "optimistic", "lookahead", "consensus",
                                    "sga", "cgd"])
def test_the_cli_trains_with_each_rule(tmp_path, update):
    out = tmp_path / update
    code = cli.main(["train", "--data", "8gaussians", "--loss", "hinge", "--update", update, "--steps", "3",
                     "--batch-size", "8", "--hidden", "8", "--depth", "1", "--eval-samples", "20",
                     "--out", str(out)])
    assert code == 0
    assert load_checkpoint(out / "checkpoint.ckpt")["config"]["update"] == update


def test_the_cli_refuses_an_unknown_rule_in_one_line(tmp_path, capsys):
    code = cli.main(["train", "--data", "8gaussians", "--update", "sideways", "--out", str(tmp_path / "r")])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sideways" in err[0]
