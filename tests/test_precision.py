"""Job identity and plumbing of ``precision`` and ``loader_workers`` (framework-neutral, fake trainer).

``precision`` is part of the identity, ``fp32`` written as absent (jobs made before it keep their ids);
``loader_workers`` is execution-only (:data:`harness.jobs.EXECUTION_KEYS`): never in the id, but in the spec
the trainer gets and in ``result.json``. The default worker count follows the CPUs the job may use."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_jobs_fake import fake_env

from harness import jobs, loop, run
from harness.profiles import get_profile


def make_spec(**extra) -> dict:
    spec = jobs.build_spec(framework="torch", suite="smoke", target="plain", method="dann", variant="sr",
                           seed=0, profile=get_profile("smoke", "quick", epochs=1).job_fields(), device="cpu",
                           hparams={"lr": 0.01})  # fmt: skip
    spec.update(extra)
    return spec


def old_job_id(spec: dict) -> str:
    """The identity as computed before execution-only keys existed: a hash of the whole spec."""
    return hashlib.sha256(jobs.canonical_json(spec).encode()).hexdigest()[:16]


def test_precision_is_identity_and_fp32_keeps_the_old_id() -> None:
    base = make_spec()
    assert jobs.job_id(base) == old_job_id(base)  # a spec made before this change keeps its id
    ids = {p: jobs.job_id(make_spec(precision=p)) for p in ("bf16", "fp16")}
    assert len({jobs.job_id(base), *ids.values()}) == 3


def test_loader_workers_never_changes_the_id() -> None:
    base = make_spec()
    for n in (0, 1, 7):
        spec = make_spec(loader_workers=n)
        assert jobs.job_id(spec) == jobs.job_id(base)
        assert jobs.identity_fields(spec) == base
    assert jobs.job_dir("out", make_spec(loader_workers=3)) == jobs.job_dir("out", base)


def dry_run(tmp_path: Path, capsys, *extra: str) -> dict:
    args = ["--suite", "smoke", "--device", "cpu", "--out", str(tmp_path / "runs"), "--methods",
            "source_only,dann", "--variants", "static,sr", "--frameworks", "torch,keras", "--dry-run",
            "--json", *extra]  # fmt: skip
    assert run.main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_flags_write_the_spec_and_keep_or_change_ids(tmp_path: Path, capsys) -> None:
    plain = dry_run(tmp_path, capsys)
    ids = [j["job_id"] for j in plain["jobs"]]
    assert ids == [old_job_id(s) for s in plain["specs"]]  # default settings: the ids of before the flags
    assert all("precision" not in s and "loader_workers" not in s for s in plain["specs"])
    fp32 = dry_run(tmp_path, capsys, "--precision", "fp32")
    assert [j["job_id"] for j in fp32["jobs"]] == ids
    workers = dry_run(tmp_path, capsys, "--loader-workers", "3")
    assert [j["job_id"] for j in workers["jobs"]] == ids
    assert all(s["loader_workers"] == 3 for s in workers["specs"])
    bf16 = dry_run(tmp_path, capsys, "--precision", "bf16")
    assert all(s["precision"] == "bf16" for s in bf16["specs"])
    assert not set(ids) & {j["job_id"] for j in bf16["jobs"]}


def test_negative_loader_workers_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert run.main(["--suite", "smoke", "--device", "cpu", "--loader-workers", "-1", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "loader-workers" in err and ">= 0" in err


def test_loader_workers_appear_in_the_record(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_env(monkeypatch, tmp_path)
    args = ["--suite", "smoke", "--device", "cpu", "--out", str(tmp_path / "runs"), "--results",
            str(tmp_path / "results"), "--no-plots", "--launcher", "local", "--methods", "dann", "--variants",
            "sr", "--targets", "plain", "--epochs", "1"]  # fmt: skip
    assert run.main([*args, "--loader-workers", "2"]) == 0
    (result,) = (tmp_path / "runs" / "smoke").glob("*/result.json")
    rec = json.loads(result.read_text())
    assert rec["status"] == "done" and rec["spec"]["loader_workers"] == 2
    assert rec["job_id"] == jobs.job_id({k: v for k, v in rec["spec"].items() if k != "loader_workers"})
    capsys.readouterr()
    assert run.main([*args, "--loader-workers", "0"]) == 0  # the same job: skipped, not a new directory
    assert "1 already done (skipped)" in capsys.readouterr().out
    assert len(list((tmp_path / "runs" / "smoke").glob("*/result.json"))) == 1


@pytest.mark.parametrize(("cpus", "expected"), [(1, 0), (2, 1), (4, 3), (5, 4), (64, 4)])
def test_default_loader_workers_follow_the_cpus(monkeypatch, cpus: int, expected: int) -> None:
    monkeypatch.setattr(loop, "available_cpus", lambda: cpus)
    assert loop.loader_workers({}) == expected
    assert loop.loader_workers({"loader_workers": None}) == expected
    assert loop.loader_workers({"loader_workers": 6}) == 6


def test_available_cpus_is_capped_by_the_launchers_thread_share(monkeypatch) -> None:
    monkeypatch.setattr(loop.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert loop.available_cpus() == 8 and loop.loader_workers({}) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert loop.available_cpus() == 3 and loop.loader_workers({}) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert loop.loader_workers({}) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert loop.available_cpus() == 8


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_bad_loader_workers_name_the_field(bad) -> None:
    with pytest.raises(ValueError, match="loader_workers.*integer >= 0"):
        loop.loader_workers({"loader_workers": bad})


def test_job_precision_default_and_errors() -> None:
    assert loop.job_precision({}) == "fp32" and loop.job_precision({"precision": "bf16"}) == "bf16"
    with pytest.raises(ValueError, match="precision.*fp32, bf16, fp16"):
        loop.job_precision({"precision": "fp8"})
