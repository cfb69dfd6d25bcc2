"""Shared test settings: hypothesis runs derandomized (the same examples on every run, so
CI is reproducible) with no per-example deadline (first calls compile/allocate)."""
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

# The tests sit in one folder per area (tests/nn, tests/losses ...); the helpers they share
# (strategies.py, second_order.py, mpi_cases.py ...) stay here and import as top-level modules.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

settings.register_profile(
    "default", derandomize=True, deadline=None, max_examples=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow])
# benchmarks/mutation.sh: the default examples without shrinking (a mutant that fails is killed
# at once; shrinking its counterexample would only run into mutmut's time limit)
settings.register_profile("mutation", parent=settings.get_profile("default"),
                          phases=(Phase.explicit, Phase.reuse, Phase.generate))
settings.load_profile(os.environ.get("MINIGAN_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _numba_kernels_after_each_test():
    """The kernel switch is process-wide and a Trainer sets it from its config (``reference``):
    each test leaves the next one the default, the Numba kernels, whatever it built."""
    yield
    from minigan import backend

    backend.use_reference(False)
