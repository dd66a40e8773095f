"""Job identity, job directories and running one job (with the fake trainer; framework-neutral)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_jobs_fake import fake_env, read_calls

from harness import jobs
from harness.profiles import get_profile

TRAINER = "test_jobs_fake:run_job"


def make_spec(**changes) -> dict:
    kw = dict(framework="torch", suite="smoke", target="plain", method="dann", variant="sr", seed=0,
              profile=get_profile("smoke", "quick", epochs=3).job_fields(), device="cpu",
              hparams={"lr": 0.01, "num_k": 4})
    kw.update(changes)
    return jobs.build_spec(**kw)


def test_job_id_is_a_stable_hash_of_the_sorted_spec() -> None:
    spec = make_spec()
    shuffled = dict(reversed(list(spec.items())))
    assert jobs.job_id(spec) == jobs.job_id(shuffled)
    assert len(jobs.job_id(spec)) == 16
    import hashlib

    assert jobs.job_id(spec) == hashlib.sha256(jobs.canonical_json(spec).encode()).hexdigest()[:16]
    assert jobs.canonical_json(spec) == json.dumps(spec, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(
    "change", [{"seed": 1}, {"variant": "static"}, {"hparams": {"lr": 0.02, "num_k": 4}}, {"device": "cuda"},
               {"target": "colour"}, {"root": "/data"}],
)
def test_job_id_changes_with_every_field(change: dict) -> None:
    assert jobs.job_id(make_spec()) != jobs.job_id(make_spec(**change))


def test_job_dir_is_readable_and_unique(tmp_path: Path) -> None:
    spec = make_spec()
    d = jobs.job_dir(tmp_path, spec)
    assert d.parent == tmp_path / "smoke"
    assert d.name == f"torch_dann_sr_plain_s0_{jobs.job_id(spec)[:10]}"


def test_spec_with_nan_is_rejected() -> None:
    with pytest.raises(ValueError):
        make_spec(hparams={"lr": math.nan})


def test_metrics_file_replaces_rerun_epochs_and_skips_garbage(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    for ep in (1, 2, 3):
        jobs.append_metrics(path, {"epoch": ep, "loss": 1.0 / ep})
    with open(path, "a") as fh:
        fh.write('{"epoch": 4, "lo')  # a torn line, as after a kill during a plain append
    assert [r["epoch"] for r in jobs.read_metrics(path)] == [1, 2, 3]
    jobs.append_metrics(path, {"epoch": 3, "loss": 0.25})  # epoch 3 re-run after a resume
    recs = jobs.read_metrics(path)
    assert [r["epoch"] for r in recs] == [1, 2, 3] and recs[-1]["loss"] == 0.25
    assert path.read_text().endswith("\n") and '"lo' not in path.read_text().splitlines()[-1][-4:]
    jobs.append_metrics(path, {"epoch": 4, "loss": math.inf})
    assert jobs.read_metrics(path)[-1]["loss"] is None  # strict JSON on disk


def test_run_task_writes_the_job_dir_and_skips_when_done(tmp_path: Path, monkeypatch) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    spec = make_spec()
    jd = jobs.job_dir(tmp_path / "runs", spec)
    res = jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))
    assert res["status"] == "done"
    p = jobs.JobPaths(jd)
    assert json.loads(p.spec.read_text()) == spec
    result = json.loads(p.result.read_text())
    assert result["status"] == "done" and result["job_id"] == jobs.job_id(spec)
    assert [r["epoch"] for r in jobs.read_metrics(p.metrics)] == [1, 2, 3]
    assert result["target_acc"] == pytest.approx(result["final"]["target_acc"])
    assert result["oracle_epoch"] == 3 and result["epochs_done"] == 3
    for key in ("device", "framework", "seed", "wall_time_s", "provenance", "started", "finished"):
        assert key in result
    assert {"python", "numpy"} <= set(result["provenance"]["versions"])
    assert "commit" in result["provenance"]["git"] and result["provenance"]["hardware"]
    assert "fake trainer:" in p.log.read_text()  # the trainer's prints go to the job's log
    # a finished job keeps its trained networks, not its resumable checkpoint (unless asked to)
    assert not p.checkpoint.exists() and p.coefficients.exists() and p.weights.exists()
    assert "removed checkpoint/" in p.log.read_text()
    assert result["artifacts"] == {"coefficients": "coefficients.npz", "weights": "model.safetensors"}
    n_calls = len(read_calls(calls))
    again = jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))
    assert again["status"] == "skipped" and len(read_calls(calls)) == n_calls


def test_keep_checkpoints_keeps_a_finished_jobs_checkpoint(tmp_path: Path, monkeypatch) -> None:
    fake_env(monkeypatch, tmp_path)
    spec = make_spec()
    jd = jobs.job_dir(tmp_path / "runs", spec)
    assert jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER, keep_checkpoints=True))["status"] == "done"
    assert (jobs.JobPaths(jd).checkpoint / "state.json").exists()


@pytest.mark.parametrize("env,needle", [("DRT_FAKE_FAIL", "RuntimeError: fake failure"),
                                        ("DRT_FAKE_NAN", "non-finite value(s) in epoch record: loss")])
def test_failed_job_is_recorded_with_error_and_traceback(tmp_path: Path, monkeypatch, env: str,
                                                          needle: str) -> None:
    fake_env(monkeypatch, tmp_path)
    monkeypatch.setenv(env, "dann:sr")
    spec = make_spec()
    jd = jobs.job_dir(tmp_path / "runs", spec)
    res = jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))
    assert res["status"] == "failed" and needle in res["error"]
    result = json.loads((jd / "result.json").read_text())
    assert result["status"] == "failed" and needle in result["error"]
    assert "Traceback" in result["traceback"]
    assert "FAILED" in (jd / "log.txt").read_text()
    assert jobs.job_state(jd) == "failed"
    if env == "DRT_FAKE_NAN":  # failed after epoch 1 was checkpointed: the checkpoint stays for a re-run
        assert (jd / "checkpoint" / "state.json").exists()
    # a failed job is re-run by default (the bug may be fixed) and then succeeds
    monkeypatch.delenv(env)
    assert jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER, retry_failed=False))["status"] == "skipped"
    assert jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))["status"] == "done"


def test_interrupted_job_resumes_from_its_checkpoint(tmp_path: Path, monkeypatch) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    spec = make_spec()
    jd = jobs.job_dir(tmp_path / "runs", spec)
    p = jobs.JobPaths(jd)
    # the state a kill after epoch 2 leaves: spec, two epoch records, a checkpoint, no result
    jobs.atomic_write_json(p.spec, spec)
    for ep in (1, 2):
        jobs.append_metrics(p.metrics, {"epoch": ep, "loss": 1.0, "target_acc": 0.5, "source_acc": 0.8})
    p.checkpoint.mkdir(parents=True)
    (p.checkpoint / "state.json").write_text(json.dumps({"epoch": 2}))
    assert jobs.job_state(jd) == "partial"
    res = jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))
    assert res["status"] == "done" and res["resumed_from_epoch"] == 2
    assert read_calls(calls) == [(jd.name, 3)]  # only the missing epoch was trained
    assert [r["epoch"] for r in jobs.read_metrics(p.metrics)] == [1, 2, 3]


def test_a_job_held_by_another_process_is_not_run_twice(tmp_path: Path, monkeypatch) -> None:
    fake_env(monkeypatch, tmp_path)
    spec = make_spec()
    jd = jobs.job_dir(tmp_path / "runs", spec)
    with jobs.job_lock(jd) as got:
        assert got
        assert jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))["status"] == "busy"
    assert jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))["status"] == "done"


def test_a_dir_holding_another_spec_is_refused(tmp_path: Path, monkeypatch) -> None:
    fake_env(monkeypatch, tmp_path)
    spec = make_spec()
    jd = jobs.job_dir(tmp_path / "runs", spec)
    jobs.atomic_write_json(jd / "spec.json", make_spec(seed=7))
    res = jobs.run_task(jobs.JobTask(spec, str(jd), TRAINER))
    assert res["status"] == "failed" and "another spec" in res["error"]


def test_summarize_takes_last_epoch_and_labels_the_oracle() -> None:
    hist = [{"epoch": 1, "target_acc": 0.5}, {"epoch": 2, "target_acc": 0.7}, {"epoch": 3, "target_acc": 0.6}]
    s = jobs.summarize({"target_acc": 0.6, "source_acc": 0.9, "epoch": 3}, hist)
    assert s == {"target_acc": 0.6, "source_acc": 0.9, "epochs_done": 3, "oracle_target_acc": 0.7,
                 "oracle_epoch": 2}
