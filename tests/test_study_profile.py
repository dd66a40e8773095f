"""The verdict study's pieces (issue 13): the ``study`` profile, ``--init independent`` for the pilot, and the
plateau of a learning curve (framework-neutral: no framework is imported)."""

from __future__ import annotations

import pytest
from test_report_verdict import group, paired_recs

from harness import profiles, report, run
from harness.errors import SpecError


def test_plateau_step_is_the_first_point_within_tol_of_the_best() -> None:
    steps = [100, 200, 300, 400, 500]
    assert report.plateau_step(steps, [50.0, 80.0, 89.5, 90.0, 90.4]) == 300  # best 90.4, 89.5 >= 89.4
    assert report.plateau_step(steps, [50.0, 80.0, 89.3, 90.0, 90.4]) == 400
    assert report.plateau_step(steps, [50.0, 60.0, 70.0, 80.0, 90.0]) == 500  # still rising at the end
    assert report.plateau_step(steps, [90.0, 80.0, 70.0, 60.0, 50.0]) == 100
    assert report.plateau_step([], []) is None
    assert report.plateau_step(steps, [50.0, 80.0, 87.0, 90.0, 90.4], tol=4.0) == 300


def _with_curve(recs: list[dict], vals: dict[str, list[float]]) -> list[dict]:
    for r in recs:
        v = vals[r["variant"]]
        r["history"] = [{"epoch": 1, "curve": [
            {"step": 100 * (i + 1), "epoch": 1, "source_acc": 0.5, "source_val_acc": x / 100,
             "target_acc": 0.3 + i / 100} for i, x in enumerate(v)]}]
    return recs


def test_plateau_table_reads_the_mean_source_val_curve() -> None:
    recs = _with_curve(paired_recs([1, 2]), {"static": [50, 80, 89.5, 90, 90.4], "sr": [50, 60, 70, 80, 90]})
    table = report.table_plateau(group(recs), "torch")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table.splitlines()[2:]]
    lines = {row[1]: row for row in rows}
    assert lines["static"][2:4] == ["source-val", "300"]
    assert lines["sr"][3] == "500 (still rising at the end)"
    assert lines["static"][4] == "90.4" and lines["static"][5] == "32.0"  # target 0.30 + 2/100 at step 300
    assert "learning curves plateau" in report.render_group(group(recs))


def test_the_study_profile_holds_out_sources_and_evaluates_every_200_steps() -> None:
    prof = profiles.get_profile("digits", "study")
    fields = prof.job_fields()
    assert fields["source_val"] == {"fraction": 0.1, "max_per_source": 1000}
    assert "eval_every" not in fields and fields["steps_per_epoch"] == 200  # evaluated at every epoch's end
    assert fields["epochs"] == profiles.STUDY_EPOCHS
    assert prof.default_targets == ("mnistm",)
    with pytest.raises(SpecError, match="a profile defined for the domainnet suite: paper | quick"):
        profiles.get_profile("domainnet", "study")


def _jobs(*extra: str) -> list[dict]:
    args = run.build_parser().parse_args(["--methods", "dann", "--variants", "static,sr", *extra])
    return run.build_matrix(args)[0]


def test_init_independent_writes_no_key_and_changes_the_identity() -> None:
    paired, independent = _jobs(), _jobs("--init", "independent")
    assert all(s["init"] == "paired" for s in paired)
    assert all("init" not in s for s in independent)
    from harness.jobs import job_id

    assert {job_id(s) for s in paired}.isdisjoint({job_id(s) for s in independent})


def test_the_records_file_keeps_every_evaluation_point(tmp_path) -> None:
    """The learning curves and the plateau table read ``history[].curve`` from collected records: the compact
    history must keep the points (it once dropped every non-scalar field, so no curve reached a report)."""
    import json

    from harness import store

    point = {"step": 100, "epoch": 1, "stage": "train", "source_acc": 0.5, "source_val_acc": 0.6,
             "target_acc": 0.4, "junk": {"nested": 1}}
    line = {"epoch": 1, "target_acc": 0.4, "losses": {"ce": 1.0}, "curve": [point, "not a point"]}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    (hist,) = store._history(tmp_path)
    assert hist["epoch"] == 1 and "losses" not in hist
    assert hist["curve"] == [{k: v for k, v in point.items() if k != "junk"}]
    assert report.curve_points({"history": [hist]}) == [(100, 50.0, 60.0, 40.0)]


def test_pairing_table_reports_the_correlation_that_pairing_buys() -> None:
    # static 40, 45, 50, 55 %; DRT 41, 47, 53, 59 %: SDs 6.45 and 7.75, r = +1, paired SD 1.29
    table = report.table_pairing(group(paired_recs([1, 2, 3, 4])), "torch")
    row = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    assert row == ["DANN", "DRT (sr) vs static", "4", "6.5", "7.7", "1.3", "+1.00"]
    # two seeds: no SD row
    assert report.table_pairing(group(paired_recs([1, 2])), "torch").count("\n") == 1
