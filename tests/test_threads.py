"""Threads: more than the usable cores is capped with a note; a user's own loop gets managed
threads from `import minigan` without a call, unless the user chose them."""
import pytest
from threadpoolctl import threadpool_info

from minigan import threads
from minigan.cli import main

TINY = ["--steps", "1", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--no-progress"]


def _blas_threads() -> set:
    """NumPy's BLAS pool sizes (SciPy's own OpenBLAS, loaded later by the final metrics, is
    not among the libraries limited at the start)."""
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas" and "numpy" in p["filepath"]}


@pytest.mark.parametrize("cores, asked", [(1, 7), (2, 3), (3, 40)])
def test_threads_above_the_usable_cores_are_capped_with_one_note(tmp_path, capsys, monkeypatch, cores, asked):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    try:
        assert main(["train", "--threads", str(asked), "--out", str(tmp_path / "a")] + TINY) == 0
        err = capsys.readouterr().err
        note = [line for line in err.splitlines() if "--threads" in line]
        assert note == [f"minigan: note: --threads {asked} capped to {cores}, the cores this process may use"], err
        assert _blas_threads() == {cores}
        assert threads.set_threads(asked) == cores and _blas_threads() == {cores}
        # at or below the cores: used as asked, no note
        assert main(["train", "--threads", str(cores), "--out", str(tmp_path / "b")] + TINY) == 0
        assert "--threads" not in capsys.readouterr().err and _blas_threads() == {cores}
    finally:
        threads.set_threads()
