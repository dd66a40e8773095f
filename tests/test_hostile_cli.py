"""Hostile inputs to the run matrix and the CLIs (issue 15): per-job I/O faults fail that job only, outputs
are validated before anything trains, seed/worker/matrix bounds, unreadable weight files, the job log stream.

Framework-neutral: jobs use the fake trainer of ``test_jobs_fake`` (no training framework needed). Tests run
as root, where permissions do not deny writes, so an "unwritable" path is a FILE standing where a folder (or
a folder where a file) is needed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_jobs_fake import fake_env, read_calls

from harness import jobs, launchers, run
from harness.drivers import convert as weights_cli
from harness.frameworks import available
from harness.profiles import get_profile
from harness.weights import neutral

REPO = Path(__file__).resolve().parent.parent
TRAINER = "test_jobs_fake:run_job"


def base_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--suite",
        "smoke",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "results"),
        "--no-plots",
        "--launcher",
        "local",
        "--methods",
        "source_only",
        "--variants",
        "static",
        *extra,
    ]


def one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, err)


def matrix(tmp_path: Path, *extra: str) -> list[dict]:
    """The jobs of ``base_args(*extra)`` as ``--dry-run --json`` lists them."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert run.main(base_args(tmp_path, *extra, "--dry-run", "--json")) == 0
    return json.loads(buf.getvalue())["jobs"]


# ------------------------------------------------------------------------- 1. one job's I/O fault, one job
def test_an_unwritable_job_dir_fails_that_job_and_the_matrix_goes_on(tmp_path, monkeypatch, capsys) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    rows = matrix(tmp_path)
    assert len(rows) == len(run.suite_domains("smoke", None)) >= 3
    blocked = Path(rows[1]["dir"])
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the job directory goes\n")
    assert run.main(base_args(tmp_path)) == 1  # some job failed; no traceback, no abort
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    trained = {name for name, _ in read_calls(calls)}
    assert trained == {Path(r["dir"]).name for r in rows} - {blocked.name}  # every other job trained
    assert f"1 of {len(rows)} jobs failed" in cap.out
    line = next(ln for ln in cap.out.splitlines() if ln.strip().startswith("FAILED"))
    assert blocked.name in line and "cannot create the job directory" in line and "not a folder" in line
    assert blocked.read_text().startswith("a file")  # left as it was
    # --json: the failed job is in the summaries and the records
    capsys.readouterr()
    assert run.main(base_args(tmp_path, "--json")) == 1
    data = json.loads(capsys.readouterr().out)
    failed = [r for r in data["records"] if r["status"] == "failed"]
    assert [r["name"] for r in failed] == [blocked.name] and "not a folder" in failed[0]["error"]
    assert [j["status"] for j in data["jobs"]] == ["failed"]  # the done ones were skipped, not re-run


@pytest.mark.parametrize(
    "occupied,needle",
    [
        ("log.txt", "cannot open the job log"),
        ("spec.json", "cannot write"),
        (".lock", "cannot create the lock file"),
        ("metrics.jsonl", "cannot write"),
        ("result.json", "cannot write"),
    ],
)
def test_a_job_file_that_cannot_be_written_fails_that_job(tmp_path, monkeypatch, occupied, needle) -> None:
    """A folder where a job's file goes (as root, the one way to make a write fail): that job fails with a
    message naming the file, the next job runs."""
    fake_env(monkeypatch, tmp_path)
    prof = get_profile("smoke", "quick", epochs=2).job_fields()
    specs = [
        jobs.build_spec(
            framework="torch",
            suite="smoke",
            target=t,
            method="dann",
            variant="static",
            seed=0,
            profile=prof,
            device="cpu",
            hparams={"lr": 0.01},
        )
        for t in ("a", "b")
    ]
    dirs = [jobs.job_dir(tmp_path / "runs", s) for s in specs]
    (dirs[0] / occupied).mkdir(parents=True)
    seen: list[dict] = []
    out = launchers.LocalLauncher().run(
        [jobs.JobTask(s, str(d), TRAINER) for s, d in zip(specs, dirs)], seen.append
    )
    assert [r["status"] for r in out] == ["failed", "done"] and seen == out
    assert needle in out[0]["error"] and str(dirs[0] / occupied) in out[0]["error"]
    assert out[0]["error"].startswith("JobIOError: ")
    if occupied != "result.json":  # when possible the failure is in the job's own record too
        rec = jobs.read_json(dirs[0] / "result.json")
        assert rec is not None and rec["status"] == "failed" and needle in rec["error"]
        assert jobs.job_state(dirs[0]) == "failed"
    else:
        assert jobs.job_state(dirs[0]) != "done"  # never recorded as finished
        assert (dirs[0] / "checkpoint").exists()  # kept: a re-run resumes


