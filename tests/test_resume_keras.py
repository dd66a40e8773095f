"""Exact resume and coefficient files, Keras trainer (see ``resume_check.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.keras
pytest.importorskip("keras")

from harness.frameworks import prepare_process  # noqa: E402

prepare_process()
from resume_check import CASES, check_resume  # noqa: E402

from impl_keras.train import run_job  # noqa: E402


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_resumed_job_equals_straight_run(tmp_path: Path, method: str, variant: str) -> None:
    check_resume(run_job, tmp_path, method, variant)
