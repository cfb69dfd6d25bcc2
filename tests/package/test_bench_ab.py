"""benchmarks.ab: each tree's probe runs from that tree, and the ratios are new ÷ old per step.

The trees here are stand-ins whose ``benchmarks/run.py`` answers the probe protocol with fixed
times (scaled by --dc-batch, so the option is seen to reach the probes): the driver's arithmetic
and plumbing are checked exactly, without timing anything real.
"""
import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
sys.path.insert(0, ROOT)   # benchmarks/ is not installed: the repository's own copy
try:
    from benchmarks import ab
finally:
    sys.path.remove(ROOT)

FAKE_PROBE = '''import sys
args = sys.argv
if "--probe" not in args or args[args.index("--probe") + 1:] != [{case!r}, "numba"]:
    sys.exit("unexpected command line: " + " ".join(args))
batch = float(args[args.index("--dc-batch") + 1]) if "--dc-batch" in args else 1.0
{fail}
print("ready", flush=True)
k = 0
for line in sys.stdin:
    if line.strip() != "step":
        break
    k += 1
    print(f"time {{{scale} * batch * (1 + k % 2)!r}}", flush=True)
print("result {{}}", flush=True)
'''


def fake_tree(root, scale, case="c", fail=""):
    (root / "benchmarks").mkdir(parents=True)
    (root / "benchmarks" / "__init__.py").write_text("")
    (root / "benchmarks" / "run.py").write_text(FAKE_PROBE.format(case=case, scale=scale, fail=fail))
    return str(root)


def test_ratios_are_new_over_old_per_step_and_per_pair(tmp_path, capsys):
    old, new = fake_tree(tmp_path / "old", 0.004), fake_tree(tmp_path / "new", 0.003)
    out = tmp_path / "ab.json"
    ab.main(["--old", old, "--new", new, "--case", "c", "--dc-batch", "16", "--pairs", "2",
             "--steps", "3", "--warmup", "0", "--gap-ms", "0", "--json", str(out)])
    d = json.loads(out.read_text())
    # each probe's k-th step answers scale·batch·(1 + k mod 2): steps 1, 2, 3 of a pair
    assert d["times_s"]["old"] == pytest.approx([0.004 * 16 * m for m in (2, 1, 2)] * 2)
    assert d["times_s"]["new"] == pytest.approx([0.003 * 16 * m for m in (2, 1, 2)] * 2)
    assert d["ratios"] == pytest.approx([0.75] * 6)
    assert d["pair_ratios"] == pytest.approx([0.75, 0.75])
    line = capsys.readouterr().out
    assert line.startswith("c b16 numba: old 128.00 ms, new 96.00 ms; new/old paired median 0.750 "
                           "(quartiles 0.750–0.750, n=6)")


def test_probe_options_and_case_reach_each_tree(tmp_path):
    # the stand-ins exit unless asked for case "a"; without --dc-batch their batch factor is 1
    old, new = fake_tree(tmp_path / "old", 0.01, case="a"), fake_tree(tmp_path / "new", 0.02, case="a")
    out = tmp_path / "ab.json"
    ab.main(["--old", old, "--new", new, "--case", "a", "--pairs", "1", "--steps", "2",
             "--warmup", "0", "--gap-ms", "0", "--json", str(out)])
    d = json.loads(out.read_text())
    assert d["times_s"] == {"old": pytest.approx([0.02, 0.01]), "new": pytest.approx([0.04, 0.02])}
    assert statistics.median(d["ratios"]) == pytest.approx(2.0)


def test_a_failing_probe_is_one_message(tmp_path):
    old = fake_tree(tmp_path / "old", 0.01, fail='sys.exit("probe broke: no minigan here")')
    new = fake_tree(tmp_path / "new", 0.01)
    with pytest.raises(SystemExit) as e:
        ab.main(["--old", old, "--new", new, "--pairs", "1", "--steps", "1", "--gap-ms", "0"])
    assert "probe broke: no minigan here" in str(e.value.code)


@pytest.mark.parametrize("argv, message", [
    (["--old", "/nonexistent-tree"], "is not a minigan source tree"),
    (["--case", "z"], "--case 'z': one of a b c d e f g"),
    (["--case", "ab"], "--case 'ab': one of a b c d e f g"),
    (["--steps", "0"], "--pairs and --steps must be at least 1"),
    (["--pairs", "0"], "--pairs and --steps must be at least 1"),
    (["--warmup", "-1"], "--warmup at least 0"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    tree = fake_tree(tmp_path / "t", 0.01)
    with pytest.raises(SystemExit) as e:
        ab.main(["--old", tree, "--new", tree, *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
