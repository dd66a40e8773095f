"""Model selection without target labels (issue 13): the held-out source slice, the evaluation cadence and
the three selection rules."""

from __future__ import annotations

import numpy as np
import pytest

from harness import loop
from harness.data.splits import ArraySplit

RULE = {"fraction": 0.1, "max_per_source": 1000}


def _split(counts: tuple[int, ...] = (200, 50, 7)) -> ArraySplit:
    """Sample i has label i, so a split's labels say which samples it holds."""
    n = sum(counts)
    doms = np.concatenate([np.full(c, d) for d, c in enumerate(counts)])
    return ArraySplit(np.zeros((n, 2, 2, 1), np.uint8), np.arange(n), doms, ("a", "b", "c")[: len(counts)], n)


def test_source_val_split_is_disjoint_seeded_and_follows_the_size_rule() -> None:
    split = _split()
    train, val = loop.split_source_val(split, seed=3, rule=RULE)
    per_domain = {d: int((val.domains == d).sum()) for d in range(3)}
    assert per_domain == {0: 20, 1: 5, 2: 1}  # 10 % rounded, at least one per source
    held, kept = set(val.labels.tolist()), set(train.labels.tolist())
    assert not held & kept and len(held | kept) == len(split)  # disjoint, nothing lost
    assert loop.split_source_val(split, seed=3, rule=RULE)[1].labels.tolist() == val.labels.tolist()
    assert loop.split_source_val(split, seed=4, rule=RULE)[1].labels.tolist() != val.labels.tolist()
    capped = loop.split_source_val(_split((5000,)), seed=0, rule={"fraction": 0.5, "max_per_source": 1000})[1]
    assert len(capped) == 1000
    assert loop.split_source_val(split, seed=0, rule=None) == (split, None)


@pytest.mark.torch
def test_training_batches_never_contain_held_out_images() -> None:
    pytest.importorskip("torch")
    from harness.data.transforms import TransformSpec
    from impl_torch.data import make_loader

    split = _split((64, 64))
    train, val = loop.split_source_val(split, seed=0, rule=RULE)
    loader = make_loader(train, TransformSpec(), 16, train=True, seed=0, sampler="balanced")
    seen = set()
    for epoch in range(3):
        loader.set_epoch(epoch)
        for _, y, _ in loader:
            seen.update(y.tolist())
    held = set(val.labels.tolist())
    assert len(held) == 12 and seen and seen.isdisjoint(held)


def _p(step: int, target: float, val: float | None, source: float = 0.5) -> dict:
    return {"step": step, "epoch": 1, "source_acc": source, "source_val_acc": val, "target_acc": target}


def test_selection_picks_the_right_point_on_hand_written_records() -> None:
    points = [_p(10, 0.30, 0.60), _p(20, 0.50, 0.80), _p(30, 0.70, 0.80), _p(40, 0.40, 0.75)]
    sel = loop.select(points)
    assert sel["last"]["step"] == 40
    assert sel["source-val"]["step"] == 20  # highest source-val accuracy, the earliest on ties
    assert sel["oracle"]["step"] == 30  # highest target test accuracy: an oracle
    no_val = loop.select([_p(10, 0.3, None), _p(20, 0.2, None)])
    assert no_val["source-val"] is None and no_val["last"]["step"] == 20
    assert loop.select([]) == {"last": None, "source-val": None, "oracle": None}


def test_source_val_selection_stays_in_the_final_stage() -> None:
    """ADDA-like: the stage-1 source model scores best on the held-out sources; the pick must be the adapted
    model of the final stage, while the oracle may still look everywhere."""
    staged = [_p(10, 0.30, 0.95) | {"stage": "source"}, _p(20, 0.35, 0.96) | {"stage": "source"},
              _p(30, 0.60, 0.90) | {"stage": "adapt"}, _p(40, 0.70, 0.88) | {"stage": "adapt"}]
    sel = loop.select(staged)
    assert sel["source-val"]["step"] == 30 and sel["oracle"]["step"] == 40 and sel["last"]["step"] == 40


def test_final_record_selection_reads_every_curve_point() -> None:
    history = [
        {"epoch": 1, "target_acc": 0.5, "source_acc": 0.5, "curve": [_p(5, 0.2, 0.9), _p(10, 0.5, 0.1)]},
        {"epoch": 2, "target_acc": 0.6, "source_acc": 0.5, "curve": [_p(15, 0.9, 0.2), _p(20, 0.6, 0.3)]},
    ]
    rec = loop.final_record(history, 2, 1.0, "cpu", {}, "torch", 10)
    assert rec["selection"]["source-val"]["step"] == 5 and rec["selection"]["oracle"]["step"] == 15
    assert rec["selection"]["last"]["step"] == 20 and rec["target_acc"] == 0.6


@pytest.mark.torch
def test_a_job_with_cadence_and_held_out_sources_records_curves(tmp_path) -> None:
    pytest.importorskip("torch")
    from harness import hparams as H
    from impl_torch.train import run_job

    job = {
        "suite": "smoke", "root": None, "target": "plain", "method": "source_only", "variant": "sr",
        "arch": "digits_cnn", "seed": 0, "epochs": 2, "steps_per_epoch": 4, "batch_size": 8, "device": "cpu",
        "model": {"width": 0.25}, "hparams": H.resolve("source_only", "smoke"), "init": "paired",
        "source_val": RULE, "eval_every": 2,
    }  # fmt: skip
    records: list[dict] = []
    final = run_job(job, tmp_path, on_epoch=records.append)
    steps = [p["step"] for r in records for p in r["curve"]]
    assert steps == [2, 4, 6, 8]
    assert all(0.0 <= p["source_val_acc"] <= 1.0 for r in records for p in r["curve"])
    assert records[-1]["source_val_acc"] == records[-1]["curve"][-1]["source_val_acc"]
    assert final["selection"]["last"]["step"] == 8 and final["selection"]["source-val"] is not None
    assert isinstance(final["init_fingerprint"], str) and len(final["init_fingerprint"]) == 16


