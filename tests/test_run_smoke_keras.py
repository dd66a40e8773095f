"""End to end with the real Keras 3 trainer on the ``smoke`` suite: run, re-run (skips), report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import run
from harness.store import collect

pytestmark = pytest.mark.keras  # collected only where Keras is installed (tests/conftest.py)


def test_smoke_suite_end_to_end_keras(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DRT_TRAINER_KERAS", raising=False)
    target = run.suite_domains("smoke", None)[0]
    args = ["--suite", "smoke", "--frameworks", "keras", "--methods", "source_only",
            "--variants", "static,sr", "--targets", target, "--epochs", "1", "--steps-per-epoch", "2",
            "--device", "cpu", "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
            "--no-plots"]
    assert run.main(args) == 0, capsys.readouterr()
    recs = collect(tmp_path / "runs")
    assert len(recs) == 2 and all(r["status"] == "done" for r in recs)
    for r in recs:
        assert 0.0 <= r["target_acc"] <= 1.0 and 0.0 <= r["source_acc"] <= 1.0
        assert r["provenance"]["versions"]["keras"] and r["device"] == "cpu"
        assert r["history"][0]["epoch"] == 1
        # finished: the trained networks stay, the resumable checkpoint is gone (no --keep-checkpoints)
        assert (Path(r["job_dir"]) / "model.safetensors").is_file()
        assert not (Path(r["job_dir"]) / "checkpoint").exists()
    readme = (tmp_path / "results" / "smoke" / "README.md").read_text()
    assert "### keras: target accuracy (%), static / DRT (sr)" in readme
    capsys.readouterr()
    assert run.main(args) == 0
    assert "2 already done (skipped)" in capsys.readouterr().out
    json.loads((tmp_path / "results" / "smoke" / "records.jsonl").read_text().splitlines()[0])
