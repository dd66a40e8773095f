"""Test configuration: import order (torch before TensorFlow), framework-gated collection, hypothesis
profiles.

Each test module that needs a framework declares it with a module-level ``pytestmark = pytest.mark.torch``,
``keras`` or ``cross`` (both). Modules whose framework is not installed in this environment are not
collected at all (they would fail at import). The tox env ``torch`` (PyTorch and Keras installed) runs the
torch, framework-neutral and cross tests; ``keras`` (no torch) runs the Keras tests; every selected test
runs rather than skips. That the neutral ``harness`` package imports no framework is checked in
``tests/test_imports.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.frameworks import available, prepare_process

prepare_process()  # must run before anything imports TensorFlow (segfault otherwise)

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

_MARK = re.compile(r"^pytestmark\s*=\s*pytest\.mark\.(torch|keras|cross)\b", re.MULTILINE)
_NEEDS = {"torch": ("torch",), "keras": ("keras",), "cross": ("torch", "keras")}


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:  # noqa: ANN001
    """Skip collecting a test module whose declared framework(s) are not installed here."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    m = _MARK.search(collection_path.read_text(encoding="utf-8"))
    if m and not all(available(fw) for fw in _NEEDS[m.group(1)]):
        return True
    return None
