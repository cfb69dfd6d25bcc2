"""The registries drive the config, the CLI's --help and the memory estimate: each loss and penalty
declares its defaults, its settings' checks and its memory, and nothing else names them."""
from dataclasses import fields

import pytest

from minigan import memory
from minigan.cli import _flag_help
from minigan.config import ConfigError, TrainConfig
from minigan.losses import LOSSES
from minigan.penalty import PENALTIES


def _help(name: str) -> str:
    return _flag_help(next(f for f in fields(TrainConfig) if f.name == name))


def test_help_defaults_are_read_from_the_loss_registry(monkeypatch):
    assert "(default: 5 for wgan and wgan-gp, else 1)" in _help("n_critic")
    assert "(default: 5e-5 for wgan, 1e-4 for wgan-gp, else 2e-4)" in _help("lr_d")
    assert "(default: 0 for wgan-gp, else 0.5)" in _help("beta1")
    assert "(default: 0.9 for wgan-gp, else 0.999)" in _help("beta2")
    assert "(default: rmsprop for wgan, else adam)" in _help("optimizer")
    assert "(default: wgan-gp for wgan-gp, else none)" in _help("penalty")
    assert "(default: --gp-weight for wgan-gp and dragan, 10 for r1 and r2, 2 for wgan-div)" in _help("penalty_weight")
    monkeypatch.setattr(LOSSES.get("hinge"), "n_critic", 2)
    monkeypatch.setattr(PENALTIES.get("r2"), "default_weight", 3.0)
    assert "(default: 5 for wgan and wgan-gp, 2 for hinge, else 1)" in _help("n_critic")
    assert "10 for r1, 3 for r2" in _help("penalty_weight")


@pytest.mark.parametrize("loss, penalty, setting, value, message", [
    ("wgan-gp", None, "began_gamma", 1.5, "began_gamma must lie in"),
    ("hinge", None, "began_k0", -0.1, "began_k0 must lie in"),
    ("minimax", None, "began_lambda_k", -1.0, "began_lambda_k must be"),
    ("hinge", None, "lsgan_coding", "10", "unknown lsgan_coding"),
    ("minimax", None, "clip", 0.0, "clip"),
    ("nonsaturating", "r1", "gp_weight", -1.0, "gp_weight"),
    ("hinge", "none", "wgan_div_power", 0.5, "wgan_div_power"),
])
def test_every_loss_and_penalty_checks_its_settings_whatever_is_chosen(loss, penalty, setting, value, message):
    """A config file stays valid when its loss changes: a setting's range is checked always."""
    with pytest.raises(ConfigError, match=message):
        TrainConfig(loss=loss, penalty=penalty, **{setting: value}).resolved()


def test_fgan_checks_its_divergence_only_for_the_fgan_loss():
    with pytest.raises(ConfigError, match="needs its α"):
        TrainConfig(loss="fgan", divergence="alpha").resolved()
    with pytest.raises(ConfigError, match="divergence: .*alpha"):
        TrainConfig(loss="fgan", divergence="alpha", fgan_alpha=1.0).resolved()
    assert TrainConfig(loss="hinge", divergence="alpha").resolved().fgan_alpha is None


def _estimate(**values):
    base = dict(data="8gaussians", model="mlp", hidden=16, depth=2, batch_size=32, eval_samples=500)
    return memory.estimate(TrainConfig(**{**base, **values}).resolved())


def test_the_critics_memory_is_declared_by_the_penalty_and_the_loss():
    """Under a penalty (a double backward) the critic's activations count 6 times, else 3: the
    penalty's declaration, whatever the loss. BEGAN's auto-encoder critic is its own size."""
    _, ad = memory._mlp(2, 1, 16, 2, out_act=False)
    extra = 3 * memory.FLOAT * 32 * ad
    none = _estimate(loss="nonsaturating")["activations"]
    assert _estimate(loss="nonsaturating", penalty="r1")["activations"] - none == extra
    assert _estimate(loss="wgan-gp", penalty="r2")["activations"] == _estimate(loss="wgan-gp")["activations"]
    assert _estimate(loss="wgan-gp")["activations"] - _estimate(loss="wgan")["activations"] == extra
    began = _estimate(loss="began")
    code, dim, h = 16, 2, 16
    pd, ad = 2 * (dim * h + h * code) + h + code + dim, 2 * (2 * h + code + dim)
    pg, ag = memory._mlp(2, 2, 16, 2, out_act=False)
    assert began["parameters"] == memory.FLOAT * 4 * (pg + pd)
    assert began["activations"] == 32 * memory.FLOAT * (3 * ag + 3 * ad)


