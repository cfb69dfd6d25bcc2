"""``minigan experiment dirac``: the Dirac-GAN of Mescheder et al. 2018 (D_ψ(x) = ψx, G = δ_θ,
data at 0). J at the equilibrium from minigan against closed forms worked out here by hand
(docs/games.md, "The Dirac-GAN"), and which settings converge, as the paper's figures say."""
import csv

import numpy as np
import pytest

from minigan.experiments import EXPERIMENTS
from minigan.experiments_games import DIRAC_SETTINGS, dirac, dirac_game, dirac_jacobian

# J = [[0, −f'(0)], [f'(0), c]] with c = γ (R1, R2: ∂(γψ)/∂ψ), 2λ (WGAN-GP, one-sided), and
# consensus J + γJᵀJ = [[γf'², −f'], [f', γf'²]]; f'(0) = ½ for the log-losses, 1 for WGAN.
HAND = {
    "gan": ([[0, -0.5], [0.5, 0]], [0.5j, -0.5j]),
    "ns-gan": ([[0, -0.5], [0.5, 0]], [0.5j, -0.5j]),
    "wgan": ([[0, -1], [1, 0]], [1j, -1j]),
    "wgan-gp": ([[0, -1], [1, 1.0]], [0.5 + 0.75 ** 0.5 * 1j, 0.5 - 0.75 ** 0.5 * 1j]),   # λ = 0.5
    "r1": ([[0, -0.5], [0.5, 0.6]], [0.3 + 0.4j, 0.3 - 0.4j]),                            # γ = 0.6
    "r2": ([[0, -0.5], [0.5, 0.6]], [0.3 + 0.4j, 0.3 - 0.4j]),
    "consensus": ([[0.25, -0.5], [0.5, 0.25]], [0.25 + 0.5j, 0.25 - 0.5j]),               # γ = 1
}
PAPER = {"gan": False, "ns-gan": False, "wgan": False, "wgan-gp": False, "r1": True, "r2": True, "consensus": True}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dirac")
    return out, dirac(out, quick=True, log=lambda *a: None)


def parse(cell):
    return np.array([complex(v.replace("i", "j")) for v in cell.split()])


@pytest.mark.parametrize("setting", sorted(HAND))
def test_minigan_jacobian_at_equilibrium_matches_the_hand_closed_form(setting):
    J, method = dirac_jacobian(setting)
    assert np.allclose(J, HAND[setting][0], atol=1e-8)
    exact = DIRAC_SETTINGS[setting][1] is None and setting != "consensus"
    assert ("central difference" not in method) == exact


def test_the_table_holds_the_closed_forms_and_the_papers_verdicts(quick_run):
    out, result = quick_run
    assert [r["setting"] for r in result["rows"]] == list(HAND)
    with open(out / "dirac.csv") as file:
        table = list(csv.DictReader(file))
    for row, saved in zip(result["rows"], table):
        name = row["setting"]
        for cell in (row["eig_minigan"], row["eig_closed_form"], saved["eig_minigan"]):
            assert np.allclose(np.sort_complex(parse(cell)), np.sort_complex(np.array(HAND[name][1])), atol=1e-6)
        assert row["max_error"] < 1e-8
        assert row["paper_converges"] == PAPER[name]
        assert row["simultaneous_converges"] == PAPER[name]   # consensus: its own rule
        if name != "consensus":
            assert row["alternating_converges"] == PAPER[name]
        assert saved["simultaneous_converges"] == str(PAPER[name])
    gan = result["rows"][0]
    assert gan["simultaneous_distance"] > np.sqrt(2)            # simultaneous steps spiral out
    assert 0.5 < gan["alternating_distance"] < 2 * np.sqrt(2)   # alternating ones circle
    for name in ("dirac.csv", "dirac.md", "dirac.png"):
        assert (out / name).stat().st_size > 100
    assert "| r1 |" in (out / "dirac.md").read_text()
    assert EXPERIMENTS["dirac"] is dirac


def test_wgan_gp_field_jumps_at_the_equilibrium():
    """λ(|ψ| − 1)² has ∂/∂ψ = 2λ(|ψ| − 1)·sign ψ: ξ_ψ jumps by −4λ across ψ = 0 (Mescheder et al.:
    WGAN-GP's field is not continuous at the equilibrium, so J there is only one-sided)."""
    lam, delta = 0.5, 1e-4
    fields = []
    for psi in (delta, -delta):
        game, z, x = dirac_game("wgan-gp", "wgan-gp", lam, theta=0.0, psi=psi)
        fields.append(game.field(z, x))
    assert fields[0][1] - fields[1][1] == pytest.approx(-4 * lam * (1 - delta), rel=1e-9)
