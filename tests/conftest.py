"""Hypothesis profiles and shared fixtures.

Profiles (select with HYPOTHESIS_PROFILE): ``dev`` for quick local runs, ``ci``
(no deadline, derandomised: the same examples on every run) for CI, and ``nojit``
for the pure-Python run of the tox ``nojit`` env, where every kernel is
interpreted and sizes must stay small.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nojit", max_examples=4, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

NOJIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
