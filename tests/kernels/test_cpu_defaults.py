"""What a user gets without asking: the Numba kernels on the CPU, threads sized by minigan,
OpenBLAS's idle spinning bounded, minigan.kernels importable however minigan is run; and the
NumPy reference one switch away (``--reference``, ``minigan.use_reference()``)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minigan
from minigan import backend
from minigan.cli import main
from minigan.config import TrainConfig
from minigan.train import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(steps=1, batch_size=8, hidden=8, depth=1, model="dcgan", data="digits", image_size=28)


def run_python(code, cwd=ROOT, **env):
    full = {**os.environ, **env}
    for k, v in env.items():
        if v is None:
            full.pop(k)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=300)


def test_a_default_trainer_runs_the_kernels_and_reference_true_the_numpy_one(tmp_path):
    x = np.zeros((2, 1, 4, 4), np.float32)
    minigan.use_reference()  # a previous choice is overridden by the config
    Trainer(TrainConfig(**TINY, out=str(tmp_path / "a")))
    assert backend.kernel("conv2d_forward", x).__module__ == "minigan.kernels.conv2d"
    assert backend.kernel("adam_step", x).__module__ == "minigan.kernels.adam"
    Trainer(TrainConfig(**TINY, reference=True, out=str(tmp_path / "b")))
    assert backend.kernel("conv2d_forward", x).__module__ == "minigan.functional"
    assert backend.kernel("adam_step", x).__module__ == "minigan.optim"


def test_configs_of_older_versions_with_fast_kernels_still_load():
    config = TrainConfig.from_dict({"fast_kernels": True, "steps": 3})
    assert config.steps == 3 and config.reference is False
    assert "fast_kernels" not in config.to_dict()


def test_threads_option_sizes_the_blas_pool_and_rejects_nonsense(tmp_path, capsys):
    from threadpoolctl import threadpool_info

    from minigan.threads import set_threads, usable_cores

    try:
        Trainer(TrainConfig(**TINY, threads=1, out=str(tmp_path / "a")))
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {1}
    finally:
        n = set_threads(usable_cores())
    assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {n} == {usable_cores()}
    assert main(["train", "--threads", "0", "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "threads" in capsys.readouterr().err


def test_the_retired_fast_kernels_flag_is_accepted_with_a_note(tmp_path, capsys):
    args = ["train", "--fast-kernels", "--steps", "1", "--batch-size", "8", "--hidden", "8", "--depth", "1",
            "--no-progress", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    assert "--fast-kernels is the default now" in capsys.readouterr().err


def test_import_sets_the_openblas_spin_timeout_only_while_it_can():
    code = "import os, sys, minigan; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    assert run_python(code, OPENBLAS_THREAD_TIMEOUT=None).stdout.strip() == "12"
    assert run_python(code, OPENBLAS_THREAD_TIMEOUT="5").stdout.strip() == "5"   # the user's value stays
    late = "import numpy, minigan, os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    assert run_python(late, OPENBLAS_THREAD_TIMEOUT=None).stdout.strip() == "None"  # too late to matter


def test_kernels_import_as_minigan_kernels_from_a_source_tree(tmp_path):
    """PYTHONPATH=<repo> from another folder (how the GPU machine runs): the files of kernels/
    under the name minigan.kernels, and no top-level package named kernels."""
    code = ("import sys, minigan.kernels.cpu as c, minigan.kernels.cuda; print(c.__file__); "
            "print('kernels' in sys.modules)")
    proc = run_python(code, cwd=tmp_path, PYTHONPATH=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [os.path.join(ROOT, "kernels", "cpu.py"), "False"]


NOTICE = "minigan: compiling the Numba CPU kernels"
COMPILE = ("import numpy as np; from minigan import backend; x = np.ones(5, np.float32); "
           "backend.kernel('leaky_relu', x)(x, 0.2); backend.kernel('leaky_relu', x)(x.astype(np.float64), 0.2)")


def test_one_line_when_kernels_really_compile_and_none_from_the_cache(tmp_path):
    cache = str(tmp_path / "numba-cache")   # a cold cache of its own
    cold = run_python(COMPILE, NUMBA_CACHE_DIR=cache)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count(NOTICE) == 1, cold.stderr      # two compilations, one line
    warm = run_python(COMPILE, NUMBA_CACHE_DIR=cache)
    assert warm.returncode == 0 and NOTICE not in warm.stderr, warm.stderr


def test_the_default_leaves_the_cores_other_processes_keep_busy(monkeypatch):
    from minigan import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    for busy, want in ((0, 4), (1, 3), (3, 1), (9, 1), (None, 4)):
        monkeypatch.setattr(threads, "others_running", lambda b=busy: b)
        assert threads.default_threads() == want
    assert threads.others_running() is None or threads.others_running() >= 0


def test_the_default_splits_the_cores_between_the_machines_mpi_ranks(monkeypatch):
    from minigan import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "others_running", lambda: 3)  # the other ranks: not a reason to shrink further
    for ranks, want in (("2", 2), ("3", 1), ("8", 1)):
        monkeypatch.setenv("MPI_LOCALNRANKS", ranks)
        assert threads.default_threads() == want
    monkeypatch.delenv("MPI_LOCALNRANKS")
    assert threads.default_threads() == 1


FREED_PAGES = """
import resource, numpy as np, minigan
from minigan import allocator
if {release}:
    allocator.release_freed_pages()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for size in (1, 4, 8):   # a step's arrays: MiB
    np.ones(size << 18, np.float32)
before = faults()
for _ in range(20):
    for size in (1, 4, 8):
        np.ones(size << 18, np.float32)
print(faults() - before)
"""


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"), reason="glibc's mallopt")
def test_import_minigan_lets_a_steps_arrays_reuse_freed_pages():
    """Arrays of a few MiB allocated and freed again and again (a training step's) page-fault
    only the first time after import minigan; glibc's defaults fault every time."""
    kept = run_python(FREED_PAGES.format(release=False))
    released = run_python(FREED_PAGES.format(release=True))
    assert kept.returncode == 0 and released.returncode == 0, kept.stderr + released.stderr
    # 20 rounds of 13 MiB: 66,000 faults when every block is fresh 4-KiB pages (fewer with
    # transparent huge pages: 25,700 measured), none when the pages are kept
    assert int(kept.stdout) < 2000 and int(released.stdout) > 5000, (kept.stdout, released.stdout)
