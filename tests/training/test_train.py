"""Training runs of every loss/model pair on tiny shapes, resume, CoGAN sharing, reliability."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from minigan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minigan.config import ConfigError, TrainConfig
from minigan.models import cogan_mlp
from minigan.train import Trainer, TrainingDiverged

# The anchor losses every model trains with here; the newer ones: tests/test_zoo_training.py.
LOSSES = ("minimax", "nonsaturating", "wgan", "wgan-gp", "lsgan", "began", "fgan")

# eval_samples: the final metrics' sample count (toy modes and EMD, images' SWD); small keeps each run cheap
TINY = dict(steps=2, batch_size=8, hidden=8, depth=1, base_width=4, sample_every=1, checkpoint_every=1,
            eval_samples=20)
MODEL_DATA = {"mlp-toy": ("mlp", "8gaussians"), "mlp": ("mlp", "digits"), "dcgan": ("dcgan", "digits"),
              "cmlp": ("cmlp", "digits"), "cdcgan": ("cdcgan", "digits"), "cogan": ("cogan", "digits")}
UNSUPPORTED = {("cmlp", "began"), ("cdcgan", "began"), ("cogan", "began"), ("cogan", "wgan-gp")}


def tiny_config(tmp_path, loss, model, data, **extra):
    values = dict(TINY, loss=loss, model=model, data=data, out=str(tmp_path / f"{loss}-{model}"))
    if model in ("dcgan", "cdcgan"):
        values["image_size"] = 28
    values.update(extra)
    return TrainConfig(**values)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("kind", list(MODEL_DATA))
def test_every_loss_and_model_trains(tmp_path, loss, kind):
    model, data = MODEL_DATA[kind]
    config = tiny_config(tmp_path, loss, model, data)
    if (model, loss) in UNSUPPORTED:
        with pytest.raises(ConfigError, match=f"{model}|{loss}"):
            Trainer(config)
        return
    summary = Trainer(config).train()
    assert summary["step"] == 2
    out = tmp_path / f"{loss}-{model}"
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    for row in rows:
        for key in ("loss_d", "loss_g"):
            assert np.isfinite(float(row[key])), (key, row)
    for name in ("samples.png", "samples_000001.png", "losses.png", "checkpoint.ckpt", "summary.json"):
        assert (out / name).stat().st_size > 0, name


def test_loss_specific_quantities_are_logged(tmp_path):
    def last_row(loss, **extra):
        Trainer(tiny_config(tmp_path, loss, "mlp", "8gaussians", **extra)).train()
        with open(tmp_path / f"{loss}-mlp" / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))[-1]

    row = last_row("wgan-gp")
    assert float(row["gp"]) > 0 and row["wasserstein"] != ""
    row = last_row("began")
    assert 0 <= float(row["k"]) <= 1 and float(row["M"]) > 0
    row = last_row("nonsaturating")
    assert 0 < float(row["d_real"]) < 1 and 0 < float(row["d_fake"]) < 1


def test_wgan_clips_critic_weights(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "wgan", "mlp", "8gaussians", clip=0.005))
    trainer.train()
    assert max(float(np.abs(p.data).max()) for p in trainer.D.parameters()) <= 0.005


def test_toy_wgan_gp_runs_end_to_end(tmp_path):
    """8 Gaussians on a ring, MLP critic, the hand-derived penalty: a short real run."""
    config = TrainConfig(loss="wgan-gp", model="mlp", data="8gaussians", preset="toy", hidden=32, steps=20,
                         eval_samples=300, sample_every=10, checkpoint_every=10, out=str(tmp_path / "toy"))
    trainer = Trainer(config)
    summary = trainer.train()
    assert summary["step"] == 20 and np.isfinite(summary["emd"]) and 0 <= summary["modes_captured"] <= 8
    assert trainer.config.n_critic == 5 and trainer.config.gp_weight == 0.1
    with open(tmp_path / "toy" / "metrics.csv", newline="") as f:
        gps = [float(r["gp"]) for r in csv.DictReader(f)]
    assert all(np.isfinite(gps)) and len(gps) == 20


def params_of(trainer):
    return {**{f"G.{k}": v for k, v in trainer.G.state_dict().items()},
            **{f"D.{k}": v for k, v in trainer.D.state_dict().items()}}


def assert_resume_is_exact(full, half, steps=4):
    """``full`` trains ``steps`` steps; ``half`` (the same config in another folder) trains half of
    them, is checkpointed and resumed to ``steps``: both end with the same weights, bit for bit."""
    for _ in range(steps):
        full.train_step()
    for _ in range(steps // 2):
        half.train_step()
    half.save_checkpoint()
    resumed = Trainer.resume(half.out, steps=steps)
    for _ in range(steps - steps // 2):
        resumed.train_step()
    a, b = params_of(full), params_of(resumed)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("loss, model, data", [("wgan-gp", "mlp", "8gaussians"),
                                                ("nonsaturating", "dcgan", "digits"),
                                                ("began", "mlp", "digits")])
def test_resume_equals_uninterrupted_bit_for_bit(tmp_path, loss, model, data):
    full = Trainer(tiny_config(tmp_path / "full", loss, model, data, steps=4, checkpoint_every=100))
    full.train()
    half = Trainer(tiny_config(tmp_path / "half", loss, model, data, steps=2, checkpoint_every=100))
    half.train()
    resumed = Trainer.resume(half.out, steps=4)
    assert resumed.step == 2
    resumed.train()
    a, b = params_of(full), params_of(resumed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    opt_a, opt_b = full.opt_d.state_dict()["state"], resumed.opt_d.state_dict()["state"]
    for i in opt_a:
        for name in opt_a[i]:
            np.testing.assert_array_equal(opt_a[i][name], opt_b[i][name])
    rows = [list(csv.DictReader(open(t.out / "metrics.csv"))) for t in (full, resumed)]
    assert [r["loss_d"] for r in rows[0]] == [r["loss_d"] for r in rows[1]]


def test_same_seed_same_run_and_other_seed_differs(tmp_path):
    runs = [Trainer(tiny_config(tmp_path / str(i), "lsgan", "mlp", "digits", seed=s)) for i, s in enumerate([3, 3, 4])]
    for t in runs:
        t.train()
    p = [params_of(t) for t in runs]
    assert all(np.array_equal(p[0][k], p[1][k]) for k in p[0])
    assert not all(np.array_equal(p[0][k], p[2][k]) for k in p[0])


def _folder_of_squares(folder, n, rng):
    folder.mkdir()
    for i in range(n):
        pixels = np.full((24, 24, 3), rng.integers(0, 256, 3), np.uint8)
        top, left = rng.integers(0, 16, 2)
        pixels[top:top + 8, left:left + 8] = rng.integers(0, 256, 3)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("model, data, size, levels", [("mlp", "folder", 32, ["32", "16"]),
                                                        ("cogan", "digits", None, ["8"]),
                                                        ("cdcgan", "digits", 28, ["28"])])
def test_image_runs_report_swd_and_its_floor(tmp_path, model, data, size, levels):
    """summary.json holds the SWD of min(eval_samples, half the data) generated images (G on the
    [seed, 6] noise; CoGAN's first domain; cDCGAN's labels cycling) against as many real ones, with
    the floor of two disjoint real halves: recomputed here from the trainer's own samples."""
    from minigan.swd import swd_with_floor

    if data == "folder":
        data = str(_folder_of_squares(tmp_path / "squares", 30, np.random.default_rng(0)))
    loss = "lsgan" if model != "cogan" else "nonsaturating"
    trainer = Trainer(tiny_config(tmp_path, loss, model, data, image_size=size, seed=7, eval_samples=20))
    summary = trainer.train()
    real = trainer.sampler.data.reshape((-1,) + tuple(trainer.image_shape))
    n = min(20, len(real) // 2)
    z = np.random.default_rng([7, 6]).standard_normal((n, trainer.latent_dim)).astype(np.float32)
    labels = np.arange(n) % 10 if model == "cdcgan" else None
    fake = trainer.samples(z, labels)[..., :real.shape[-1]]
    expected = swd_with_floor(real, fake, seed=7)
    assert {key: summary[key] for key in expected} == expected
    assert list(summary["swd_levels"]) == levels and summary["swd_images"] == n
    assert summary["swd"] > summary["floor_swd"] > 0  # two steps of training: far from the data
    assert json.loads((trainer.out / "summary.json").read_text())["swd_levels"] == expected["swd_levels"]


def test_toy_runs_have_no_swd_and_too_small_images_say_why(tmp_path):
    toy = Trainer(tiny_config(tmp_path / "toy", "lsgan", "mlp", "8gaussians")).train()
    assert not any(key.startswith("swd") or key.endswith("swd") for key in toy)
    small = Trainer(tiny_config(tmp_path / "small", "lsgan", "mlp", "digits", image_size=6)).train()
    assert "swd" not in small and "smaller than one 7×7 neighbourhood" in small["swd_error"]


def test_cogan_shared_weights_get_both_branches_gradients():
    rng = np.random.default_rng(0)
    gens, discs = cogan_mlp(4, 6, hidden=5, dtype=np.float64, rng=rng)
    z = rng.standard_normal((3, 4))
    d1, d2 = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))

    def shared_grads(dys):
        gens.zero_grad()
        gens(z)
        gens.backward(dys)
        return [p.grad.copy() for p in gens.shared.parameters()]

    both = shared_grads((d1, d2))
    only1, only2 = shared_grads((d1, 0 * d2)), shared_grads((0 * d1, d2))
    for b, g1, g2 in zip(both, only1, only2):
        assert np.abs(g1).sum() > 0 and np.abs(g2).sum() > 0
        np.testing.assert_allclose(b, g1 + g2, rtol=1e-12, atol=1e-14)
    x1, x2 = rng.standard_normal((3, 6)), rng.standard_normal((2, 6))
    o1, o2 = discs((x1, x2))
    assert o1.shape == (3, 1) and o2.shape == (2, 1)

    def tail_grads(dys):
        discs.zero_grad()
        discs((x1, x2))
        discs.backward(dys)
        return [p.grad.copy() for p in discs.shared.parameters()]

    e1, e2 = np.ones((3, 1)), np.ones((2, 1))
    for b, g1, g2 in zip(tail_grads((e1, e2)), tail_grads((e1, 0 * e2)), tail_grads((0 * e1, e2))):
        np.testing.assert_allclose(b, g1 + g2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("overrides, message", [
    (dict(lr_d=-1e-4), "lr_d .* positive"),
    (dict(lr_g=float("nan")), "lr_g .* positive finite"),
    (dict(n_critic=0), r"k \(discriminator steps"),
    (dict(loss="began", began_gamma=1.5), "began_gamma must lie in"),
    (dict(loss="nope"), "unknown loss 'nope'"),
    (dict(loss="fgan", divergence="hellinger2"), "divergence: .*hellinger2"),
    (dict(model="dcgan", image_size=48), "image_size 48 is not supported by the dcgan model"),
    (dict(model="resnet"), "unknown model"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(beta1=1.0), r"beta1 must lie in \[0, 1\)"),
    (dict(loss="wgan-gp", model="dcgan", critic_norm="batch"), "per-sample"),
])
def test_bad_hyperparameters_rejected_before_training(tmp_path, overrides, message):
    config = TrainConfig(out=str(tmp_path / "never"), **overrides)
    with pytest.raises(ConfigError, match=message):
        Trainer(config)
    assert not (tmp_path / "never").exists()


def test_config_keys_and_types_are_checked():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['lr'\]"):
        TrainConfig.from_dict({"lr": 0.1})
    with pytest.raises(ConfigError, match="'steps' must be an integer, got str"):
        TrainConfig.from_dict({"steps": "ten"})
    assert TrainConfig.from_dict({"lr_d": 1}).lr_d == 1.0


def poison_generator_at(trainer, monkeypatch, step: int):
    """Make the trainer's generator weights NaN at the start of its G step number ``step``."""
    real_g_step = trainer.scheme.generator_step

    def poisoned_g_step():
        if trainer.step == step:
            trainer.G[0].weight.data[...] = np.nan
        return real_g_step()

    monkeypatch.setattr(trainer.scheme, "generator_step", poisoned_g_step)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_stops_training_keeping_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(tmp_path, "nonsaturating", "mlp", "8gaussians", steps=5, checkpoint_every=1))
    poison_generator_at(trainer, monkeypatch, 3)
    with pytest.raises(TrainingDiverged, match="step 3: .*(loss_g|gradient of G).*NaN"):
        trainer.train()
    state = load_checkpoint(trainer.out / "checkpoint.ckpt")
    assert state["step"] == 2 and all(np.isfinite(v).all() for v in state["G"].values())