def test_the_dcgan_auto_encoder_counts_twice_the_critic():
    base = dict(data="digits", model="dcgan", base_width=8, batch_size=4)
    began, other = _estimate(loss="began", **base), _estimate(loss="nonsaturating", **base)
    pd, ad, _ = memory._dcgan_d(32, 1, 8)
    assert began["parameters"] - other["parameters"] == memory.FLOAT * 4 * pd
    assert began["activations"] - other["activations"] == 4 * memory.FLOAT * 3 * ad


@pytest.mark.parametrize("penalty, want", [("wgan-gp", 3.5), ("dragan", 3.5), ("r1", 10.0), ("r2", 10.0),
                                           ("wgan-div", 2.0)])
def test_each_penalty_declares_its_default_weight(penalty, want):
    config = TrainConfig(loss="wgan-gp", penalty=penalty, gp_weight=3.5).resolved()
    assert config.penalty_weight == want
    explicit = TrainConfig(loss="wgan-gp", penalty=penalty, gp_weight=3.5, penalty_weight=0.25).resolved()
    assert explicit.penalty_weight == 0.25


def _name_comparisons(path):
    """(line, text) of each comparison of a registered loss or penalty name with a value in ``path``."""
    import ast

    names = set(LOSSES.names()) | set(PENALTIES.names()) - {"none"}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            strings = {c.value for side in sides for c in ast.walk(side)
                       if isinstance(c, ast.Constant) and isinstance(c.value, str)}
            subjects = {getattr(side, "attr", getattr(side, "id", None)) for side in sides}
            if strings & names or (subjects & {"loss", "penalty"} and strings):
                found.append((node.lineno, ast.unparse(node)))
    return found


# Known comparisons outside the registries, each with its reason.
ALLOWED = {
    "minigan/training/loop.py": ["c.penalty == 'none'"],  # no penalty object for "none"
    # the cogan scheme refuses penalties (with a hint for wgan-gp); lazy regularisation needs one
    "minigan/training/schemes/cogan.py": ["config.penalty != 'none'", "config.loss == 'wgan-gp'"],
    "minigan/training/schemes/lazy.py": ["config.penalty == 'none'"],
    # consensus and sga refuse penalties (J would be a finite difference)
    "minigan/training/schemes/updates.py": ["config.penalty != 'none'"],
    "minigan/progress.py": ["c.penalty != 'wgan-gp'"],  # a hint for runs under WGAN-GP's slow default
    "minigan/experiments.py": ["loss == 'wgan'", "loss == 'wgan-gp'"],  # an experiment's per-loss settings
    # the Dirac-GAN's closed forms (Mescheder et al. 2018), one per setting of the paper's table
    "minigan/experiments_games.py": ["penalty in ('r1', 'r2')", "penalty == 'wgan-gp'", "penalty == 'wgan-gp'"],
    # check_penalty's own kinds (two_sided, one_sided, r1), not the registry's names
    "minigan/gradcheck.py": ["penalty == 'r1'", "penalty == 'one_sided'", "penalty == 'two_sided'",
                             "penalty == 'r1'", "penalty == 'one_sided'"],
}


def test_no_module_outside_the_registries_compares_loss_or_penalty_names():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found = {}
    for path in sorted((root / "minigan").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("minigan/losses/", "minigan/penalty/")):
            continue
        hits = [text for _, text in sorted(_name_comparisons(path))]
        if hits:
            found[rel] = hits
    assert found == ALLOWED
