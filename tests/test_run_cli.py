"""``python -m harness.run`` with the fake trainer: matrix, skip on re-run, failures, report from records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_jobs_fake import fake_env, read_calls

from harness import jobs, report, run
from harness.store import collect

REPO = Path(__file__).resolve().parent.parent


def smoke_targets() -> list[str]:
    return run.suite_domains("smoke", None)


def base_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--suite", "smoke", "--device", "cpu", "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "results"), "--no-plots", "--launcher", "local", *extra]


def test_dry_run_prints_the_matrix_and_its_size(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_env(monkeypatch, tmp_path)
    n_t = len(smoke_targets())
    assert run.main(base_args(tmp_path, "--methods", "source_only,dann", "--seeds", "0,1", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert f"{2 * 2 * n_t * 2} jobs (1 frameworks × 2 methods × 2 variants × {n_t} targets × 2 seeds)" in out
    assert "Nothing was run" in out
    assert not (tmp_path / "runs").exists()
    assert run.main(base_args(tmp_path, "--frameworks", "torch,keras", "--seeds", "0-2", "--dry-run",
                              "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["size"] == 2 * 5 * 2 * n_t * 3 == len(data["jobs"]) == len(data["specs"])
    assert data["counts"]["new"] == data["size"]
    assert len({j["job_id"] for j in data["jobs"]}) == data["size"]
    spec = data["specs"][0]
    for key in jobs.SPEC_KEYS:
        assert key in spec


def test_no_arguments_mean_digits_quick_five_baselines_static_and_drt_on_one_target() -> None:
    args = run.build_parser().parse_args(["--device", "cpu"])
    specs, settings = run.build_matrix(args)
    assert settings["suite"] == "digits" and settings["profile"]["name"] == "quick"
    assert settings["methods"] == ["source_only", "dann", "adda", "mcd_grl", "m3sda"]
    assert settings["variants"] == ["static", "sr"] and settings["frameworks"] == ["torch"]
    assert len(settings["targets"]) == 1 and settings["seeds"] == [0]
    assert len(specs) == 10
    assert {s["method"] for s in specs} == set(run.DEFAULT_METHODS)
    assert all(s["hparams"] for s in specs)  # resolved defaults are part of the identity


def test_run_then_rerun_skips_every_job(tmp_path: Path, monkeypatch, capsys) -> None:
    calls = fake_env(monkeypatch, tmp_path)
    args = base_args(tmp_path, "--methods", "source_only,mcd_grl", "--seeds", "0,1")
    assert run.main(args) == 0
    captured = capsys.readouterr()
    n = 2 * 2 * len(smoke_targets()) * 2
    assert f"{n} jobs in" in captured.out and f"{n} to run" in captured.out
    assert "static / DRT (sr)" in captured.out and "source accuracy" in captured.out
    first = read_calls(calls)
    assert len({c[0] for c in first}) == n
    readme = tmp_path / "results" / "smoke" / "README.md"
    assert readme.exists() and (tmp_path / "results" / "smoke" / "records.jsonl").exists()
    assert run.main(args) == 0
    out = capsys.readouterr().out
    assert f"{n} jobs in" in out and f"{n} already done (skipped)" in out and ", 0 to run." in out
    assert read_calls(calls) == first  # nothing was trained again


def test_a_failing_job_is_recorded_and_the_others_go_on(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_env(monkeypatch, tmp_path)
    monkeypatch.setenv("DRT_FAKE_FAIL", "dann:sr")
    monkeypatch.setenv("DRT_FAKE_NAN", "source_only:static")
    targets = smoke_targets()[:2]
    rc = run.main(base_args(tmp_path, "--methods", "source_only,dann", "--targets", ",".join(targets)))
    assert rc == 1
    out = capsys.readouterr().out
    recs = collect(tmp_path / "runs")
    status = {(r["method"], r["variant"], r["target"]): r["status"] for r in recs}
    assert len(recs) == 8
    for t in targets:
        assert status[("dann", "sr", t)] == "failed" and status[("source_only", "static", t)] == "failed"
        assert status[("dann", "static", t)] == "done" and status[("source_only", "sr", t)] == "done"
    assert "4 of 8 jobs failed" in out and "FAILED" in out
    text = (tmp_path / "results" / "smoke" / "README.md").read_text()
    assert "## Failed, incomplete and missing jobs" in text
    assert "RuntimeError: fake failure in dann:sr" in text and "non-finite value(s) in epoch record" in text
    assert "failed / " in text  # the failed static cells say so instead of disappearing


def test_report_is_regenerated_from_the_records_alone(tmp_path: Path, monkeypatch) -> None:
    fake_env(monkeypatch, tmp_path)
    assert run.main(base_args(tmp_path, "--methods", "source_only", "--seeds", "0,1", "--quiet")) == 0
    written = (tmp_path / "results" / "smoke" / "README.md").read_text()
    records = tmp_path / "elsewhere" / "records.jsonl"
    records.parent.mkdir()
    records.write_bytes((tmp_path / "results" / "smoke" / "records.jsonl").read_bytes())
    import shutil

    shutil.rmtree(tmp_path / "runs")  # the job directories are gone: only the records remain
    assert report.main(["--results", str(records), "--out", str(tmp_path / "again"), "--no-plots"]) == 0
    assert (tmp_path / "again" / "smoke" / "README.md").read_text() == written


@pytest.mark.parametrize("argv,needle", [
    (["--methods", "nope"], "run.methods = 'nope' is invalid"),
    (["--seeds", "a,b"], "run.seeds = 'a' is invalid"),
    (["--targets", "atlantis"], "run.targets = 'atlantis' is invalid"),
    (["--epochs", "0"], "run.epochs = 0 is invalid"),
    (["--hparams", '{"no_such_hparam": 1}'], "no_such_hparam"),
])
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path: Path, monkeypatch, capsys, argv, needle) -> None:
    fake_env(monkeypatch, tmp_path)
    assert run.main(base_args(tmp_path, *argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


def test_domainnet_without_data_gives_the_data_layers_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRT_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "harness.run", "--suite", "domainnet", "--device", "cpu",
                           "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_hparams_random_draw_is_part_of_the_identity(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_env(monkeypatch, tmp_path)
    specs = {}
    for seed in ("0", "2"):
        argv = base_args(tmp_path, "--methods", "dann", "--hparams-seed", seed, "--dry-run", "--json")
        assert run.main(argv) == 0
        specs[seed] = json.loads(capsys.readouterr().out)["specs"][0]
    assert specs["0"]["hparams"] != specs["2"]["hparams"] and specs["2"]["hparams_seed"] == 2
    assert "hparams_seed" not in specs["0"]
    assert jobs.job_id(specs["0"]) != jobs.job_id(specs["2"])