def test_an_unforeseen_error_in_the_runner_fails_that_job_only(tmp_path, monkeypatch) -> None:
    fake_env(monkeypatch, tmp_path)
    real = jobs.run_task

    def flaky(task):
        if task.spec["target"] == "a":
            raise RuntimeError("boom")
        return real(task)

    monkeypatch.setattr(launchers, "run_task", flaky)
    prof = get_profile("smoke", "quick", epochs=1).job_fields()
    specs = [
        jobs.build_spec(
            framework="torch",
            suite="smoke",
            target=t,
            method="dann",
            variant="static",
            seed=0,
            profile=prof,
            device="cpu",
            hparams={},
        )
        for t in ("a", "b")
    ]
    tasks = [jobs.JobTask(s, str(jobs.job_dir(tmp_path / "runs", s)), TRAINER) for s in specs]
    out = launchers.LocalLauncher().run(tasks, lambda r: None)
    assert [r["status"] for r in out] == ["failed", "done"]
    assert "RuntimeError: boom" in out[0]["error"] and out[0]["job_id"] == jobs.job_id(specs[0])


# ------------------------------------------------------------------------- 2. outputs checked before training
def test_out_naming_a_file_exits_2_before_anything_runs(tmp_path, monkeypatch, capsys) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    argv = base_args(tmp_path)
    argv[argv.index("--out") + 1] = str(f)
    assert run.main(argv) == 2
    one_error_line(capsys.readouterr().err, "run.out", str(f), "is a file", "writable folder")
    assert not calls.exists()
    # a folder below a file, and <out>/<suite> taken by a file
    argv[argv.index("--out") + 1] = str(f / "runs")
    assert run.main(argv) == 2
    one_error_line(capsys.readouterr().err, "run.out", "is a file")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "smoke").write_text("x")
    assert run.main(base_args(tmp_path)) == 2
    one_error_line(capsys.readouterr().err, "run.out", str(tmp_path / "runs" / "smoke"), "is a file")
    assert not calls.exists()


def test_unwritable_results_exit_2_before_anything_trains(tmp_path, monkeypatch, capsys) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    f = tmp_path / "results-file"
    f.write_text("x")
    argv = base_args(tmp_path)
    argv[argv.index("--results") + 1] = str(f / "sub")
    t0 = time.monotonic()
    assert run.main(argv) == 2
    one_error_line(capsys.readouterr().err, "run.results", str(f), "is a file")
    assert not calls.exists() and not (tmp_path / "runs").exists()  # nothing trained, nothing created
    assert time.monotonic() - t0 < 30
    # --no-report: --results is not used, so not checked
    assert run.main([*argv, "--no-report", "--quiet"]) == 0
    assert calls.exists()


def test_a_report_that_cannot_be_written_after_the_jobs_is_one_error_line(
    tmp_path, monkeypatch, capsys
) -> None:
    fake_env(monkeypatch, tmp_path)
    (tmp_path / "results" / "smoke" / "README.md").mkdir(parents=True)  # passes the folder check
    assert run.main(base_args(tmp_path, "--quiet")) == 2
    err = capsys.readouterr().err
    one_error_line(err, "run.results", "cannot write the report", "python -m harness.report")
    assert all(r["status"] == "done" for r in jobs_records(tmp_path))


def jobs_records(tmp_path: Path) -> list[dict]:
    from harness.store import collect

    return collect(tmp_path / "runs")


