"""Shared test settings: hypothesis runs derandomized (the same examples on every run, so
CI is reproducible) with no per-example deadline (first calls compile/allocate)."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", derandomize=True, deadline=None, max_examples=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MINIGAN_HYPOTHESIS_PROFILE", "default"))