def test_stop_request_saves_and_resume_continues(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(tmp_path, "lsgan", "mlp", "8gaussians", steps=6, checkpoint_every=100))
    real_step = trainer.train_step

    def step_then_interrupt():
        metrics = real_step()
        if trainer.step == 3:
            trainer._request_stop(None, None)  # what Ctrl-C does
        return metrics

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    summary = trainer.train()
    assert summary["interrupted"] and summary["step"] == 3
    assert load_checkpoint(trainer.out / "checkpoint.ckpt")["step"] == 3
    resumed = Trainer.resume(trainer.out)
    assert resumed.train()["step"] == 6


def test_checkpoint_atomic_write_and_corruption(tmp_path, monkeypatch):
    path = tmp_path / "c.ckpt"
    save_checkpoint({"a": np.arange(3.0), "step": 1, "nested": {0: [np.ones(2)]}}, path)
    back = load_checkpoint(path)
    assert back["step"] == 1 and np.array_equal(back["a"], np.arange(3.0)) and (back["nested"][0][0] == 1).all()

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint({"a": np.zeros(3), "step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]  # no temp file left behind
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(path)
    path.write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a minigan checkpoint"):
        load_checkpoint(path)
    flipped = bytearray(data)
    flipped[-10] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_fast_kernels_train_like_the_reference(tmp_path):
    """The same tiny run with the Numba kernels on and off: equal to float32 rounding."""
    from minigan import backend

    runs = []
    for reference in (True, False):
        trainer = Trainer(tiny_config(tmp_path / str(reference), "wgan-gp", "dcgan", "digits", reference=reference,
                                      critic_norm="layer", steps=1, optimizer="sgd"))
        assert backend.fast_kernels_enabled() is not reference
        trainer.train()
        runs.append(params_of(trainer))
    for key in runs[0]:
        np.testing.assert_allclose(runs[0][key], runs[1][key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_cuda_device_without_a_gpu_is_a_clear_error(tmp_path):
    from minigan import backend

    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="GPU path .* unavailable"):
        Trainer(tiny_config(tmp_path, "wgan-gp", "mlp", "8gaussians", device="cuda"))
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        Trainer(tiny_config(tmp_path, "wgan-gp", "mlp", "8gaussians", device="tpu"))
