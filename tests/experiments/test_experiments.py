"""`minigan experiment NAME --quick`: every experiment writes its PNG and CSV, with finite values,
and the claim that defines it holds on the quick run where it is robust."""
import csv
import math

import numpy as np
import pytest
from PIL import Image

from minigan.cli import main
from minigan.experiments import EXPERIMENTS

# the fixture `runs` trains every experiment once: its tests stay on one xdist worker, and it is
# session-scoped because a worker may run other modules' tests between them (a module fixture
# would be torn down and trained again)
pytestmark = pytest.mark.xdist_group("experiments")


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def check_png(path):
    assert path.stat().st_size < 300_000, path
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def as_floats(rows, column):
    values = np.array([float(r[column]) for r in rows])
    assert np.isfinite(values).all(), column
    return values


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Each experiment once in --quick mode, through the command line (shared by the tests below)."""
    root = tmp_path_factory.mktemp("experiments")
    for name in EXPERIMENTS:
        assert main(["experiment", name, "--quick", "--out", str(root / name), "--seed", "0"]) == 0, name
    return root


def test_vanishing_saturating_gradient_dies(runs):
    out = runs / "vanishing"
    check_png(out / "vanishing.png")
    columns, rows = read_csv(out / "vanishing.csv")
    assert columns == ["g_epochs", "d_iteration", "grad_norm_saturating", "grad_norm_nonsaturating",
                       "d_accuracy", "d_loss"]
    for column in columns:
        as_floats(rows, column)
    for epochs in sorted({r["g_epochs"] for r in rows}):
        part = [r for r in rows if r["g_epochs"] == epochs]
        sat, ns = as_floats(part, "grad_norm_saturating"), as_floats(part, "grad_norm_nonsaturating")
        assert float(part[-1]["d_accuracy"]) > 0.95  # D has (nearly) won ...
        assert sat[-1] < ns[-1] / 10                  # ... and the saturating gradient is far smaller
        assert sat[-1] < sat.max() / 2                # it is shrinking while the other one is not
        assert ns[-1] >= ns.max() / 2


def test_modes_metrics_per_loss(runs):
    out = runs / "modes"
    check_png(out / "modes.png")
    columns, rows = read_csv(out / "modes.csv")
    assert columns == ["dataset", "loss", "step", "modes_captured", "n_modes", "high_quality_fraction",
                       "jsd_modes", "emd"]
    assert {(r["dataset"], r["loss"]) for r in rows} == {
        (d, loss) for d in ("8gaussians", "25gaussians")
        for loss in ("minimax", "nonsaturating", "wgan", "wgan-gp", "lsgan")}
    for column in columns[2:]:
        as_floats(rows, column)
    for r in rows:
        assert int(r["n_modes"]) == (8 if r["dataset"] == "8gaussians" else 25)
        assert 0 <= int(r["modes_captured"]) <= int(r["n_modes"])
        assert 0 <= float(r["high_quality_fraction"]) <= 1
        assert 0 <= float(r["jsd_modes"]) <= math.log(2) + 1e-12
        assert float(r["emd"]) > 0


def test_clipping_gradients_and_weights(runs):
    out = runs / "clipping"
    check_png(out / "clipping.png")
    columns, rows = read_csv(out / "clipping.csv")
    assert columns == ["setting", "layer", "grad_norm", "weight_grad_norm"]
    norms = {}
    for r in rows:
        norms.setdefault(r["setting"], []).append(float(r["grad_norm"]))
    assert set(norms) == {"clip c=0.1", "clip c=0.01", "clip c=0.001", "gradient penalty"}
    for setting, values in norms.items():
        assert len(values) == 12 and np.isfinite(values).all() and min(values) > 0, setting
    as_floats(rows, "weight_grad_norm")
    # clipping at c <= 0.01: the gradient dies geometrically on its way down to the input
    for setting in ("clip c=0.01", "clip c=0.001"):
        values = norms[setting]
        assert values[0] < 1e-6 * values[-1], setting
        assert all(a < b for a, b in zip(values, values[1:])), setting
    # the gradient penalty keeps the input gradient from vanishing or exploding (it reaches ~1 at the
    # default size; the quick run is still on its way there)
    assert 0.05 < norms["gradient penalty"][0] < 5
    assert norms["gradient penalty"][0] > 1e6 * norms["clip c=0.01"][0]

    columns, weights = read_csv(out / "clipping_weights.csv")
    assert columns[:4] == ["setting", "c", "fraction_at_bounds_first_clip", "fraction_at_bounds_end"]
    by_setting = {r["setting"]: r for r in weights}
    for setting in ("clip c=0.01", "clip c=0.001"):
        assert float(by_setting[setting]["fraction_at_bounds_end"]) > 0.8  # piled up at ±c
        assert float(by_setting[setting]["max_abs_weight"]) <= float(by_setting[setting]["c"]) * (1 + 1e-6)
    gp = by_setting["gradient penalty"]
    assert gp["fraction_at_bounds_end"] == ""
    assert float(gp["max_abs_weight"]) > 5 * float(gp["weight_std"])  # a spread, not two spikes


def test_optimal_discriminator_matches_closed_form(runs):
    out = runs / "optimal-d"
    check_png(out / "optimal_d.png")
    columns, rows = read_csv(out / "optimal_d.csv")
    assert columns == ["x", "p_data", "p_g", "D", "D_star", "high_density"]
    x, p_data, p_g = (as_floats(rows, c) for c in ("x", "p_data", "p_g"))
    d, d_star = as_floats(rows, "D"), as_floats(rows, "D_star")
    np.testing.assert_allclose(d_star, p_data / (p_data + p_g), rtol=1e-9, atol=1e-12)
    assert ((d > 0) & (d < 1)).all()
    high = as_floats(rows, "high_density").astype(bool)
    assert high.sum() > len(x) / 4
    error = np.abs(d - d_star)[high]
    assert error.mean() < 0.05 and error.max() < 0.25


def test_unknown_experiment_is_a_one_line_error(capsys):
    assert main(["experiment", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("minigan: error: unknown experiment 'nope'")
    for name in EXPERIMENTS:
        assert name in err


def test_small_data_runs_every_variant_on_a_tenth_of_the_digits(runs):
    from minigan.experiments import SMALL_DATA_COLUMNS, SMALL_DATA_RUNS

    out = runs / "small-data"
    check_png(out / "small_data.png")
    columns, rows = read_csv(out / "small_data.csv")
    assert columns == list(SMALL_DATA_COLUMNS)
    assert [r["run"] for r in rows] == [label for label, *_ in SMALL_DATA_RUNS]
    assert [int(r["train_images"]) for r in rows] == [1797] + [180] * 4
    assert [r["augment"] != "" for r in rows] == [False, False, True, False, True]
    assert [int(r["spectral_norm"]) for r in rows] == [0, 0, 0, 1, 1]
    for column in ("fid", "kid", "precision", "recall", "fid_floor"):
        as_floats(rows, column)
    assert all(float(r["fid"]) > float(r["fid_floor"]) for r in rows)  # 20 steps: far from the real floor


def test_game_optimizers_every_rule_at_the_same_budget(runs):
    """Every registered rule ran; each spent the budget (400 evaluations with --quick) and no more
    than one step beyond it: fixed-cost rules took exactly ⌈400 / cost per step⌉ steps."""
    from minigan.experiments_games import GAME_RULES
    from minigan.game_optim import RULES

    _, rows = read_csv(runs / "game-optimizers" / "game_optimizers.csv")
    assert [r["rule"] for r in rows] == [name for name, _, _ in GAME_RULES]
    assert set(RULES) == {r["rule"] for r in rows}
    per_step = {"simultaneous": 1, "alternating": 1, "adam": 1, "alternating-adam": 1, "optimistic": 1,
                "optimistic-adam": 1, "lookahead": 1, "extragradient": 2, "extra-adam": 2, "consensus": 2, "sga": 3}
    for r in rows:
        steps, cost = int(r["steps"]), float(r["cost"])
        assert cost >= 400 and float(r["fields"]) + int(r["products"]) == cost
        if r["rule"] in per_step:
            assert steps == math.ceil(400 / per_step[r["rule"]]) and cost == steps * per_step[r["rule"]]
        else:   # cgd: a field, 2 products, and 2 per GMRES product (≤ 6): at most 15 a step
            assert 400 <= cost < 400 + 15
        assert 0 <= int(r["modes_captured"]) <= 8 and 0 < float(r["emd"]) < 10
        assert len(r["top_eigenvalues"].split()) == 4 and float(r["max_im_over_re"]) >= 0
    check_png(runs / "game-optimizers" / "game_optimizers.png")
