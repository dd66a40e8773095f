"""Test configuration: import order (torch before TensorFlow) and hypothesis profiles."""

from __future__ import annotations

import os

from harness.frameworks import prepare_process

prepare_process()  # must run before anything imports TensorFlow (segfault otherwise)

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