# ------------------------------------------------------------------------- 3. CLI edges
@pytest.mark.parametrize(
    "argv,needles",
    [
        (["--seeds", "3-1"], ["run.seeds = '3-1'", "LO <= HI"]),
        (["--seeds", "0-100000000"], ["run.seeds", f"at most {run.MAX_SEEDS} seeds"]),
        (["--seeds", "0-4,0-9999"], ["run.seeds", f"at most {run.MAX_SEEDS} seeds"]),
        (["--seeds", str(2**31)], ["run.seeds", "below 2**31"]),
        (["--seeds", "-1"], ["run.seeds", "non-negative"]),
        (["--seeds", ""], ["run.seeds", "empty"]),
        (["--seeds", ","], ["run.seeds", "without empty items"]),
        (["--seeds", "0,,1"], ["run.seeds", "without empty items"]),
        (["--seeds", "1-"], ["run.seeds = '1-'", "integers"]),
        (["--seeds", "9" * 5000], ["run.seeds", "integers"]),
        (["--workers", "0"], ["run.workers = 0", "positive integer"]),
        (["--workers", "-1"], ["run.workers = -1", "positive integer"]),
        (
            ["--seeds", "0-9999", "--methods", "all", "--variants", "all"],
            ["matrix has", f"at most {run.MAX_JOBS}"],
        ),
    ],
)
@pytest.mark.parametrize("dry", [True, False])
def test_bad_matrix_arguments_exit_2_quickly(tmp_path, monkeypatch, capsys, argv, needles, dry) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    t0 = time.monotonic()
    assert run.main(base_args(tmp_path, *argv, *(["--dry-run"] if dry else []))) == 2
    assert time.monotonic() - t0 < 10  # bounds are checked arithmetically, before any list is built
    one_error_line(capsys.readouterr().err, *needles)
    assert not calls.exists() and not (tmp_path / "runs").exists()


def test_seed_parsing_keeps_its_forms() -> None:
    assert run.parse_seeds(None) == [0]
    assert run.parse_seeds("0") == [0]
    assert run.parse_seeds("0-2, 5 ,1") == [0, 1, 2, 5]
    assert run.parse_seeds("7-7") == [7]
    assert len(run.parse_seeds(f"0-{run.MAX_SEEDS - 1}")) == run.MAX_SEEDS
    assert run.parse_seeds(str(2**31 - 1)) == [2**31 - 1]


def test_parallel_launcher_refuses_non_positive_workers() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive integer"):
            launchers.ParallelLauncher(bad)
    assert launchers.ParallelLauncher(None).workers >= 1


