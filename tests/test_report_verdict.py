"""The report's verdict section, torch-vs-Keras verdict agreement and learning curves (issue 13), against
hand-written records with known answers (framework-neutral: no framework is imported).

Hand computation (one target, so the per-seed Avg is the cell itself; accuracies in %):

* DRT − static = 1, 2, 3, 4 points: mean 2.5, paired SD √(5/3) = 1.29, half-width t(.975, 3) · 1.29/2 =
  3.182 · 0.645 = 2.05 → [0.4, 4.6]: "DRT helps by 2.5 [0.4, 4.6]". A ±2-point interval at SD 1.29 needs
  n with t(.975, n−1) · 1.29/√n ≤ 2: n = 4 gives 2.05, n = 5 gives 1.60 → 5 seeds.
* DRT − static = 1, −1, 2, −2: mean 0, SD √(10/3) = 1.83, interval [−2.9, 2.9] straddles 0; the exact MDE at
  n = 4, 80 % power is 3.9 points: "no difference larger than ±3.9".
* One seed: "not enough seeds (n = 1): no interval".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import rec, records

from harness import power, report
from harness.store import write_records


def paired_recs(diffs: list[float], *, fw: str = "torch", method: str = "dann", variant: str = "sr",
                target: str = "mnist", fingerprints: bool = True, base: float = 0.40) -> list[dict]:
    """Per seed ``s``: static at ``base + 0.05 s``, ``variant`` ``diffs[s]`` points above it."""
    out = []
    for s, d in enumerate(diffs):
        for v, acc in (("static", base + 0.05 * s), (variant, base + 0.05 * s + d / 100)):
            r = rec(method, v, target, s, acc, fw=fw)
            if fingerprints:
                r["final"] = {"init_fingerprint": f"{fw}-{method}-{target}-seed{s}"}
            out.append(r)
    return out


def only(recs: list[dict], variant: str) -> list[dict]:
    return [r for r in recs if r["variant"] == variant]


def group(recs: list[dict], selection: str = "last") -> report.Group:
    (g,) = report.groups_of(recs, "digits", selection)
    return g


def row_of(table: str, *cells: str) -> str:
    """The one table line whose cells start with ``cells``."""
    hits = [ln for ln in table.splitlines()
            if [c.strip() for c in ln.strip("|").split("|")][: len(cells)] == list(cells)]
    assert len(hits) == 1, (cells, table)
    return hits[0]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


# --------------------------------------------------------------------------------------------- verdict table
def test_known_gain_helps_with_interval_sd_mde_and_seeds_needed() -> None:
    g = group(paired_recs([1, 2, 3, 4]))
    table = report.table_verdict(g, "torch")
    assert cells(table.splitlines()[0]) == ["method", "comparison", "n", "gain (points)", "95 % CI",
                                            "paired SD", "MDE (80 % power)", "verdict"]
    row = cells(row_of(table, "DANN", "DRT (sr) vs static"))
    mde = power.mde(5 ** 0.5 / 3 ** 0.5, 4)
    assert row[2:] == ["4", "+2.5", "[+0.4, +4.6]", "1.3", f"{mde:.1f}", "DRT helps by 2.5 [0.4, 4.6]"]
    assert power.pairs_for_halfwidth(5 ** 0.5 / 3 ** 0.5, 2.0) == 5
    assert report.seeds_needed(g, "torch") == (
        "* DANN, DRT (sr) vs static: to reach a ±2-point 95 % interval at this paired SD (1.3) you would "
        "need 5 seeds (4 ran)."
    )


def test_null_case_reports_the_mde() -> None:
    table = report.table_verdict(group(paired_recs([1, -1, 2, -2])), "torch")
    row = cells(row_of(table, "DANN", "DRT (sr) vs static"))
    assert row[2:7] == ["4", "+0.0", "[-2.9, +2.9]", "1.8", "3.9"]
    assert row[7].startswith("no difference larger than ±3.9 (MDE = 3.9 at 80 % power, n = 4 pairs)")


def test_hurts() -> None:
    row = cells(row_of(report.table_verdict(group(paired_recs([-1, -2, -3, -4])), "torch"), "DANN"))
    assert row[3:5] == ["-2.5", "[-4.6, -0.4]"] and row[7] == "DRT hurts by 2.5 [-4.6, -0.4]"


def test_one_seed_is_not_enough() -> None:
    g = group(paired_recs([3]))
    row = cells(row_of(report.table_verdict(g, "torch"), "DANN"))
    assert row[2:] == ["1", "+3.0", "—", "—", "—", "not enough seeds (n = 1): no interval"]
    assert "no paired SD yet (n = 1" in report.seeds_needed(g, "torch")


def test_verdict_uses_the_per_seed_average_over_targets() -> None:
    # two targets: per-seed Avg diffs (1+3)/2, (2+4)/2, (3+5)/2, (4+6)/2 = 2, 3, 4, 5; a seed missing a target
    # in one arm is not a pair
    recs = paired_recs([1, 2, 3, 4]) + paired_recs([3, 4, 5, 6], target="usps")
    row = cells(row_of(report.table_verdict(group(recs), "torch"), "DANN"))
    assert row[2:4] == ["4", "+3.5"]
    recs = [r for r in recs if not (r["variant"] == "sr" and r["target"] == "usps" and r["seed"] == 3)]
    row = cells(row_of(report.table_verdict(group(recs), "torch"), "DANN"))
    assert row[2:4] == ["3", "+3.0"] and row[7] == "DRT helps by 3.0 [0.5, 5.5]"


def test_drt_argument_picks_the_variant() -> None:
    recs = paired_recs([1, 2, 3, 4]) + only(paired_recs([-1, -2, -3, -4], variant="ca"), "ca")
    table = report.table_verdict(group(recs), "torch", drt="ca")
    assert cells(row_of(table, "DANN", "DRT (ca) vs static"))[7] == "DRT hurts by 2.5 [-4.6, -0.4]"
    assert "### torch: verdict (selection: last)" in report.render(recs, "digits", drt="ca")


def test_capacity_control_row_when_sr_uniform_ran() -> None:
    # static 40, 45, 50, 55; sr +1..+4 over static; sr_uniform +3, +3, +3, +3 over static →
    # DRT − control = −2, −1, 0, +1: mean −0.5, SD 1.29 → [−2.6, 1.6], no difference larger than ±2.7
    recs = paired_recs([1, 2, 3, 4]) + only(paired_recs([3, 3, 3, 3], variant="sr_uniform"), "sr_uniform")
    g = group(recs)
    table = report.table_verdict(g, "torch")
    assert cells(row_of(table, "DANN", "DRT (sr) vs static"))[7] == "DRT helps by 2.5 [0.4, 4.6]"
    row = cells(row_of(table, "DANN", "DRT (sr) vs capacity control (sr_uniform)"))
    assert row[2:5] == ["4", "-0.5", "[-2.6, +1.6]"]
    assert row[7].startswith("no difference larger than ±2.7 ")
    assert len(table.splitlines()) == 4  # header, rule, two rows
    expected = power.paired([41.0, 47.0, 53.0, 59.0], [43.0, 48.0, 53.0, 58.0],
                            names=("DRT", "the capacity control"))
    assert row[7] == expected["verdict"]
    assert "DRT (sr) vs capacity control (sr_uniform): to reach a ±2-point" in report.seeds_needed(g, "torch")
    # a capacity control that hurts is named as such in the verdict line
    recs = paired_recs([5, 6, 7, 8]) + only(paired_recs([1, 1, 1, 1], variant="sr_uniform"), "sr_uniform")
    row = cells(row_of(report.table_verdict(group(recs), "torch"), "DANN", "DRT (sr) vs capacity control "
                                                                               "(sr_uniform)"))
    assert row[7] == "DRT helps by 5.5 [3.4, 7.6]"


def test_no_capacity_control_row_without_sr_uniform() -> None:
    assert "capacity control" not in report.table_verdict(group(paired_recs([1, 2, 3, 4])), "torch")


def test_verdict_section_in_the_rendered_report() -> None:
    text = report.render(paired_recs([1, 2, 3, 4]), "digits")
    sec = text.split("### torch: verdict (selection: last)\n\n", 1)[1].split("\n\n### ", 1)[0]
    assert "| DANN     | DRT (sr) vs static | 4   | +2.5" in sec
    assert "you would need 5 seeds (4 ran)" in sec
    assert "Pairing check: 4 of 4 (static, DRT (sr)) job pairs share the initial-weights fingerprint" in sec
    src_val = report.render(paired_recs([1, 2, 3, 4]), "digits", selection="source-val")
    assert "### torch: verdict (selection: source-val)" in src_val  # no source-val figures: no row values
    oracle = report.render(paired_recs([1, 2, 3, 4]), "digits", selection="oracle")
    assert "### torch: verdict (selection: oracle) — ORACLE selection" in oracle


def test_existing_records_get_a_verdict_too() -> None:
    # test_report's records: Source only Avg diffs 3, 4.5, 3; DANN only seeds 0, 1 have every target
    table = report.table_verdict(group(records()), "torch")
    assert cells(row_of(table, "Source only"))[2:5] == ["3", "+3.5", "[+1.3, +5.7]"]
    assert cells(row_of(table, "DANN"))[2:5] == ["2", "+3.8", "[+0.6, +6.9]"]  # as the gain table


# --------------------------------------------------------------------------------------------- pairing check
def test_pairing_check_counts_shared_fingerprints() -> None:
    recs = paired_recs([1, 2, 3, 4])
    assert report.pairing_check(group(recs), "torch") == (
        "Pairing check: 4 of 4 (static, DRT (sr)) job pairs share the initial-weights fingerprint "
        "(`final.init_fingerprint`) — all of them, as paired jobs should."
    )
    recs[1]["final"] = {"init_fingerprint": "something else"}  # seed 0's sr record
    del recs[2]["final"]  # seed 1's static record
    text = report.pairing_check(group(recs), "torch")
    assert text.startswith("Pairing check: 2 of 4 (static, DRT (sr)) job pairs share the initial-weights")
    assert "1 with different fingerprints, 1 without one" in text


def test_pairing_check_without_fingerprints_says_unpaired() -> None:
    text = report.pairing_check(group(paired_recs([1, 2, 3, 4], fingerprints=False)), "torch")
    assert "without paired initialisation" in text
    assert "without paired initialisation" in report.render(records(), "digits")


def test_pairing_check_covers_the_capacity_control() -> None:
    recs = paired_recs([1, 2, 3, 4]) + only(paired_recs([3, 3, 3, 3], variant="sr_uniform"), "sr_uniform")
    text = report.pairing_check(group(recs), "torch")
    assert "4 of 4 (capacity control (sr_uniform), DRT (sr)) job pairs share" in text


# --------------------------------------------------------------------------------------------- agreement
def test_torch_and_keras_verdict_agreement() -> None:
    recs = (paired_recs([1, 2, 3, 4]) + paired_recs([1, -1, 2, -2], method="source_only")
            + paired_recs([2, 3, 4, 5], fw="keras")
            + paired_recs([1, 2, 3, 4], method="source_only", fw="keras"))
    table = report.table_verdict_agreement(group(recs))
    assert cells(table.splitlines()[0]) == ["method", "comparison", "torch", "keras", "agreement"]
    dann = cells(row_of(table, "DANN", "DRT (sr) vs static"))
    assert dann[2:] == ["DRT helps by 2.5 [0.4, 4.6]", "DRT helps by 3.5 [1.4, 5.6]",
                        "same verdict; intervals overlap"]
    so = cells(row_of(table, "Source only", "DRT (sr) vs static"))
    assert so[2].startswith("no difference larger than ±3.9") and so[3] == "DRT helps by 2.5 [0.4, 4.6]"
    assert so[4] == "different verdicts (none vs helps); intervals overlap"
    text = report.render(recs, "digits")
    assert "### Framework agreement on the verdict: torch vs Keras (selection: last)" in text
    assert "### keras: verdict (selection: last)" in text


def test_agreement_when_only_one_framework_has_a_comparison() -> None:
    recs = (paired_recs([1, 2, 3, 4]) + only(paired_recs([3, 3, 3, 3], variant="sr_uniform"), "sr_uniform")
            + paired_recs([-1, -2, -3, -4], fw="keras"))
    table = report.table_verdict_agreement(group(recs))
    assert cells(row_of(table, "DANN", "DRT (sr) vs static"))[4] == (
        "different verdicts (helps vs hurts); intervals disjoint"
    )
    row = cells(row_of(table, "DANN", "DRT (sr) vs capacity control (sr_uniform)"))
    assert row[3] == "not run" and row[4].startswith("—")


def test_no_verdict_agreement_with_one_framework() -> None:
    assert "agreement on the verdict" not in report.render(paired_recs([1, 2, 3, 4]), "digits")


# --------------------------------------------------------------------------------------------- curves
def with_curves(recs: list[dict], *, source_val: bool = True) -> list[dict]:
    """Two epochs × two evaluation points (steps 5, 10 | 15, 20) per record; accuracies grow with the step,
    DRT 0.05 above static."""
    out = []
    for r in recs:
        up = 0.05 if r["variant"] != "static" else 0.0
        hist = []
        for epoch in (1, 2):
            curve = [{"step": st, "epoch": epoch, "source_acc": 0.5 + 0.02 * st,
                      "source_val_acc": (0.4 + 0.02 * st + up) if source_val else None,
                      "target_acc": 0.2 + 0.01 * st + up + 0.01 * r["seed"]}
                     for st in (10 * epoch - 5, 10 * epoch)]
            hist.append({"epoch": epoch, "source_acc": curve[-1]["source_acc"],
                         "target_acc": curve[-1]["target_acc"], "curve": curve})
        out.append(dict(r, history=hist))
    return out


def test_mean_curves_per_step_over_seeds_and_targets() -> None:
    recs = with_curves(paired_recs([1, 2]) + paired_recs([1, 2], target="usps"))
    g = group(recs)
    (panel,) = report.curve_panels(g, "torch")
    label, source, static, drt = panel
    assert (label, source) == ("DANN", "source-val")
    steps, tgt = static["target"]
    assert steps == [5, 10, 15, 20]
    # seeds 0 and 1 (×2 targets): 20 + st + seed → mean 20 + st + 0.5
    assert tgt == pytest.approx([25.5, 30.5, 35.5, 40.5])
    assert drt["target"][1] == pytest.approx([30.5, 35.5, 40.5, 45.5])
    assert drt["source"][1] == pytest.approx([55.0, 65.0, 75.0, 85.0])  # source-val, DRT: 40 + 2 st + 5
    # without a held-out slice the source curve is the source (training) accuracy
    (panel,) = report.curve_panels(group(with_curves(paired_recs([1, 2]), source_val=False)), "torch")
    assert panel[1] == "source" and panel[2]["source"][1] == pytest.approx([60.0, 70.0, 80.0, 90.0])


def test_malformed_curve_points_are_skipped() -> None:
    (r,) = with_curves([rec("dann", "static", "mnist", 0, 0.5)])
    r["history"][0]["curve"] += ["junk", {"step": True, "target_acc": 0.5}, {"step": 7, "target_acc": 75.0}]
    r["history"][1]["curve"] = "not a list"
    assert [p[0] for p in report.curve_points(r)] == [5, 10, 7]
    assert report.curve_points(r)[-1][3] is None  # 75.0 is not a fraction: dropped
    assert report.curve_points(rec("dann", "static", "mnist", 0, 0.5)) == []


def test_learning_curve_png_written_when_curves_exist(tmp_path: Path) -> None:
    recs = with_curves(paired_recs([1, 2, 3, 4]) + paired_recs([1, -1, 2, -2], method="source_only"))
    path = report.write_report(recs, "digits", tmp_path / "out")
    png = path.parent / "curves-0-torch.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    text = path.read_text()
    sec = text.split("## Learning curves\n\n", 1)[1].split("\n\n## ", 1)[0]
    assert sec.startswith("Solid lines: **target** accuracy (%)")
    assert "![Learning curves, setting 1 (" in sec and "](curves-0-torch.png)" in sec
    assert "solid = target test accuracy, dashed = held-out source-validation accuracy." in sec
    # no curve points: no figure and no section
    path = report.write_report(paired_recs([1, 2, 3, 4]), "digits", tmp_path / "plain")
    assert not list(path.parent.glob("curves-*.png")) and "## Learning curves" not in path.read_text()


def test_no_plots_writes_no_learning_curves(tmp_path: Path) -> None:
    recs = with_curves(paired_recs([1, 2, 3, 4]), source_val=False)
    path = report.write_report(recs, "digits", tmp_path / "a", plots=False)
    assert not list(path.parent.glob("*.png")) and "## Learning curves" not in path.read_text()
    write_records(recs, tmp_path / "records.jsonl")
    assert report.main(["--results", str(tmp_path / "records.jsonl"), "--out", str(tmp_path / "b"),
                        "--no-plots"]) == 0
    assert not list((tmp_path / "b" / "digits").glob("*.png"))
    assert report.main(["--results", str(tmp_path / "records.jsonl"), "--out", str(tmp_path / "c")]) == 0
    out = tmp_path / "c" / "digits"
    assert (out / "curves-0-torch.png").exists()
    assert "dashed = source training accuracy." in (out / "README.md").read_text()