def test_report_uses_the_source_val_selection() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_report import records as sample_records

    from harness import report

    recs = sample_records()
    for r in recs:
        r["source_val_target_acc"] = 0.25
        r["source_val_source_acc"] = 0.75
    text = report.render(recs, "digits", selection="source-val")
    assert text.startswith("# Results: `digits` suite — source-validation model selection")
    assert "**Model selection: source validation**" in text and "25.0" in text
    last = report.render(recs, "digits", selection="last")
    head = last.split("## ")[0].lower().replace("`--selection source-val` picks", "")
    assert "source validation" not in head


def test_auto_selection_is_source_val_only_where_every_job_held_a_slice_out(tmp_path) -> None:
    """The default (auto): a setting whose done jobs all held out a source slice is scored by source-val, a
    setting with one job without a slice by the last epoch; the CLI's README.md says which, per setting."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_report import records as sample_records

    from harness import report

    held = sample_records()
    for r in held:
        if r["status"] == "done":
            r["source_val_target_acc"], r["source_val_source_acc"] = 0.25, 0.75
    assert report.resolve_selection(held, "auto") == "source-val"
    assert [g.selection for g in report.groups_of(held, "digits", "auto")] == ["source-val"]
    mixed = [dict(r) for r in held]
    mixed[0].pop("source_val_target_acc")
    assert report.resolve_selection(mixed, "auto") == "last"
    assert report.resolve_selection(held, "oracle") == "oracle"  # explicit rules are kept as asked
    assert report.resolve_selection([], "auto") == "last"

    text = report.render(held, "digits", selection="auto")
    assert "Model selection: best held-out source accuracy (source-val)." in text
    assert "| Source only           | 25.0" in text or "25.0 ± 0.0" in text
    assert "ORACLE" not in text.split("the verdict under each selection rule")[0]  # only that table shows it
    assert "Model selection: last epoch." in report.render(mixed, "digits", selection="auto")

    runs = tmp_path / "records.jsonl"
    runs.write_text("".join(json.dumps(r) + "\n" for r in held))
    assert report.main(["--results", str(runs), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    written = (tmp_path / "out" / "digits" / "README.md").read_text()
    assert "(`--selection auto`, the default)" in written and "(source-val)." in written


def test_each_forced_rule_writes_its_own_file_beside_the_default(tmp_path) -> None:
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_report import records as sample_records

    from harness import report

    runs = tmp_path / "records.jsonl"
    runs.write_text("".join(json.dumps(r) + "\n" for r in sample_records()))
    for rule in ("auto", "last", "source-val", "oracle"):
        assert report.main(["--results", str(runs), "--out", str(tmp_path), "--selection", rule]) == 0
    names = {p.name for p in (tmp_path / "digits").glob("README*.md")}
    assert names == {"README.md", "README-last.md", "README-source-val.md", "README-oracle.md"}
    assert "ORACLE" in (tmp_path / "digits" / "README-oracle.md").read_text()
    assert "ORACLE" not in (tmp_path / "digits" / "README.md").read_text()  # no record held a slice out


def test_the_verdict_under_each_selection_rule_on_hand_written_records() -> None:
    """Two seeds of static and sr; last, source-val and oracle give known, different paired gains."""
    from harness import report

    def rec(variant: str, seed: int, last: float, val: float, oracle: float) -> dict:
        spec = {"framework": "torch", "suite": "digits", "profile": "study", "arch": "digits_cnn",
                "epochs": 8, "steps_per_epoch": 200, "batch_size": 32, "data": {}, "formulation": "auto",
                "hparams_overrides": {}, "selection": "last", "method": "dann", "variant": variant,
                "target": "mnistm", "seed": seed, "device": "cpu", "root": None, "backend": None,
                "hparams": {}}
        return {"status": "done", "name": f"torch_dann_{variant}_s{seed}", "spec": spec, "framework": "torch",
                "job_id": f"j{variant}{seed}", "suite": "digits", "method": "dann", "variant": variant,
                "target": "mnistm", "seed": seed, "device": "cpu", "profile": "study", "target_acc": last,
                "source_acc": 0.9, "oracle_target_acc": oracle, "oracle_epoch": 3,
                "source_val_target_acc": val, "source_val_source_acc": 0.9}  # fmt: skip

    recs = [rec("static", 0, 0.70, 0.70, 0.72), rec("static", 1, 0.72, 0.71, 0.74),
            rec("sr", 0, 0.74, 0.71, 0.80), rec("sr", 1, 0.77, 0.70, 0.81)]  # fmt: skip
    g = report.groups_of(recs, "digits")[0]
    assert g.selection == "source-val"
    table = report.table_verdict_by_selection(g, "torch")
    row = next(ln for ln in table.splitlines() if ln.startswith("| DANN"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].startswith("+4.5 [") and cells[2].endswith("(n=2)")  # last: +4, +5
    assert cells[3].startswith("+0.0 [")  # source-val: +1, -1
    assert cells[4].startswith("+7.5 [")  # oracle: +8, +7
    text = report.render(recs, "digits")
    assert "the verdict under each selection rule" in text and "ORACLE (target labels)" in text