# ------------------------------------------------------------------------- 4. weights CLI on bad files
def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = {"head.weight": np.ones((8, 8), np.float32)}
    files: dict[str, Path] = {}
    for suffix in (".safetensors", ".npz", ".pth"):
        (tmp_path / f"empty{suffix}").write_bytes(b"")
        (tmp_path / f"garbage{suffix}").write_bytes(bytes(range(256)) * 3)
        whole = tmp_path / f"whole{suffix}"
        if suffix == ".pth" and available("torch"):
            import torch

            torch.save({k: torch.from_numpy(v) for k, v in good.items()}, whole)
        elif suffix == ".pth":
            whole.write_bytes(b"PK\x03\x04" + b"\x00" * 400)  # the start of a zip-format torch file
        else:
            neutral.save(whole, good, {"model_spec": "{}"})
        data = whole.read_bytes()
        (tmp_path / f"truncated{suffix}").write_bytes(data[: len(data) // 2])
        for kind in ("empty", "garbage", "truncated"):
            files[f"{kind}{suffix}"] = tmp_path / f"{kind}{suffix}"
    return files


BAD = [f"{k}{s}" for s in (".safetensors", ".npz", ".pth") for k in ("empty", "garbage", "truncated")]


@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_weights_cli_on_a_bad_file_exits_2_with_one_line(tmp_path, capsys, name, command) -> None:
    path = _bad_files(tmp_path)[name]
    if command == "inspect":
        argv = ["inspect", str(path)]
    elif path.suffix == ".pth":  # the spec from the flags: the file is read into a model
        to = "torch" if available("torch") else "keras"
        argv = [
            "convert",
            str(path),
            str(tmp_path / "out.safetensors"),
            "--to",
            to,
            "--arch",
            "digits_cnn",
            "--num-classes",
            "10",
        ]
    else:  # the spec from the file's metadata: read before any framework is needed
        argv = ["convert", str(path), str(tmp_path / "out.safetensors"), "--to", "torch"]
    assert weights_cli.main(argv) == 2
    err = capsys.readouterr().err
    if path.suffix == ".pth" and not available("torch"):
        one_error_line(err, "torch")  # torch is needed to read it at all
        return
    one_error_line(err, str(path), "cannot read as")
    if name.startswith("empty"):
        assert "empty (0 bytes)" in err
    assert not (tmp_path / "out.safetensors").exists()


def test_weights_cli_refuses_a_malicious_pth_in_one_line(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    import pickle

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil.write_bytes(pickle.dumps({"w": Payload()}))
    assert weights_cli.main(["inspect", str(evil)]) == 2
    one_error_line(capsys.readouterr().err, str(evil), "weights-only", "nothing in the file was run")
    assert not marker.exists()


def test_weights_cli_bad_spec_file_and_bad_metadata(tmp_path, capsys) -> None:
    src = tmp_path / "w.safetensors"
    neutral.save(src, {"head.weight": np.ones((2, 2), np.float32)}, {"model_spec": "{not json"})
    assert weights_cli.main(["convert", str(src), str(tmp_path / "o.safetensors"), "--to", "torch"]) == 2
    one_error_line(capsys.readouterr().err, str(src), "model_spec")
    assert (
        weights_cli.main(
            [
                "convert",
                str(src),
                str(tmp_path / "o.safetensors"),
                "--to",
                "torch",
                "--spec",
                str(tmp_path / "missing.json"),
            ]
        )
        == 2
    )
    one_error_line(capsys.readouterr().err, "--spec", "missing.json")


def test_weights_cli_subprocess_has_no_traceback(tmp_path) -> None:
    path = _bad_files(tmp_path)["truncated.safetensors"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.weights", "inspect", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    one_error_line(proc.stderr, str(path))


# ------------------------------------------------------------------------- 5. the job log stream
def test_the_job_log_stream_is_a_complete_text_stream(tmp_path) -> None:
    fallback = io.StringIO()
    with open(tmp_path / "log.txt", "a", encoding="utf-8") as log:
        tee = jobs._Tee(log, fallback)
        assert isinstance(tee, io.TextIOBase)
        assert tee.writable() and not tee.readable() and not tee.seekable() and not tee.isatty()
        assert isinstance(tee.encoding, str) and not tee.closed
        with pytest.raises(io.UnsupportedOperation):
            tee.fileno()
        assert tee.write("in the log\n") == len("in the log\n")
        print("printed", file=tee)
        tee.writelines(["a\n", "b\n"])
        tee.flush()
        tee.close()  # what absl's handler does at exit: the log stays open
        assert not tee.closed and not log.closed
        tee.write("still in the log\n")
    assert (tmp_path / "log.txt").read_text() == "in the log\nprinted\na\nb\nstill in the log\n"
    tee.write("after the job\n")  # the log is closed: to the stream it replaced
    tee.flush()
    tee.close()
    assert fallback.getvalue() == "after the job\n"
    jobs._Tee(io.StringIO()).close()  # no fallback: nothing breaks either
    orphan = jobs._Tee(log)
    assert orphan.write("dropped") == len("dropped")


_EXIT_SCRIPT = """
import contextlib, logging, sys
from harness.jobs import _Tee

class ClosingHandler(logging.StreamHandler):  # absl's PythonHandler.close, in short
    def close(self):
        self.flush()
        if self.stream not in (sys.stderr, sys.stdout) and not self.stream.isatty():
            self.stream.close()
        super().close()

with open(sys.argv[1], "a") as log, contextlib.redirect_stderr(_Tee(log, sys.stderr)):
    logging.getLogger("lib").addHandler(ClosingHandler(sys.stderr))  # created during the job: holds the tee
    logging.getLogger("lib").warning("during the job")
logging.getLogger("lib").warning("after the job")
"""


def test_no_traceback_at_exit_from_a_handler_holding_the_job_log_stream(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, str(tmp_path / "log.txt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert "after the job" in proc.stderr
    assert "during the job" in (tmp_path / "log.txt").read_text()
