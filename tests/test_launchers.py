"""Launchers with the fake trainer: a local process pool, and SLURM through submitit's LocalExecutor."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_jobs_fake import fake_env, read_calls

from harness import launchers, run
from harness.store import collect


def args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--suite", "smoke", "--device", "cpu", "--out", str(tmp_path / "runs"), "--results",
            str(tmp_path / "results"), "--methods", "source_only", "--quiet", "--no-plots", *extra]


def test_parallel_launcher_runs_every_job_in_worker_processes(tmp_path: Path, monkeypatch) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    monkeypatch.setenv("DRT_FAKE_FAIL", "source_only:sr")
    assert run.main(args(tmp_path, "--launcher", "parallel", "--workers", "2")) == 1
    recs = collect(tmp_path / "runs")
    n = 2 * len(run.suite_domains("smoke", None))
    assert len(recs) == n
    assert {r["status"] for r in recs if r["variant"] == "static"} == {"done"}
    assert {r["status"] for r in recs if r["variant"] == "sr"} == {"failed"}
    assert {r["provenance"]["hostname"] for r in recs}
    assert len({name for name, _ in read_calls(calls)}) == n // 2  # failing jobs fail before writing calls
    monkeypatch.delenv("DRT_FAKE_FAIL")
    assert run.main(args(tmp_path, "--launcher", "parallel", "--workers", "2")) == 0  # failed ones re-run


def test_parallel_launcher_sizes_workers_and_threads() -> None:
    pl = launchers.ParallelLauncher(2)
    assert pl.workers == 2 and pl.threads >= 1 and pl.gpus == []


def test_slurm_path_through_submitit_local_executor(tmp_path: Path, monkeypatch) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    targets = run.suite_domains("smoke", None)[:2]
    extra = ("--launcher", "slurm", "--submitit-cluster", "local", "--targets", ",".join(targets),
             "--slurm-time", "5")
    assert run.main(args(tmp_path, *extra)) == 0
    recs = collect(tmp_path / "runs")
    assert len(recs) == 4 and all(r["status"] == "done" for r in recs)
    sub = tmp_path / "runs" / ".submitit"
    assert sub.is_dir() and any(sub.rglob("*_submitted.pkl"))  # really went through submitit
    n_calls = len(read_calls(calls))
    assert run.main(args(tmp_path, *extra)) == 0  # and a re-run skips them without submitting anything
    assert len(read_calls(calls)) == n_calls


def test_interrupting_a_parallel_run_stops_its_workers(tmp_path: Path, monkeypatch) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    fake_env(monkeypatch, tmp_path)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness.run", *args(tmp_path, "--launcher", "parallel", "--workers", "2",
                                                      "--epochs", "200")]
    # SIGINT back to its default in the child: a test session started in the background by a non-interactive
    # shell inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler (seen in CI).
    # PYTHONFAULTHANDLER: a SIGABRT makes a hung run print every thread's stack (see the failure message).
    def default_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(cmd, env=dict(os.environ, DRT_FAKE_SLEEP="0.5", PYTHONFAULTHANDLER="1"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=default_sigint)
    try:
        t0 = time.time()
        while time.time() < t0 + 120 and len(list(runs.rglob("metrics.jsonl"))) < 2:
            time.sleep(0.1)
        started = time.time() - t0
        os.kill(proc.pid, signal.SIGINT)  # the parent only, as `kill -INT <pid>` does
        try:
            rc = proc.wait(timeout=40)  # without stopping the workers it would wait ~100 s
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            sig = [ln for ln in status if ln.startswith(("SigBlk", "SigIgn"))]
            os.kill(proc.pid, signal.SIGABRT)
            time.sleep(3.0)
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            pytest.fail(f"no exit 40 s after SIGINT (jobs started after {started:.1f} s); {sig}; stderr:\n"
                        + err.decode(errors="replace")[-8000:])
        assert rc == 130, proc.communicate()[1].decode(errors="replace")[-4000:]
        sizes = {p: p.stat().st_size for p in runs.rglob("metrics.jsonl")}
        time.sleep(2.0)
        assert {p: p.stat().st_size for p in runs.rglob("metrics.jsonl")} == sizes  # nobody trains on
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
