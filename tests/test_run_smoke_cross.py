"""Both frameworks in one run on the ``smoke`` suite: the report's framework-agreement table is filled."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import run
from harness.store import collect

pytestmark = pytest.mark.cross  # collected only where torch and Keras are installed (tests/conftest.py)


def test_smoke_suite_both_frameworks_and_agreement_table(tmp_path: Path, monkeypatch, capsys) -> None:
    for fw in ("TORCH", "KERAS"):
        monkeypatch.delenv(f"DRT_TRAINER_{fw}", raising=False)
    target = run.suite_domains("smoke", None)[0]
    args = ["--suite", "smoke", "--frameworks", "torch,keras", "--methods", "source_only", "--variants", "sr",
            "--targets", target, "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu",
            "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--no-plots", "--quiet"]
    assert run.main(args) == 0, capsys.readouterr()
    recs = collect(tmp_path / "runs")
    assert sorted(r["framework"] for r in recs) == ["keras", "torch"]
    assert all(r["status"] == "done" for r in recs)
    readme = (tmp_path / "results" / "smoke" / "README.md").read_text()
    assert "Framework agreement: torch / Keras mean target accuracy (%) per cell" in readme
