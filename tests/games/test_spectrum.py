"""``minigan spectrum RUN``: the game Jacobian's top eigenvalues at a run's checkpoint, on tiny
runs made here: the eigenvalues against a dense J built column by column from J·v, the plot,
the one-line reading, the refusal to overwrite, a penalty run labelled a finite difference."""
import numpy as np
import pytest

from minigan.cli import _load_trainer, main
from minigan.spectrum import fixed_batch, game_of_run, reading, run_spectrum

TOY = ["--data", "8gaussians", "--batch-size", "16", "--no-progress", "--loss", "minimax", "--eval-samples", "40"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """More than Game.DENSE_LIMIT parameters, so the eigenvalues go through eigs on J·v."""
    out = tmp_path_factory.mktemp("spectrum") / "run"
    assert main(["train", "--out", str(out), "--steps", "20", "--hidden", "24", "--depth", "2",
                 "--penalty", "none"] + TOY) == 0
    return out


def test_spectrum_command_writes_the_plot_and_one_reading(toy_run, capsys):
    capsys.readouterr()
    assert main(["spectrum", str(toy_run), "-k", "3", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "rotation-dominated" in lines[0] and "median |Im|/|Re| = " in lines[0]
    assert "finite difference" not in lines[0]
    assert (toy_run / "spectrum.png").stat().st_size > 1000
    # never over an existing file without --overwrite: one line, exit 2
    assert main(["spectrum", str(toy_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists; add --overwrite" in err and len(err.splitlines()) == 1
    assert main(["spectrum", str(toy_run / "checkpoint.ckpt"), "--overwrite", "-k", "2"]) == 0
    assert main(["spectrum", str(toy_run), "--out", str(toy_run / "checkpoint.ckpt")]) == 2
    assert main(["spectrum", str(toy_run), "-k", "0", "--out", str(toy_run / "k0.png")]) == 2
    assert "need -k >= 1" in capsys.readouterr().err


def test_eigenvalues_match_the_dense_jacobian(toy_run, tmp_path):
    trainer = _load_trainer(toy_run)
    result = run_spectrum(trainer, tmp_path / "s.png", k=4, n=16, seed=5)
    game = game_of_run(trainer, 5)
    assert game.size > game.DENSE_LIMIT and game.exact
    z, x, labels = fixed_batch(trainer, 16, 5)
    eye = np.eye(game.size)
    J = np.stack([game.jvp(z, x, eye[i], labels) for i in range(game.size)], axis=1)
    every = np.linalg.eigvals(J)
    scale = np.abs(every).max()
    for which, key in (("LM", lambda e: -np.abs(e)), ("LR", lambda e: -e.real), ("SR", lambda e: e.real)):
        want = every[np.argsort(key(every), kind="stable")][:4]
        got = result["values"][which]
        assert len(got) == 4
        # each found eigenvalue is one of J's, and the extreme one is the extreme of all of them
        assert all(np.min(np.abs(every - g)) < 1e-8 * scale for g in got)
        assert abs(key(got[0]) - key(want[0])) < 1e-8 * scale


def test_a_penalty_run_says_its_jacobian_is_a_finite_difference(tmp_path, capsys):
    out = tmp_path / "r1"
    assert main(["train", "--out", str(out), "--steps", "3", "--hidden", "6", "--depth", "1",
                 "--penalty", "r1"] + TOY) == 0
    capsys.readouterr()
    assert main(["spectrum", str(out), "-k", "50"]) == 0   # a small game: all of its eigenvalues
    line = capsys.readouterr().out.splitlines()[0]
    assert "J is a finite difference (central difference of the exact field" in line


def test_reading_names_rotation_and_repelling_directions():
    # two of the three top eigenvalues have |Im| > 3|Re|: a majority
    rotating = {"LM": np.array([0.1 + 2j, 0.1 - 2j, -0.5 + 1j]), "LR": np.array([0.1 + 2j]),
                "SR": np.array([-0.5 + 1j])}
    line = reading(rotating, "exact", True)
    assert line.startswith("rotation-dominated") and "simultaneous steps will oscillate" in line
    assert "median |Im|/|Re| = 20" in line and "1 of 3 found with Re < 0" in line
    damped = {"LM": np.array([3.0 + 0.5j, 3.0 - 0.5j, 0.2 + 1.0j]), "LR": np.array([3.0 + 0.5j]), "SR": np.array([0.2 + 1.0j])}
    line = reading(damped, "central difference", False)
    assert line.startswith("not rotation-dominated") and "0 of 3 found with Re < 0" in line
    assert line.endswith("J is a finite difference (central difference)")
