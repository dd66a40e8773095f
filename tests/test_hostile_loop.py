"""Hostile inputs to the training loop (issue 15): job directories never run code, checkpoints that cannot be
read restart (or fail, by flag) with a message naming the file, epoch records are durable before the
checkpoint advances, and a restarted job says so and removes its stale artifacts.

Each test runs a real PyTorch job of the smoke suite (digit CNN at width 0.25, 2 steps an epoch) through
:func:`harness.jobs.run_task`, as ``python -m harness.run`` does.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch")

from harness import checkpoint, jobs  # noqa: E402
from harness import hparams as H  # noqa: E402
from harness.profiles import get_profile  # noqa: E402

TRAINER = "impl_torch.train:run_job"


def _spec(epochs: int = 2, variant: str = "sr") -> dict:
    prof = get_profile("smoke", "quick", epochs=epochs, steps_per_epoch=2).job_fields()
    return jobs.build_spec(
        framework="torch", suite="smoke", target="plain", method="source_only", variant=variant, seed=0,
        profile=prof, device="cpu", hparams=H.resolve("source_only", "smoke", {"optimizer": "adam"}),
    )  # fmt: skip


def _run(spec: dict, out: Path) -> tuple[dict, Path]:
    d = jobs.job_dir(out, spec)
    return jobs.run_task(jobs.JobTask(spec, str(d), TRAINER, keep_checkpoints=True)), d


class _Marker:
    """Unpickling this creates the marker file: the proof that a pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("name", checkpoint.LEGACY_FILENAMES)
def test_a_malicious_pickle_in_a_job_dir_never_runs(tmp_path: Path, name: str) -> None:
    spec = _spec(epochs=1)
    d = jobs.job_dir(tmp_path / "runs", spec)
    marker = tmp_path / "PWNED"
    (d / "checkpoint").mkdir(parents=True)
    (d / "checkpoint" / name).write_bytes(pickle.dumps(_Marker(marker)))
    # the same payload where a safetensors checkpoint is expected
    checkpoint.path_in(d).write_bytes(pickle.dumps(_Marker(marker)))
    jobs.atomic_write_json(d / "spec.json", spec)
    rec, _ = _run(spec, tmp_path / "runs")
    assert rec["status"] == "done"
    assert not marker.exists()
    log = (d / "log.txt").read_text()
    assert str(checkpoint.path_in(d)) in log and "restarts from scratch" in log


def test_a_corrupt_checkpoint_restarts_with_a_message_or_fails_by_flag(tmp_path: Path) -> None:
    spec = _spec(epochs=1)
    d = jobs.job_dir(tmp_path / "runs", spec)
    checkpoint.path_in(d).parent.mkdir(parents=True)
    checkpoint.path_in(d).write_bytes(b"\x00" * 10)
    rec, _ = _run(spec, tmp_path / "runs")
    assert rec["status"] == "done" and rec["resumed_from_epoch"] is None
    # fail instead of restarting: the message names the file and the remedy
    failing = dict(spec, on_bad_checkpoint="fail")
    d2 = jobs.job_dir(tmp_path / "runs2", failing)
    checkpoint.path_in(d2).parent.mkdir(parents=True)
    checkpoint.path_in(d2).write_bytes(b"garbage")
    rec2, _ = _run(failing, tmp_path / "runs2")
    assert rec2["status"] == "failed"
    assert str(checkpoint.path_in(d2)) in rec2["error"] and "delete" in rec2["error"]


def test_epoch_record_is_durable_before_the_checkpoint_advances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(epochs=2)
    calls = {"n": 0}
    real_save = checkpoint.save

    def flaky_save(path: Path, arrays: dict, meta: dict) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the checkpoint of epoch 2 fails to be written
            raise OSError("disk full (simulated)")
        real_save(path, arrays, meta)

    monkeypatch.setattr(checkpoint, "save", flaky_save)
    rec, d = _run(spec, tmp_path / "runs")
    assert rec["status"] == "failed" and "disk full" in rec["error"]
    assert [r["epoch"] for r in jobs.read_metrics(d / "metrics.jsonl")] == [1, 2]  # nothing computed is lost
    monkeypatch.setattr(checkpoint, "save", real_save)
    rec2, _ = _run(spec, tmp_path / "runs")
    # the checkpoint covers epoch 1: the job resumes after it and says so; epoch 2 is re-run once
    assert rec2["status"] == "done" and rec2["resumed_from_epoch"] == 1
    assert [r["epoch"] for r in jobs.read_metrics(d / "metrics.jsonl")] == [1, 2]
    assert jobs.read_json(d / "result.json")["final"]["resumed_from_epoch"] == 1


def test_a_job_that_lost_its_result_restarts_truthfully_and_drops_stale_artifacts(tmp_path: Path) -> None:
    spec = _spec(epochs=1)
    rec, d = _run(spec, tmp_path / "runs")
    assert rec["status"] == "done" and (d / "coefficients.npz").exists()
    stale = np.load(d / "coefficients.npz")["pi"].copy()
    (d / "result.json").unlink()
    for f in checkpoint.path_in(d).parent.iterdir():  # a finished job without --keep-checkpoints has none
        f.unlink()
    (d / "coefficients.npz").write_bytes(b"stale")
    rec2, _ = _run(spec, tmp_path / "runs")
    assert rec2["status"] == "done"
    assert rec2["resumed_from_epoch"] is None  # it trained from scratch and does not claim to have resumed
    assert [r["epoch"] for r in jobs.read_metrics(d / "metrics.jsonl")] == [1]
    fresh = np.load(d / "coefficients.npz")["pi"]  # rewritten by this run, not the stale file
    np.testing.assert_array_equal(fresh, stale)  # same seed, same data: the same coefficients again
