"""Weights to PyTorch: safetensors files with the keys and shapes torch's layers have."""
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import minigan.nn as nn
from minigan import models
from minigan.cli import main
from minigan.export import load_safetensors, save_safetensors
from minigan.train import Trainer

TINY = ["--steps", "2", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--no-progress"]


def _shapes(path):
    return {k: (v.shape, v.dtype.name) for k, v in load_file(str(path)).items()}


def test_export_a_run_for_torch(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run)] + TINY) == 0
    g_file, d_file = tmp_path / "g.safetensors", tmp_path / "d.safetensors"
    assert main(["export", str(run), "--out", str(g_file)]) == 0
    assert main(["export", str(run / "checkpoint.ckpt"), "--critic", "--out", str(d_file)]) == 0
    # torch.nn.Sequential(Linear(64, 8), ReLU(), Linear(8, 64), Tanh()) and
    # torch.nn.Sequential(Linear(64, 8), LeakyReLU(0.2), Linear(8, 1)): Linear.weight is (out, in)
    assert _shapes(g_file) == {"0.weight": ((8, 64), "float32"), "0.bias": ((8,), "float32"),
                               "2.weight": ((64, 8), "float32"), "2.bias": ((64,), "float32")}
    assert _shapes(d_file) == {"0.weight": ((8, 64), "float32"), "0.bias": ((8,), "float32"),
                               "2.weight": ((1, 8), "float32"), "2.bias": ((1,), "float32")}
    trainer = Trainer.resume(run)
    for key, value in load_file(str(g_file)).items():
        np.testing.assert_array_equal(value, trainer.G.state_dict()[key])
    with safe_open(str(g_file), "np") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["minigan_step"] == "2" and '"hidden": 8' in meta["minigan_config"]
    # a fresh minigan generator loads the file and computes what the trained one computes
    fresh = models.mlp(64, 64, 8, 1, "relu", out_activation="tanh", rng=np.random.default_rng(9))
    load_safetensors(fresh, g_file)
    z = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
    np.testing.assert_array_equal(fresh(z), trainer.G(z))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_batchnorm_buffers_travel_with_torch_names_and_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, rng=rng))
    net(rng.standard_normal((16, 3)).astype(np.float32))  # running statistics away from 0 and 1
    net(rng.standard_normal((16, 3)).astype(np.float32) + 2)
    net[1].weight.data[...] = rng.standard_normal(4)
    path = save_safetensors(net, tmp_path / "net.safetensors")
    # torch: BatchNorm1d has weight, bias, running_mean, running_var (float) and an int64 scalar
    assert _shapes(path) == {"0.weight": ((4, 3), "float32"), "0.bias": ((4,), "float32"),
                             "1.weight": ((4,), "float32"), "1.bias": ((4,), "float32"),
                             "1.running_mean": ((4,), "float32"), "1.running_var": ((4,), "float32"),
                             "1.num_batches_tracked": ((), "int64"),
                             "3.weight": ((2, 4), "float32"), "3.bias": ((2,), "float32")}
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    load_safetensors(other, path)
    for (key, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert int(other[1].num_batches_tracked) == 2
    x = rng.standard_normal((3, 3)).astype(np.float32)
    net.eval(), other.eval()
    np.testing.assert_array_equal(net(x), other(x))
    with pytest.raises((KeyError, ValueError), match="unexpected|missing|shape"):
        load_safetensors(nn.Sequential(nn.Linear(3, 4)), path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors is not a safetensors file"):
        load_safetensors(other, tmp_path / "bad.safetensors")


def test_dcgan_generator_keys_are_torchs():
    # torch.nn.Sequential(Linear(16, 32*4*4, bias=False), Unflatten(1, (32, 4, 4)), BatchNorm2d(32), ReLU(),
    #   ConvTranspose2d(32, 16, 4, 2, 1, bias=False), BatchNorm2d(16), ReLU(),
    #   ConvTranspose2d(16, 8, 4, 2, 1, bias=False), BatchNorm2d(8), ReLU(), ConvTranspose2d(8, 1, 4, 2, 1), Tanh())
    # ConvTranspose2d.weight is (in, out, kh, kw)
    g = models.dcgan_generator(16, 32, 1, 8, rng=np.random.default_rng(0))
    expected = {"0.weight": (512, 16), "4.weight": (32, 16, 4, 4), "7.weight": (16, 8, 4, 4),
                "10.weight": (8, 1, 4, 4), "10.bias": (1,)}
    for index, width in ((2, 32), (5, 16), (8, 8)):
        expected.update({f"{index}.weight": (width,), f"{index}.bias": (width,), f"{index}.running_mean": (width,),
                         f"{index}.running_var": (width,), f"{index}.num_batches_tracked": ()})
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == expected


def test_export_run_from_python_never_writes_a_run_file(tmp_path):
    from minigan.export import export_run
    from minigan.runfolder import RunFolderError

    run = tmp_path / "run"
    assert main(["train", "--out", str(run)] + TINY) == 0
    before = (run / "checkpoint.ckpt").read_bytes()
    for name in ("checkpoint.ckpt", "metrics.csv", "config.json"):
        with pytest.raises(RunFolderError, match="is a file of the minigan run"):
            export_run(run, run / name)
    assert (run / "checkpoint.ckpt").read_bytes() == before
    mine = tmp_path / "g.safetensors"
    mine.write_bytes(b"old")  # Python's export replaces a file of the user's, as open(..., "w") would
    assert export_run(run, mine, "critic") == mine
    assert set(_shapes(mine)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
