"""Hypothesis profiles for the fuzz targets.

`ci` (the default) is deterministic and bounded: every target runs a fixed set of examples, the
whole directory in well under 30 s on two cores. `long` is for a fuzzing session:

    HYPOTHESIS_PROFILE=long python -m pytest tests/fuzz    # ~100x the examples, random seeds
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=150, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "long", max_examples=15_000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
