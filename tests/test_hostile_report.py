"""Hostile records and files against ``python -m harness.report`` (issue 15): each attack is replayed and the
report must refuse, warn or skip — never show a silently wrong table. Every located message names its file
and line.

Attacks: an accuracy given in % (75.0), two records of one job cell, a done record without a valid accuracy,
a record without a suite, a seed that is not a non-negative integer, a corrupt ``coefficients.npz``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness import records as R
from harness import report
from harness.store import collect


def rec(method: str = "dann", variant: str = "static", target: str = "mnist", seed: int = 0,
        acc: float | None = 0.5, *, status: str = "done", suite: str = "digits", fw: str = "torch",
        finished: str = "2026-11-28T06:00:00+00:00", job_id: str | None = None) -> dict:
    spec = {"framework": fw, "suite": suite, "profile": "quick", "arch": "digits_cnn", "epochs": 2,
            "steps_per_epoch": 10, "batch_size": 32, "data": {}, "formulation": "auto",
            "hparams_overrides": {}, "selection": "last", "method": method, "variant": variant,
            "target": target, "seed": seed}
    name = f"{fw}_{method}_{variant}_{target}_s{seed}"
    r = {"status": status, "job_id": job_id or f"id-{name}", "name": name, "spec": spec, "framework": fw,
         "suite": suite, "method": method, "variant": variant, "target": target, "seed": seed,
         "device": "cpu", "wall_time_s": 1.0, "finished": finished}
    if status == "done":
        r.update(target_acc=acc, source_acc=0.9)
    else:
        r["error"] = "RuntimeError: boom"
    return r


def good() -> list[dict]:
    """Two targets × two seeds of DANN static and sr: 8 valid done records."""
    return [rec("dann", v, t, s, 0.5 + 0.1 * s + (0.05 if v == "sr" else 0.0))
            for v in ("static", "sr") for t in ("mnist", "usps") for s in (0, 1)]


def jsonl(path: Path, recs: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs))
    return path


def job_dir(runs: Path, r: dict, name: str | None = None) -> Path:
    """A job directory as :mod:`harness.jobs` writes it (indented, sorted result.json + spec.json)."""
    jd = runs / r["suite"] / (name or r["name"])
    jd.mkdir(parents=True)
    (jd / "spec.json").write_text(json.dumps(r["spec"], indent=2, sort_keys=True) + "\n")
    (jd / "result.json").write_text(json.dumps(r, indent=2, sort_keys=True) + "\n")
    return jd


def line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def run(tmp_path: Path, capsys, src: Path, *extra: str) -> tuple[int, str, str]:
    code = report.main(["--results", str(src), "--out", str(tmp_path / "out"), "--no-plots", *extra])
    readme = tmp_path / "out" / "digits" / "README.md"
    return code, readme.read_text() if readme.exists() else "", capsys.readouterr().err


def header(text: str) -> dict[str, int]:
    m = re.search(r"\((\d+) records: (\d+) done, (\d+) failed, (\d+) incomplete", text)
    assert m, text[:400]
    out = dict(zip(("records", "done", "failed", "incomplete"), map(int, m.groups())))
    for key, pat in (("refused", r"(\d+) invalid records refused"),
                     ("dups", r"(\d+) duplicate records ignored")):
        found = re.search(pat, text.split("\n\n")[1])
        out[key] = int(found.group(1)) if found else 0
    return out


# --------------------------------------------------------------------------------------------- 1. 75.0
def test_an_accuracy_in_percent_is_refused_with_file_and_line(tmp_path: Path, capsys) -> None:
    src = jsonl(tmp_path / "records.jsonl", [*good(), rec("dann", "static", "syn", 0, 75.0)])
    code, text, err = run(tmp_path, capsys, src)
    assert code == 0
    msg = f"{src}:9: field 'target_acc' = 75.0: expected a fraction in [0, 1]"
    assert msg in err
    assert "7500" not in text and "syn" not in text.split("## Refused")[0]  # never shown in a table
    assert "| records.jsonl:9 " in text and "field 'target_acc' = 75.0: expected a fraction in [0, 1]" in text
    h = header(text)
    assert (h["records"], h["done"], h["refused"]) == (8, 8, 1)


def test_an_accuracy_in_percent_in_a_result_json_names_the_line_of_the_key(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    for r in good():
        job_dir(runs, r)
    bad = job_dir(runs, rec("dann", "static", "syn", 0, 0.5) | {"source_acc": 90.0})
    code, text, err = run(tmp_path, capsys, runs)
    assert code == 0
    line = line_of(bad / "result.json", '  "source_acc": 90.0')
    assert line > 1
    assert f"{bad / 'result.json'}:{line}: field 'source_acc' = 90.0: expected a fraction in [0, 1]" in err
    assert f"digits/{bad.name}/result.json:{line}" in text  # the README shows the path relative to --results


def test_strict_exits_2_at_the_first_invalid_record(tmp_path: Path, capsys) -> None:
    src = jsonl(tmp_path / "records.jsonl", [*good(), rec("dann", "static", "syn", 0, 75.0)])
    code, text, err = run(tmp_path, capsys, src, "--strict")
    assert code == 2 and text == ""
    assert err.startswith(f"error: {src}:9: field 'target_acc' = 75.0: expected a fraction in [0, 1]")


# --------------------------------------------------------------------------------------------- 2. duplicates
def test_a_second_record_of_a_cell_never_replaces_the_first_silently(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    for r in good():
        job_dir(runs, r)
    day = "2026-11-{}T06:00:00+00:00"
    old = job_dir(runs, rec("dann", "static", "syn", 0, 0.20, job_id="aaa", finished=day.format(28)), "old")
    new = job_dir(runs, rec("dann", "static", "syn", 0, 0.30, job_id="bbb", finished=day.format(29)), "new")
    code, text, err = run(tmp_path, capsys, runs)
    assert code == 0
    warning = next(ln for ln in err.splitlines() if "duplicate record" in ln)
    assert f"{old / 'result.json'}:1" in warning and f"{new / 'result.json'}:1" in warning  # both files
    assert "aaa" in warning and "bbb" in warning
    table = text.split("### torch: target accuracy")[1].split("###")[0]
    assert "30.0" in table and "20.0" not in table  # the newest one is shown, and only it
    h = header(text)
    assert (h["done"], h["dups"], h["refused"]) == (9, 1, 0)
    assert "digits/old/result.json:1" in text.split("## Refused and duplicate records")[1]
    # the order the files are found in does not matter: the newest wins either way
    rev = R.check([(json.loads((new / "result.json").read_text()), R.Location("n")),
                   (json.loads((old / "result.json").read_text()), R.Location("o"))])
    assert [r["job_id"] for r in rev] == ["bbb"] and rev.duplicates[0].dropped.path == "o"
    assert run(tmp_path, capsys, runs, "--strict")[0] == 2


def test_the_same_job_collected_twice_is_counted_without_a_warning(tmp_path: Path, capsys) -> None:
    recs = good()
    src = jsonl(tmp_path / "records.jsonl", [*recs, recs[0]])
    code, text, err = run(tmp_path, capsys, src, "--strict")  # not a conflict: --strict accepts it
    assert code == 0 and err == ""
    h = header(text)
    assert (h["records"], h["done"], h["dups"]) == (8, 8, 1)
    assert "the same job collected twice" in text


# --------------------------------------------------------------------------------------------- 3. no accuracy
@pytest.mark.parametrize("line", [
    json.dumps(rec("dann", "static", "syn", 0, float("nan"))),  # NaN: json.loads accepts it
    json.dumps({k: v for k, v in rec("dann", "static", "syn", 0, 0.5).items() if k != "target_acc"}),
])
def test_a_done_record_without_a_valid_accuracy_is_refused_not_failed(tmp_path: Path, capsys,
                                                                       line: str) -> None:
    assert "NaN" in line or "target_acc" not in line
    src = jsonl(tmp_path / "records.jsonl", [*good(), line])
    code, text, err = run(tmp_path, capsys, src)
    assert code == 0
    assert re.search(rf"{re.escape(str(src))}:9: field 'target_acc' = (nan|None): expected a fraction", err)
    h = header(text)
    assert (h["done"], h["failed"], h["refused"]) == (8, 0, 1)
    tables = text.split("## Refused")[0]
    # as the header says: no table cell says "failed"
    assert not [ln for ln in tables.splitlines() if ln.startswith("|") and "failed" in ln]
    assert "No failed or incomplete jobs." in text


def test_counts_in_the_header_match_the_tables_for_records_given_in_memory() -> None:
    recs = [*good(), rec("dann", "static", "syn", 0, None), rec("dann", "sr", "syn", 0, status="failed")]
    text = report.render(recs, "digits")
    h = header(text)
    assert (h["records"], h["done"], h["failed"], h["refused"]) == (9, 8, 1, 1)
    assert "| <records>:9 " in text  # in-memory records are located by their index
    assert len(re.findall(r"^\| failed +\|", text, re.MULTILINE)) == 1  # the failed job, and only it


# --------------------------------------------------------------------------------------------- 4. no suite
def test_a_record_without_a_suite_is_refused_and_writes_no_none_directory(tmp_path: Path, capsys) -> None:
    bare = rec("dann", "static", "syn", 0, 0.5)
    del bare["suite"], bare["spec"]["suite"]
    src = jsonl(tmp_path / "records.jsonl", [*good(), bare])
    code, text, err = run(tmp_path, capsys, src)
    assert code == 0
    assert f"{src}:9: field 'suite' = None: expected a non-empty string (missing)" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["digits"]  # no None/README.md
    assert "| records.jsonl:9 " in text and header(text)["refused"] == 1
    # alone, it is no report at all: exit 2, still located
    only = jsonl(tmp_path / "only.jsonl", [bare])
    code = report.main(["--results", str(only), "--out", str(tmp_path / "out2"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and f"{only}:1: field 'suite'" in err and not (tmp_path / "out2").exists()


def test_a_suite_that_is_a_path_is_refused(tmp_path: Path, capsys) -> None:
    evil = rec("dann", "static", "syn", 0, 0.5, suite="../../evil")
    src = jsonl(tmp_path / "records.jsonl", [*good(), evil])
    code, _, err = run(tmp_path, capsys, src)
    assert code == 0 and f"{src}:9: field 'suite' = '../../evil': expected a plain name" in err
    assert not (tmp_path.parent / "evil").exists()


# --------------------------------------------------------------------------------------------- 5. seed
@pytest.mark.parametrize("seed", ["abc", "1", 1.5, True, -1, None])
def test_a_seed_that_is_not_a_non_negative_integer_is_refused_with_file_and_line(tmp_path: Path, capsys,
                                                                                 seed) -> None:
    bad = rec("dann", "static", "syn", 0, 0.5)
    bad["seed"] = bad["spec"]["seed"] = seed
    src = jsonl(tmp_path / "records.jsonl", [*good(), bad])
    code, text, err = run(tmp_path, capsys, src)
    assert code == 0
    assert f"{src}:9: field 'seed' = {seed!r}: expected a non-negative integer" in err
    assert header(text)["refused"] == 1 and "Seeds: 0, 1 (n = 2)" in text
    code, _, err = run(tmp_path, capsys, src, "--strict")
    assert code == 2 and err.startswith(f"error: {src}:9: field 'seed'")


def test_a_line_that_is_not_json_is_refused_with_file_and_line(tmp_path: Path, capsys) -> None:
    src = jsonl(tmp_path / "records.jsonl", [*good(), "{oops", "[1, 2]"])
    code, text, err = run(tmp_path, capsys, src)
    assert code == 0 and f"{src}:9: not a JSON record" in err and f"{src}:10: expected a JSON object" in err
    assert header(text)["refused"] == 2
    bad_first = jsonl(tmp_path / "b.jsonl", [*good()[:2], rec(seed=-1), *good()[2:], "{oops"])
    code, _, err = run(tmp_path, capsys, bad_first, "--strict")
    assert code == 2 and err.startswith(f"error: {bad_first}:3: field 'seed' = -1")  # the first in line order


def test_validator_messages_and_the_line_of_a_spec_key() -> None:
    text = json.dumps({"status": "done", "spec": {"seed": "x"}}, indent=2, sort_keys=True)
    where = R.Location("r.json", 1, text=text)
    found = {p.field: p for p in R.problems(json.loads(text), where)}
    assert line_of_text(text, '"seed"') == 3
    assert str(found["seed"]) == "r.json:3: field 'seed' = 'x': expected a non-negative integer"
    assert str(found["job_id"]).startswith("r.json:1: field 'job_id' = None")
    assert R.problems(rec(), R.Location("x")) == []
    for bad, field in ((True, "target_acc"), (1.5, "target_acc"), (-0.1, "target_acc"), ("0.5", "target_acc"),
                       (float("inf"), "target_acc")):
        assert [p.field for p in R.problems(rec(acc=bad), R.Location("x"))] == [field]


def line_of_text(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


# --------------------------------------------------------------------------------------------- 6. npz
def _valid_npz() -> bytes:
    rng = np.random.default_rng(0)
    dom = np.repeat(np.arange(3), 10)
    buf = io.BytesIO()
    np.savez(buf, pi=rng.dirichlet(np.ones(4), 30).astype(np.float32), domain=dom,
             domain_names=np.array(["mnist", "usps", "syn"]))
    return buf.getvalue()


def _missing_keys() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, something=np.zeros(3))
    return buf.getvalue()


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"this is not an archive at all", "not an .npz (zip) archive"),
    (_valid_npz()[:200], "truncated or corrupt .npz archive"),
    (_missing_keys(), "neither 'pi' nor 'lam'"),
], ids=["zero-bytes", "garbage", "truncated", "missing-keys"])
def test_a_corrupt_coefficients_file_skips_its_plot_and_the_readme_is_still_written(
        tmp_path: Path, capsys, content: bytes, reason: str) -> None:
    recs = good()
    jd = tmp_path / "job"
    jd.mkdir()
    (jd / "coefficients.npz").write_bytes(content)
    recs[4] = dict(recs[4], job_dir=str(jd), artifacts={"coefficients": "coefficients.npz"})  # an sr record
    path = report.write_report(recs, "digits", tmp_path / "out")
    err = capsys.readouterr().err
    assert path.is_file()
    warning = next(ln for ln in err.splitlines() if "t-SNE" in ln)
    assert str(jd / "coefficients.npz") in warning and reason in warning
    assert not list(path.parent.glob("tsne-*.png"))
    assert not (path.parent / "coefficients" / f"{recs[4]['name']}.npz").exists()  # corrupt: not kept
    text = path.read_text()
    assert f"Plot skipped: the coefficients of `{recs[4]['name']}`" in text and reason in text
    assert "### torch: target accuracy" in text  # the tables are all there


def test_hostile_artifact_names_never_leave_the_job_directory() -> None:
    bad = rec(variant="sr") | {"artifacts": {"coefficients": "../../etc/passwd"}, "name": "../x"}
    fields = {p.field for p in R.problems(bad, R.Location("x"))}
    assert fields == {"artifacts.coefficients", "name"}


def test_collect_keeps_the_refusals_and_strict_raises(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "records.jsonl", [*good(), rec(seed=3, acc=75.0)])
    got = collect(src)
    assert len(got) == 8 and [str(f.where) for f in got.refused] == [f"{src}:9"]
    with pytest.raises(R.RecordError, match=re.escape(f"{src}:9: field 'target_acc' = 75.0")):
        collect(src, strict=True)


def test_a_result_json_that_is_not_json_is_refused_not_shown_as_incomplete(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    for r in good():
        job_dir(runs, r)
    bad = job_dir(runs, rec("dann", "static", "syn", 0, 0.5))
    (bad / "result.json").write_text('{"status": "done", "target_acc": ')
    code, text, err = run(tmp_path, capsys, runs)
    assert code == 0 and f"{bad / 'result.json'}:1: not a JSON record" in err
    h = header(text)
    assert (h["records"], h["incomplete"], h["refused"]) == (8, 0, 1)


def test_skipped_images_are_shown_per_job() -> None:
    from test_report import records as sample_records

    recs = sample_records()
    recs[0] = dict(recs[0], final={"skipped_train": 3, "skipped_eval": 1,
                                   "skipped_files": ["/d/a.jpg: empty file; listed at /d/x_train.txt:4"]})
    text = report.render(recs, "digits")
    section = text.split("## Skipped images", 1)[1]
    assert "1 jobs skipped unreadable images (3 while training, 1 while evaluating" in section
    assert "x_train.txt:4" in section
    assert "No image was skipped" in report.render(sample_records(), "digits")
