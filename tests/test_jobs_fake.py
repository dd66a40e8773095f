"""A fake trainer for the runner tests (test-only; no framework needed), and tests of the fake itself.

It follows the trainer contract of ``docs/architecture.md`` (Training): ``run_job(job, job_dir, *, on_epoch,
on_step) -> dict``; writes ``checkpoint/state.json`` atomically at every epoch end and resumes from it; writes
``coefficients.npz`` for DRT variants and a tiny ``model.safetensors`` at the end. The runner reaches it
through ``DRT_TRAINER_TORCH=test_jobs_fake:run_job`` (with ``tests/`` on ``PYTHONPATH``). Behaviour is
controlled by environment variables so that it also works in worker processes, submitit jobs and
``python -m harness.run`` subprocesses:

* ``DRT_FAKE_CALLS`` — a file; one line ``<job dir name> <epoch>`` is appended per epoch actually trained.
* ``DRT_FAKE_SLEEP`` — seconds per epoch (spread over the steps), for the kill test.
* ``DRT_FAKE_FAIL`` — comma list of ``method:variant`` (or ``method``) whose jobs raise in epoch 1.
* ``DRT_FAKE_NAN`` — comma list of ``method:variant`` (or ``method``) whose epoch-1 loss is NaN.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

BASE = {"source_only": 0.60, "dann": 0.64, "adda": 0.62, "mcd": 0.66, "mcd_grl": 0.67, "m3sda": 0.68,
        "drt_st": 0.7}


def _match(env: str, job: dict[str, Any]) -> bool:
    items = [x.strip() for x in os.environ.get(env, "").split(",") if x.strip()]
    return any(it in (job["method"], f"{job['method']}:{job['variant']}") for it in items)


def fake_accuracy(job: dict[str, Any], epoch: int) -> float:
    """Deterministic accuracy in (0, 1) that rises with the epoch; DRT adds 0.03."""
    h = hashlib.sha256(f"{job['method']}|{job['target']}|{job['seed']}".encode()).digest()
    noise = (h[0] / 255.0 - 0.5) * 0.04
    gain = 0.0 if job["variant"] == "static" else 0.03
    return round(BASE.get(job["method"], 0.6) + gain + noise - 0.1 / epoch, 6)


def run_job(job: dict[str, Any], job_dir: Path, *, on_epoch=None, on_step=None) -> dict[str, Any]:
    """The fake training loop (see the module docstring)."""
    job_dir = Path(job_dir)
    ckpt = job_dir / "checkpoint" / "state.json"
    start = 0
    if ckpt.exists():
        start = json.loads(ckpt.read_text())["epoch"]
    epochs, steps = int(job["epochs"]), int(job.get("steps_per_epoch") or 4)
    sleep = float(os.environ.get("DRT_FAKE_SLEEP", "0"))
    calls = os.environ.get("DRT_FAKE_CALLS")
    print(f"fake trainer: {job_dir.name} from epoch {start}")
    for ep in range(start + 1, epochs + 1):
        for i in range(steps):
            if sleep:
                time.sleep(sleep / steps)
            if on_step:
                on_step((ep - 1) * steps + i + 1, epochs * steps)
        if _match("DRT_FAKE_FAIL", job):
            raise RuntimeError(f"fake failure in {job['method']}:{job['variant']}")
        loss = math.nan if _match("DRT_FAKE_NAN", job) else 1.0 / ep
        acc = fake_accuracy(job, ep)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch": ep}))
        os.replace(tmp, ckpt)
        if calls:
            with open(calls, "a") as fh:
                fh.write(f"{job_dir.name} {ep}\n")
        if on_epoch:
            on_epoch({"epoch": ep, "loss": loss, "target_acc": acc, "source_acc": min(0.99, acc + 0.25)})
    if job["variant"] != "static":
        rng = np.random.default_rng(int(job["seed"]))
        dom = np.repeat(np.arange(3), 20)
        pi = rng.dirichlet(np.ones(4), size=60) + dom[:, None] * 0.2
        np.savez(job_dir / "coefficients.npz", pi=pi.astype(np.float32), domain=dom,
                 domain_names=np.array(["a", "b", "c"]))
    from harness.weights import neutral

    neutral.save(job_dir / "model.safetensors", {"head.weight": np.full((2, 3), float(epochs), np.float32)},
                 atomic=True)
    acc = fake_accuracy(job, epochs)
    return {"target_acc": acc, "source_acc": min(0.99, acc + 0.25), "epoch": epochs, "best_epoch": epochs,
            "seconds": 0.0, "versions": {"fake": "1"}}


def fake_env(monkeypatch, tmp_path: Path) -> Path:
    """Point the runner at this fake (also in subprocesses); returns the calls file."""
    tests_dir = Path(__file__).resolve().parent
    repo = tests_dir.parent
    calls = tmp_path / "calls.txt"
    for fw in ("TORCH", "KERAS"):
        monkeypatch.setenv(f"DRT_TRAINER_{fw}", "test_jobs_fake:run_job")
    monkeypatch.setenv("DRT_FAKE_CALLS", str(calls))
    for var in ("DRT_FAKE_SLEEP", "DRT_FAKE_FAIL", "DRT_FAKE_NAN"):
        monkeypatch.delenv(var, raising=False)
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tests_dir), str(repo)] + ([old] if old else [])))
    return calls


def read_calls(calls: Path) -> list[tuple[str, int]]:
    """(job dir name, epoch) per epoch the fake actually trained."""
    if not calls.exists():
        return []
    return [(ln.split()[0], int(ln.split()[1])) for ln in calls.read_text().splitlines() if ln.strip()]


def test_fake_trainer_resumes(tmp_path: Path) -> None:
    job = {"method": "dann", "variant": "sr", "target": "a", "seed": 0, "epochs": 3, "steps_per_epoch": 2}
    seen: list[dict] = []
    run_job(job, tmp_path, on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    seen.clear()
    run_job(job, tmp_path, on_epoch=seen.append)  # checkpoint at epoch 3: nothing left to train
    assert seen == []
    assert (tmp_path / "coefficients.npz").exists()
