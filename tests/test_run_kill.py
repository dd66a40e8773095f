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


def _workers_of(pid: int) -> list[int]:
    """Pids of the spawned pool workers whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_to_the_runner_stops_its_workers(tmp_path: Path, monkeypatch) -> None:
    """A SIGTERM to the runner alone (as a job scheduler or a session's end sends it) must stop the jobs its
    pool workers are training, not leave them running as orphans until their job ends."""
    fake_env(monkeypatch, tmp_path)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness.run", "--suite", "smoke", "--device", "cpu", "--out", str(runs),
           "--results", str(tmp_path / "results"), "--methods", "source_only,dann", "--epochs", "200",
           "--launcher", "parallel", "--workers", "2", "--quiet", "--no-plots"]  # fmt: skip
    env = dict(os.environ, DRT_FAKE_SLEEP="0.5")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not [p for p in runs.rglob("metrics.jsonl") if jobs.read_metrics(p)]:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        workers = _workers_of(proc.pid)
        assert len(workers) == 2, workers
        proc.send_signal(signal.SIGTERM)  # the runner only, not its process group
        proc.wait(timeout=60)
        assert proc.returncode != 0
        end = time.time() + 20
        while time.time() < end and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "pool workers outlived the runner"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _all_files_parse(runs)
