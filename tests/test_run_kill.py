"""Killing ``python -m harness.run`` mid-run loses no finished job, leaves no corrupt file (fake trainer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_jobs_fake import fake_env, read_calls

from harness import jobs
from harness.store import collect

REPO = Path(__file__).resolve().parent.parent


def _all_files_parse(runs: Path) -> None:
    for path in runs.rglob("*.json"):
        json.loads(path.read_text())  # raises on a torn file
    for path in runs.rglob("metrics.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line)


def test_kill_and_rerun_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness.run", "--suite", "smoke", "--device", "cpu", "--out", str(runs),
           "--results", str(tmp_path / "results"), "--methods", "source_only,dann", "--epochs", "3",
           "--quiet", "--no-plots"]
    env = dict(os.environ, DRT_FAKE_SLEEP="0.6")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        # wait until one job is finished and a second one has trained at least one epoch
        while time.time() < deadline:
            done = [p for p in runs.rglob("result.json")]
            partial = [p for p in runs.rglob("metrics.jsonl") if not (p.parent / "result.json").exists()
                       and jobs.read_metrics(p)]
            if done and partial:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            raise AssertionError("the run did not get going in time")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _all_files_parse(runs)
    finished_before = {r["name"] for r in collect(runs) if r["status"] == "done"}
    interrupted = {r["name"] for r in collect(runs) if r["status"] == "incomplete"}
    mid_job = {r["name"] for r in collect(runs) if r["status"] == "incomplete" and r["history"]}
    assert finished_before and mid_job
    calls_before = read_calls(calls)

    rerun = subprocess.run(cmd, env=dict(os.environ), cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    _all_files_parse(runs)
    recs = collect(runs)
    assert all(r["status"] == "done" for r in recs)
    new_calls = read_calls(calls)[len(calls_before):]
    assert not {name for name, _ in new_calls} & finished_before  # finished jobs were not trained again
    for name in interrupted:  # interrupted jobs resumed: no epoch trained twice
        epochs = [ep for n, ep in read_calls(calls) if n == name]
        assert len(epochs) == len(set(epochs)), (name, epochs)
        rec = next(r for r in recs if r["name"] == name)
        if name in mid_job:  # killed after an epoch: resumed from that epoch's checkpoint
            assert rec["resumed_from_epoch"] is not None
        assert [h["epoch"] for h in rec["history"]] == [1, 2, 3]
