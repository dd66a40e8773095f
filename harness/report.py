"""``python -m harness.report``: markdown tables (tabulate) and plots from the job records alone.

Reads the records of a runs directory (or a ``records.jsonl``) and writes ``results/<suite>/README.md``
(``auto`` selection; ``README-last.md``, ``README-source-val.md``, ``README-oracle.md`` for a forced
``--selection``) plus ``records.jsonl`` and PNG plots next to it:

* **Table 2 shape** — rows = methods, columns = target domains + Avg; each cell ``static / DRT`` as
  mean ± std over seeds. *std* is the sample standard deviation (n − 1), **not** the standard error.
  Avg is computed per seed over all targets, then mean ± std over the seeds that have every target.
* **DRT − static gain** per cell with a paired 95 % confidence interval over seeds
  (mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n of the per-seed differences; scipy's t distribution).
* **Source accuracy** in the same shape, with the chance level, so one sees the models learned.
* **Variants** (static, ca, sr, comb: the paper's Table 1 shape), **framework agreement** (torch vs Keras per
  cell), **provenance** (commit, versions, device, hardware, wall time), **failed / incomplete / missing
  jobs** listed explicitly, and — only for ``digit-five`` and ``domainnet`` — **the paper's numbers**,
  labelled so.
* **Verdict** per method and framework (:mod:`harness.power`): n paired seeds (per-seed Avg), paired mean
  gain DRT − static with its 95 % t-interval, paired SD, minimum detectable effect (80 % power, α = 0.05)
  and one verdict line; a second row against the capacity control (``sr_uniform``) when it ran; the seeds a
  ±2-point interval would need; a pairing check on ``final.init_fingerprint``; and, when both frameworks
  ran, whether torch and Keras reach the same verdict.
* **Learning curves** (records with ``history[].curve`` points): source-val (else source) and target
  accuracy vs training step, static vs DRT, mean over seeds and targets, one PNG per setting × framework.
* **Model selection**: the last epoch by default; ``--selection oracle`` (best epoch on *target test*
  accuracy: it peeks at test labels) is labelled as oracle in every title where it appears.

Records with different settings (profile, architecture, epochs, steps, batch size, data sizes, formulation,
hyperparameter overrides) are never averaged together: each setting gets its own section.

**Hostile or broken records** (policy in :mod:`harness.records`): every record is checked first. An invalid
one (a missing field, a seed that is not an integer, an accuracy outside [0, 1] such as ``75.0``, a done job
without an accuracy, …) is *refused*: never shown in a table, printed to stderr as ``file:line: field …:
expected …``, listed under *Refused and duplicate records* and counted in the header. Of two records of the
same job cell (setting, framework, method, variant, target, seed) only the one that finished last is shown;
a different ``job_id`` gets a warning naming both files. ``--strict`` stops at the first invalid record or
conflicting duplicate instead (exit 2). An unreadable ``coefficients.npz`` only skips its plot (warning).
The output depends only on the records (no clock, no host), so regenerating it gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import method_table, paper_numbers
from harness.errors import DrtBenchError
from harness.jobs import DONE, FAILED, canonical_json
from harness.records import SETTING_KEYS, Records, check_records, field_of
from harness.spec.layer import VARIANTS
from harness.store import INCOMPLETE, RECORDS_FILE, collect, suites_in, write_records

if TYPE_CHECKING:  # harness.power imports scipy: only when a verdict is computed
    from harness.power import PairedResult

METHOD_ORDER: tuple[str, ...] = method_table.METHODS
METHOD_LABELS: dict[str, str] = {row.name: row.display for row in method_table.ROWS}
VARIANT_ORDER: tuple[str, ...] = VARIANTS
VARIANT_LABELS: dict[str, str] = {
    "static": "static",
    "ca": "channel attention (ca)",
    "sr": "subspace routing (sr)",
    "sr_uniform": "capacity control (sr_uniform)",
    "comb": "combination (comb)",
}
#: The capacity-control variant: DRT's parameters, uniform (input-independent) routing.
CONTROL = "sr_uniform"
#: Half-width (points) of the 95 % interval the "seeds needed" line aims at.
TARGET_HALFWIDTH = 2.0
DOMAIN_ORDER: dict[str, tuple[str, ...]] = {
    "digits": ("mnist", "mnistm", "usps", "syn", "svhn"),
    **paper_numbers.DOMAINS,
}
NUM_CLASSES: dict[str, int] = {"digits": 10, "digit-five": 10, "domainnet": 345, "smoke": 10}
SELECTIONS: tuple[str, ...] = ("auto", "last", "source-val", "oracle")


#: the file each forced rule writes beside the default ``README.md`` (``auto``), so none overwrites another
README_NAMES = {"last": "README-last.md", "source-val": "README-source-val.md", "oracle": "README-oracle.md"}


def resolve_selection(records: Sequence[dict[str, Any]], selection: str) -> str:
    """The rule a setting's tables use: ``auto`` (the default) is ``source-val`` when every done record of the
    setting held out a source slice (the ``study`` profile), else ``last``; the other rules are themselves.

    Neither resolution reads a target label; ``oracle`` is only ever chosen explicitly."""
    if selection != "auto":
        return selection
    done = [r for r in records if r.get("status") == DONE]
    held_out = bool(done) and all(r.get("source_val_target_acc") is not None for r in done)
    return "source-val" if held_out else "last"
NA = "—"


# --------------------------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and *sample* standard deviation (n − 1); std is None for n < 2."""
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) >= 2 else None)


def paired_ci(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean of paired differences and its two-sided t confidence interval (None, None for n < 2)."""
    from scipy import stats

    n = len(diffs)
    m = statistics.fmean(diffs)
    if n < 2:
        return m, None, None
    sd = statistics.stdev(diffs)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return m, m - half, m + half


# --------------------------------------------------------------------------------------------- records
def _spec(rec: dict[str, Any]) -> dict[str, Any]:
    return rec.get("spec") or {}


def _pct(x: Any) -> float | None:
    """Accuracy as a percentage (records hold fractions in [0, 1])."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return 100.0 * float(x)


def accuracy(rec: dict[str, Any], selection: str = "last", which: str = "target") -> float | None:
    """Target or source accuracy (%) of a *done* record under the model selection rule."""
    if rec.get("status") != DONE:
        return None
    if selection == "source-val":  # only jobs that held out a source slice have it: others are missing
        return _pct(rec.get("source_val_target_acc" if which == "target" else "source_val_source_acc"))
    if which == "target":
        if selection == "oracle":  # no oracle figure recorded: the last epoch is the best one known
            oracle = rec.get("oracle_target_acc")
            return _pct(rec.get("target_acc") if oracle is None else oracle)
        return _pct(rec.get("target_acc"))
    if selection == "oracle" and rec.get("oracle_epoch") is not None:
        for h in rec.get("history") or []:
            if h.get("epoch") == rec["oracle_epoch"] and h.get("source_acc") is not None:
                return _pct(h["source_acc"])
    return _pct(rec.get("source_acc"))


def setting_key(rec: dict[str, Any]) -> str:
    """Canonical JSON of the record's setting (see :data:`SETTING_KEYS`)."""
    spec = _spec(rec)
    return canonical_json({k: spec.get(k) for k in SETTING_KEYS})


def setting_label(setting: dict[str, Any]) -> str:
    """Human description of a setting."""
    steps = setting.get("steps_per_epoch")
    parts = [
        f"profile `{setting.get('profile')}`",
        f"{setting.get('arch')}"
        + "".join(f" {k} {v}" for k, v in sorted((setting.get("model") or {}).items())),
        f"{setting.get('epochs')} epochs × " + (f"{steps} steps" if steps else "one pass over the sources"),
        f"batch {setting.get('batch_size')}",
    ]
    data = setting.get("data") or {}
    if data:
        parts.append("data " + ", ".join(f"{k}={v}" for k, v in sorted(data.items())))
    if setting.get("formulation"):
        parts.append(f"DRT formulation `{setting['formulation']}`")
    if setting.get("precision"):
        parts.append(f"precision {setting['precision']} (mixed)")
    if setting.get("hparams_seed"):
        parts.append(f"random hparams draw {setting['hparams_seed']}")
    if setting.get("hparams_overrides"):
        parts.append(f"hparams overrides `{json.dumps(setting['hparams_overrides'], sort_keys=True)}`")
    pre = setting.get("pretrained")
    if isinstance(pre, dict):
        name, digest = Path(str(pre.get("path"))).name, str(pre.get("sha256"))[:12]
        parts.append(f"backbone from `{name}` (sha256 {digest})")
    elif pre:
        parts.append(f"backbone from `{Path(str(pre)).name}`")
    else:
        parts.append("trained from scratch")
    parts.append(
        "paired initialisation" if setting.get("init") == "paired"
        else "independent initialisation (variants of a seed share data order, not initial weights)"
    )
    return ", ".join(parts)


def domain_order(suite: str) -> tuple[str, ...]:
    """The suite's domain order: the data layer's when importable (no data is read), else a built-in list."""
    try:
        from harness import data as hdata

        cls_domains = hdata.get_suite(suite).domains
        if cls_domains:
            return tuple(str(d) for d in cls_domains)
    except Exception:  # noqa: BLE001 - missing data root or data layer: fall back to the built-in order
        pass
    return DOMAIN_ORDER.get(suite, ())


def _order(values: Iterable[str], known: Sequence[str]) -> list[str]:
    vals = set(values)
    return [v for v in known if v in vals] + sorted(vals - set(known))


@dataclass
class Cell:
    """The records of one (framework, method, variant, target) cell, by seed."""

    values: dict[int, float] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    incomplete: list[int] = field(default_factory=list)


@dataclass
class Group:
    """All records of one suite + setting: cells indexed by (framework, method, variant, target)."""

    suite: str
    setting: dict[str, Any]
    records: list[dict[str, Any]]
    selection: str = "last"

    def __post_init__(self) -> None:
        self.frameworks = _order({str(field_of(r, "framework")) for r in self.records}, ("torch", "keras"))
        self.methods = _order({str(field_of(r, "method")) for r in self.records}, METHOD_ORDER)
        self.variants = _order({str(field_of(r, "variant")) for r in self.records}, VARIANT_ORDER)
        self.targets = _order({str(field_of(r, "target")) for r in self.records}, domain_order(self.suite))
        self.seeds = sorted({int(field_of(r, "seed")) for r in self.records})

    def cell(self, fw: str, method: str, variant: str, target: str, which: str = "target") -> Cell:
        c = Cell()
        for r in self.records:
            if (
                field_of(r, "framework"),
                field_of(r, "method"),
                field_of(r, "variant"),
                field_of(r, "target"),
            ) != (fw, method, variant, target):
                continue
            seed = int(field_of(r, "seed"))
            status = r.get("status")
            acc = accuracy(r, self.selection, which) if status == DONE else None
            if acc is not None:
                c.values[seed] = acc
            elif status == DONE:  # done but no accuracy: treat as failed record
                c.failed.append(seed)
            elif status == FAILED:
                c.failed.append(seed)
            else:
                c.incomplete.append(seed)
        return c

    def per_seed_avg(self, fw: str, method: str, variant: str, which: str = "target") -> dict[int, float]:
        """Per seed: mean over every target of the group (only seeds that have all targets)."""
        cells = [self.cell(fw, method, variant, t, which) for t in self.targets]
        out = {}
        for s in self.seeds:
            vals = [c.values.get(s) for c in cells]
            if all(v is not None for v in vals):
                out[s] = statistics.fmean(vals)  # type: ignore[arg-type]
        return out

    def has(self, fw: str, method: str, variant: str) -> bool:
        return any(
            (field_of(r, "framework"), field_of(r, "method"), field_of(r, "variant")) == (fw, method, variant)
            for r in self.records
        )


def fmt_stat(
    values: dict[int, float] | Sequence[float],
    expected: int | None = None,
    failed: int = 0,
    incomplete: int = 0,
) -> str:
    """``mean ± std`` (one decimal), ``mean`` for one seed; ``failed`` / ``incomplete`` / ``—`` (not run) when
    there is no value; ``(n=k/N[, f failed][, i incomplete])`` when seeds are missing."""
    vals = list(values.values()) if isinstance(values, dict) else list(values)
    if not vals:
        return "failed" if failed else ("incomplete" if incomplete else NA)
    m, sd = mean_std(vals)
    text = f"{m:.1f}" if sd is None else f"{m:.1f} ± {sd:.1f}"
    if expected is not None and len(vals) < expected:
        text += (f" (n={len(vals)}/{expected}" + (f", {failed} failed" if failed else "")
                 + (f", {incomplete} incomplete" if incomplete else "") + ")")
    return text


def fmt_gain(diffs: Sequence[float], expected: int | None = None) -> str:
    """``+m [lo, hi]`` (paired 95 % CI), ``+m (n=1)`` without a CI, ``—`` for none."""
    if not diffs:
        return NA
    m, lo, hi = paired_ci(diffs)
    text = f"{m:+.1f} (n=1)" if lo is None else f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]"
    if expected is not None and 1 < len(diffs) < expected:
        text += f" (n={len(diffs)}/{expected})"
    return text


# --------------------------------------------------------------------------------------------- tables
def _md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


SELECTION_WORDS = {
    "last": "last epoch",
    "source-val": "best held-out source accuracy (source-val)",
    "oracle": "ORACLE (best epoch on target test labels)",
}


def _sel_note(selection: str) -> str:
    if selection == "source-val":
        return " — selection on held-out source accuracy"
    return " — ORACLE selection (best epoch on target test labels)" if selection == "oracle" else ""


def _cols(g: Group) -> list[str]:
    return [*g.targets, "Avg"]


def _static_drt_cell(g: Group, fw: str, method: str, drt: str, target: str | None, which: str) -> str:
    n = len(g.seeds)
    parts = []
    for variant in ("static", drt):
        if target is None:
            vals = g.per_seed_avg(fw, method, variant, which)
            failed = {s for t in g.targets for s in g.cell(fw, method, variant, t, which).failed}
            inc = {s for t in g.targets for s in g.cell(fw, method, variant, t, which).incomplete}
            parts.append(
                fmt_stat(vals, n, len(failed - set(vals)), len(inc - failed - set(vals)))
                if g.has(fw, method, variant)
                else NA
            )
        else:
            c = g.cell(fw, method, variant, target, which)
            parts.append(
                fmt_stat(c.values, n, len(c.failed), len(c.incomplete)) if g.has(fw, method, variant) else NA
            )
    return " / ".join(parts)


def table_static_drt(g: Group, fw: str, drt: str = "sr", which: str = "target") -> str:
    """The paper's Table 2 shape for one framework: cells ``static / DRT``."""
    rows = []
    for method in g.methods:
        if not (g.has(fw, method, "static") or g.has(fw, method, drt)):
            continue
        row = [METHOD_LABELS.get(method, method)]
        row += [_static_drt_cell(g, fw, method, drt, t, which) for t in g.targets]
        row.append(_static_drt_cell(g, fw, method, drt, None, which))
        rows.append(row)
    return _md(["method", *_cols(g)], rows)


def table_gain(g: Group, fw: str, drt: str = "sr") -> str:
    """DRT − static, paired over seeds, with the 95 % t confidence interval."""
    rows = []
    n = len(g.seeds)
    for method in g.methods:
        if not (g.has(fw, method, "static") and g.has(fw, method, drt)):
            continue
        row = [METHOD_LABELS.get(method, method)]
        for t in g.targets:
            a, b = g.cell(fw, method, "static", t).values, g.cell(fw, method, drt, t).values
            row.append(fmt_gain([b[s] - a[s] for s in sorted(a) if s in b], n))
        a, b = g.per_seed_avg(fw, method, "static"), g.per_seed_avg(fw, method, drt)
        row.append(fmt_gain([b[s] - a[s] for s in sorted(a) if s in b], n))
        rows.append(row)
    return _md(["method", *_cols(g)], rows)


def table_variants(g: Group, fw: str) -> str:
    """The paper's Table 1 shape: one row per method × variant that was run."""
    rows = []
    n = len(g.seeds)
    for method in g.methods:
        for variant in g.variants:
            if not g.has(fw, method, variant):
                continue
            row = [METHOD_LABELS.get(method, method), VARIANT_LABELS.get(variant, variant)]
            for t in g.targets:
                c = g.cell(fw, method, variant, t)
                row.append(fmt_stat(c.values, n, len(c.failed), len(c.incomplete)))
            avg = g.per_seed_avg(fw, method, variant)
            failed = {s for t in g.targets for s in g.cell(fw, method, variant, t).failed}
            inc = {s for t in g.targets for s in g.cell(fw, method, variant, t).incomplete}
            row.append(fmt_stat(avg, n, len(failed - set(avg)), len(inc - failed - set(avg))))
            rows.append(row)
    return _md(["method", "variant", *_cols(g)], rows)


def table_agreement(g: Group, fws: tuple[str, str] = ("torch", "keras")) -> str:
    """torch vs Keras per cell: ``torch / keras (Δ keras − torch)`` of the means over each one's seeds."""
    rows = []
    for method in g.methods:
        for variant in g.variants:
            if not (g.has(fws[0], method, variant) and g.has(fws[1], method, variant)):
                continue
            row = [METHOD_LABELS.get(method, method), variant]
            deltas = []
            for t in g.targets:
                a, b = g.cell(fws[0], method, variant, t).values, g.cell(fws[1], method, variant, t).values
                if a and b:
                    ma, mb = statistics.fmean(a.values()), statistics.fmean(b.values())
                    deltas.append(mb - ma)
                    row.append(f"{ma:.1f} / {mb:.1f} (Δ {mb - ma:+.1f})")
                else:
                    row.append(f"{fmt_stat(a)} / {fmt_stat(b)}")
            row.append(f"{max(abs(d) for d in deltas):.1f}" if deltas else NA)
            rows.append(row)
    return _md(["method", "variant", *g.targets, "max |Δ|"], rows)


# --------------------------------------------------------------------------------------------- verdicts
@dataclass
class Comparison:
    """One paired comparison of a method in one framework: ``a`` − ``b`` over the seeds both have (per-seed
    Avg over the targets). ``result`` is None when no seed has both (``n = 0``)."""

    method: str
    a: str
    b: str
    label: str
    seeds: list[int]
    result: PairedResult | None


def _comparison_label(drt: str, other: str) -> str:
    if other == "static":
        return f"DRT ({drt}) vs static"
    if other == CONTROL:
        return f"DRT ({drt}) vs capacity control ({CONTROL})"
    return f"DRT ({drt}) vs {other}"


def comparisons(g: Group, fw: str, drt: str = "sr") -> list[Comparison]:
    """Per method (table order): DRT vs static, then DRT vs the capacity control when it ran; only the
    comparisons whose two variants both ran in ``fw``."""
    from harness import power

    out = []
    for method in g.methods:
        if not g.has(fw, method, drt):
            continue
        for other in ("static", CONTROL):
            if other == drt or not g.has(fw, method, other):
                continue
            a, b = g.per_seed_avg(fw, method, drt), g.per_seed_avg(fw, method, other)
            seeds = [s for s in sorted(a) if s in b]
            names = ("DRT", "static" if other == "static" else "the capacity control" if other == CONTROL
                     else other)
            result = (
                power.paired([a[s] for s in seeds], [b[s] for s in seeds], names=names) if seeds else None
            )
            out.append(Comparison(method, drt, other, _comparison_label(drt, other), seeds, result))
    return out


def _num(x: float | None, sign: bool = False) -> str:
    """One decimal (``+`` for ``sign``), never ``-0.0``; ``—`` for None."""
    if x is None:
        return NA
    s = f"{x:+.1f}" if sign else f"{x:.1f}"
    if s == "-0.0":
        return "+0.0" if sign else "0.0"
    return s


def _verdict_text(c: Comparison) -> str:
    return c.result["verdict"] if c.result else "no paired seeds (a seed needs every target in both arms)"


def table_verdict(g: Group, fw: str, drt: str = "sr") -> str:
    """One row per method × comparison: n, paired mean gain (points), 95 % CI, paired SD, MDE, verdict."""
    rows = []
    for c in comparisons(g, fw, drt):
        r = c.result
        rows.append(
            [
                METHOD_LABELS.get(c.method, c.method),
                c.label,
                str(len(c.seeds)),
                _num(r["mean"], sign=True) if r else NA,
                f"[{_num(r['lo'], True)}, {_num(r['hi'], True)}]" if r and r["lo"] is not None else NA,
                _num(r["sd"]) if r else NA,
                _num(r["mde"]) if r else NA,
                _cell_text(_verdict_text(c)),
            ]
        )
    return _md(
        ["method", "comparison", "n", "gain (points)", "95 % CI", "paired SD", "MDE (80 % power)", "verdict"],
        rows,
    )


def table_verdict_by_selection(g: Group, fw: str, drt: str = "sr") -> str:
    """Does the verdict depend on the model-selection rule? Per method × comparison: the paired gain and its
    95 % interval (``*`` where the interval excludes 0) under the last epoch, source validation and the
    labelled ORACLE (the release's rule: best epoch on target test labels), each over its own paired seeds."""
    rules = ("last", "source-val", "oracle")
    by_rule = {
        rule: {(c.method, c.b): c for c in comparisons(Group(g.suite, g.setting, g.records, rule), fw, drt)}
        for rule in rules
    }
    rows = []
    for c in comparisons(g, fw, drt):
        row = [METHOD_LABELS.get(c.method, c.method), c.label]
        for rule in rules:
            r = by_rule[rule][(c.method, c.b)].result
            if r is None:
                row.append(NA)
                continue
            text = _num(r["mean"], sign=True)
            if r["lo"] is not None:
                star = "*" if r["lo"] > 0 or r["hi"] < 0 else ""
                text += f" [{_num(r['lo'], True)}, {_num(r['hi'], True)}]{star} (n={r['n']})"
            row.append(text)
        rows.append(row)
    return _md(["method", "comparison", "last epoch", "source-val", "ORACLE (target labels)"], rows)


def seeds_needed(g: Group, fw: str, drt: str = "sr", halfwidth: float = TARGET_HALFWIDTH) -> str:
    """Per comparison: how many paired seeds a ±``halfwidth``-point 95 % interval needs at the observed SD."""
    from harness import power

    lines = []
    for c in comparisons(g, fw, drt):
        what = f"{METHOD_LABELS.get(c.method, c.method)}, {c.label}"
        r = c.result
        if r is None or r["sd"] is None:
            lines.append(f"* {what}: no paired SD yet (n = {len(c.seeds)}; at least 2 paired seeds needed).")
            continue
        need = power.pairs_for_halfwidth(r["sd"], halfwidth)
        lines.append(
            f"* {what}: to reach a ±{halfwidth:g}-point 95 % interval at this paired SD ({_num(r['sd'])}) "
            f"you would need {need} seeds ({r['n']} ran)."
        )
    return "\n".join(lines)


def table_pairing(g: Group, fw: str, drt: str = "sr") -> str:
    """What pairing buys, per method × comparison: the per-run SD of each arm over seeds, the paired SD of
    their difference and the correlation r of the two arms across seeds. Var(a − b) = Var(a) + Var(b) −
    2 r SD(a) SD(b): independent runs (r ≈ 0) give a paired SD ≈ √2 × the per-run SD; pairing helps exactly
    as much as it makes r positive."""
    rows = []
    for c in comparisons(g, fw, drt):
        a, b = g.per_seed_avg(fw, c.method, c.a), g.per_seed_avg(fw, c.method, c.b)
        xs, ys = [a[s] for s in c.seeds], [b[s] for s in c.seeds]
        if len(c.seeds) < 3:
            continue
        sa, sb = statistics.stdev(xs), statistics.stdev(ys)
        r = statistics.correlation(xs, ys) if sa > 0 and sb > 0 else None
        sd = c.result["sd"] if c.result else None
        rows.append(
            [
                METHOD_LABELS.get(c.method, c.method),
                c.label,
                str(len(c.seeds)),
                _num(sb),
                _num(sa),
                _num(sd),
                NA if r is None else f"{r:+.2f}",
            ]
        )
    return _md(["method", "comparison", "n", "SD (other arm)", "SD (DRT)", "paired SD", "r"], rows)


def _fingerprint(rec: dict[str, Any]) -> str | None:
    final = rec.get("final")
    fp = final.get("init_fingerprint") if isinstance(final, dict) else None
    return fp if isinstance(fp, str) and fp else None


def pairing_check(g: Group, fw: str, drt: str = "sr") -> str:
    """How many (static, DRT) job pairs (method, target, seed; both done) share ``final.init_fingerprint``."""
    done: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for r in g.records:
        if r.get("status") == DONE and field_of(r, "framework") == fw:
            key = (str(field_of(r, "method")), str(field_of(r, "variant")), str(field_of(r, "target")),
                   int(field_of(r, "seed")))
            done[key] = r
    if not any(_fingerprint(r) for r in done.values()):
        return (
            "Pairing check: no record carries an initial-weights fingerprint (`final.init_fingerprint`): "
            "these runs were made without paired initialisation — a static model and its DRT twin share the "
            "seed (data order), not their initial weights."
        )
    out = []
    for other in ("static", CONTROL):
        if other == drt:
            continue
        what = "static" if other == "static" else f"capacity control ({other})"
        pairs = [
            (r, done[(m, drt, t, s)])
            for (m, v, t, s), r in sorted(done.items())
            if v == other and (m, drt, t, s) in done
        ]
        if not pairs:
            continue
        fps = [(_fingerprint(x), _fingerprint(y)) for x, y in pairs]
        same = sum(1 for x, y in fps if x is not None and x == y)
        missing = sum(1 for x, y in fps if x is None or y is None)
        differ = len(pairs) - same - missing
        text = (
            f"Pairing check: {same} of {len(pairs)} ({what}, DRT ({drt})) job pairs share the "
            "initial-weights fingerprint (`final.init_fingerprint`)"
        )
        if same == len(pairs):
            text += " — all of them, as paired jobs should."
        else:
            why = [f"{differ} with different fingerprints"] if differ else []
            why += [f"{missing} without one (made before paired initialisation)"] if missing else []
            text += (
                f"; {', '.join(why)}: those pairs share the seed (data order) but not their initial weights."
            )
        out.append(text)
    return "\n\n".join(out) if out else "Pairing check: no (static, DRT) job pair has both jobs done."


def table_verdict_agreement(g: Group, drt: str = "sr", fws: tuple[str, str] = ("torch", "keras")) -> str:
    """Per method × comparison: each framework's verdict and :func:`harness.power.agreement`'s summary."""
    from harness import power

    by = {fw: {(c.method, c.b): c for c in comparisons(g, fw, drt)} for fw in fws}
    keys = list(by[fws[0]]) + [k for k in by[fws[1]] if k not in by[fws[0]]]
    order = {m: i for i, m in enumerate(g.methods)}
    keys.sort(key=lambda k: (order.get(k[0], len(order)), k[1] != "static"))
    rows = []
    for key in keys:
        cx, cy = by[fws[0]].get(key), by[fws[1]].get(key)
        label = (cx or cy).label  # type: ignore[union-attr]
        if cx and cy and cx.result and cy.result:
            summary = power.agreement(cx.result, cy.result)["summary"]
        else:
            summary = f"{NA} (not run or no paired seeds in both frameworks)"
        rows.append(
            [
                METHOD_LABELS.get(key[0], key[0]),
                label,
                _cell_text(_verdict_text(cx)) if cx else "not run",
                _cell_text(_verdict_text(cy)) if cy else "not run",
                summary,
            ]
        )
    return _md(["method", "comparison", fws[0], fws[1], "agreement"], rows)


# --------------------------------------------------------------------------------------------- curves
def _curve_point(p: Any) -> tuple[int, float | None, float | None, float | None] | None:
    """``(step, source_acc, source_val_acc, target_acc)`` in %, or None for a malformed point."""
    if not isinstance(p, dict):
        return None
    step = p.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return None

    def frac(x: Any) -> float | None:
        v = _pct(x)
        return v if v is not None and 0.0 <= v <= 100.0 else None

    return step, frac(p.get("source_acc")), frac(p.get("source_val_acc")), frac(p.get("target_acc"))


def curve_points(rec: dict[str, Any]) -> list[tuple[int, float | None, float | None, float | None]]:
    """Every well-formed evaluation point of a record's ``history[].curve`` (malformed ones skipped)."""
    hist = rec.get("history")
    out = []
    for h in hist if isinstance(hist, list) else []:
        curve = h.get("curve") if isinstance(h, dict) else None
        for p in curve if isinstance(curve, list) else []:
            pt = _curve_point(p)
            if pt is not None:
                out.append(pt)
    return out


def mean_curves(
    g: Group, fw: str, method: str, variant: str, source: str
) -> dict[str, tuple[list[int], list[float]]]:
    """``{"source": (steps, mean %), "target": (steps, mean %)}`` over the done records (seeds × targets) of a
    cell: per step, the mean of the records that evaluated there. ``source``: ``"source-val"`` or
    ``"source"``."""
    by: dict[str, dict[int, list[float]]] = {"source": defaultdict(list), "target": defaultdict(list)}
    for r in g.records:
        if r.get("status") != DONE or (
            field_of(r, "framework"), field_of(r, "method"), field_of(r, "variant")
        ) != (fw, method, variant):
            continue
        for step, src, val, tgt in curve_points(r):
            s = val if source == "source-val" else src
            if s is not None:
                by["source"][step].append(s)
            if tgt is not None:
                by["target"][step].append(tgt)
    out = {}
    for kind, d in by.items():
        if d:
            steps = sorted(d)
            out[kind] = (steps, [statistics.fmean(d[s]) for s in steps])
    return out


def curve_panels(g: Group, fw: str, drt: str = "sr") -> list[tuple[str, str, dict, dict]]:
    """Per method with curve points in ``fw``: ``(label, source kind, static curves, DRT curves)``; the
    source kind is ``source-val`` when every point of both arms has a held-out source accuracy."""
    panels = []
    for method in g.methods:
        pts = [
            p
            for r in g.records
            if r.get("status") == DONE
            and (field_of(r, "framework"), field_of(r, "method")) == (fw, method)
            and field_of(r, "variant") in ("static", drt)
            for p in curve_points(r)
        ]
        if not pts:
            continue
        source = "source-val" if all(p[2] is not None for p in pts) else "source"
        panels.append(
            (
                METHOD_LABELS.get(method, method),
                source,
                mean_curves(g, fw, method, "static", source),
                mean_curves(g, fw, method, drt, source),
            )
        )
    return panels


#: a curve has plateaued at the first evaluation within this many points of its best value
PLATEAU_TOL = 1.0


def plateau_step(steps: Sequence[int], values: Sequence[float], tol: float = PLATEAU_TOL) -> int | None:
    """The first step whose value is within ``tol`` points of the curve's best: from there on, training
    gains less than ``tol`` on this curve. None for an empty curve. A plateau at the last step means the
    curve was still rising when it ended (the caller says so)."""
    if not values:
        return None
    best = max(values)
    return next(s for s, v in zip(steps, values, strict=True) if v >= best - tol)


def table_plateau(g: Group, fw: str, tol: float = PLATEAU_TOL) -> str:
    """Per method × variant: where the mean source-validation curve (source accuracy where none is held
    out) comes within ``tol`` points of its best, its best value, and the mean target accuracy there and at
    the end. The length of a study should reach every row's plateau."""
    rows = []
    for method in g.methods:
        for variant in VARIANT_ORDER:
            if not g.has(fw, method, variant):
                continue
            pts = [p for r in g.records if r.get("status") == DONE and (field_of(r, "framework"),
                   field_of(r, "method"), field_of(r, "variant")) == (fw, method, variant)
                   for p in curve_points(r)]
            if not pts:
                continue
            source = "source-val" if all(p[2] is not None for p in pts) else "source"
            c = mean_curves(g, fw, method, variant, source)
            if "source" not in c:
                continue
            steps, vals = c["source"]
            at = plateau_step(steps, vals, tol)
            tsteps, tvals = c.get("target", ([], []))
            tgt = dict(zip(tsteps, tvals, strict=True))
            last = steps[-1]
            rows.append([
                METHOD_LABELS.get(method, method), variant, source,
                f"{at}" + (" (still rising at the end)" if at == last and len(steps) > 1 else ""),
                _num(max(vals)), _num(tgt.get(at)), f"{_num(tgt.get(last))} (step {last})",
            ])
    return _md(["method", "variant", "curve", f"plateau step (within {tol:g} point of best)", "best source %",
                "target % at plateau", "target % at the end"], rows)


CURVES_CAPTION = (
    "Solid lines: **target** accuracy (%) on the target domain's test split; dashed lines: **source** "
    "accuracy — on the held-out source-validation slice where every job of the panel held one out "
    "(*source-val*), else on pooled source *training* images (*source*); each panel's title says which. "
    "Grey: static; blue: DRT. Each line is the mean over seeds and targets at each evaluation step (the "
    "x-axis: training steps). The curves do not depend on the model-selection rule."
)


def table_paper(suite: str, table: dict[str, Any]) -> str:
    """One of the paper's tables in our column order; cells ``mean ± spread`` as printed."""
    domains = paper_numbers.DOMAINS[suite]
    headers = ["paper's row", *[f"{d} ({paper_numbers.ABBREV[d]})" for d in domains], "Avg"]
    dec = 2 if suite == "digit-five" else 1  # as printed in the paper
    rows = []
    for row in table["rows"]:
        cells = row["cells"]
        rows.append(
            [
                row["label"],
                *[
                    f"{cells[d][0]:.{dec}f} ± {cells[d][1]:.2f}" if d in cells else NA
                    for d in [*domains, "Avg"]
                ],
            ]
        )
    return _md(headers, rows)


def skipped_images(records: Sequence[dict[str, Any]]) -> str:
    """Images skipped as unreadable during training and evaluation, per job that skipped any (the counts
    the training loop stores in its final record: ``skipped_train``, ``skipped_eval``, ``skipped_files``)."""
    rows = []
    for r in sorted(records, key=lambda r: str(r.get("name"))):
        final = r.get("final") or {}
        train, ev = int(final.get("skipped_train") or 0), int(final.get("skipped_eval") or 0)
        if train or ev:
            files = final.get("skipped_files") or []
            rows.append([r.get("name"), train, ev, (files[0] if files else "")[:100]])
    if not rows:
        return "No image was skipped as unreadable."
    total = sum(row[1] for row in rows), sum(row[2] for row in rows)
    return (
        f"{len(rows)} jobs skipped unreadable images ({total[0]} while training, {total[1]} while "
        "evaluating; an evaluation pass counts its skips each time it runs). Their accuracies are over the "
        "readable images only.\n\n"
        + _md(["job", "skipped (train)", "skipped (eval)", "first skipped image"], rows)
    )


def problems(records: Sequence[dict[str, Any]], groups: Sequence[Group], refused: int = 0) -> str:
    """Failed and incomplete jobs, and cells with missing seeds (nothing is dropped silently). ``refused``:
    how many records were refused (a refused record leaves its seed missing)."""
    out = []
    bad = [r for r in records if r.get("status") in (FAILED, INCOMPLETE)]
    if bad:
        rows = []
        for r in sorted(bad, key=lambda r: str(r.get("name"))):
            err = (
                str(
                    r.get("error")
                    or ("no result yet (interrupted or running)" if r.get("status") == INCOMPLETE else "")
                )
                .strip()
                .splitlines()
            )
            rows.append(
                [
                    r.get("status"),
                    field_of(r, "framework"),
                    field_of(r, "method"),
                    field_of(r, "variant"),
                    field_of(r, "target"),
                    field_of(r, "seed"),
                    (err[-1] if err else "")[:120],
                ]
            )
        out.append(_md(["status", "framework", "method", "variant", "target", "seed", "error"], rows))
    else:
        out.append("No failed or incomplete jobs.")
    missing = []
    for g in groups:
        for fw in g.frameworks:
            for method in g.methods:
                for variant in g.variants:
                    if not g.has(fw, method, variant):
                        continue
                    for t in g.targets:
                        c = g.cell(fw, method, variant, t)
                        gone = [
                            s
                            for s in g.seeds
                            if s not in c.values and s not in c.failed and s not in c.incomplete
                        ]
                        if gone:
                            missing.append([fw, method, variant, t, ", ".join(map(str, gone))])
    if missing:
        out.append(
            (
                "Cells with seeds that were never run (no record at all):\n\n"
                if not refused
                else "Cells with seeds that have no valid record (never run, or refused: see *Refused and "
                "duplicate records*):\n\n"
            )
            + _md(["framework", "method", "variant", "target", "missing seeds"], missing)
        )
    return "\n\n".join(out)


def busy_seconds(records: Sequence[dict[str, Any]]) -> float | None:
    """Elapsed time the jobs held the machine: the length of the union of their ``[started, finished]`` spans.

    Jobs that ran side by side (``--workers N``) count once, idle gaps between sessions not at all; a resumed
    job counts from its last start. None when no record has both timestamps.
    """
    spans = []
    for r in records:
        try:
            a = datetime.fromisoformat(str(r["started"]))
            b = datetime.fromisoformat(str(r["finished"]))
        except (KeyError, TypeError, ValueError):
            continue
        if b >= a:
            spans.append((a.timestamp(), b.timestamp()))
    if not spans:
        return None
    spans.sort()
    busy, (lo, hi) = 0.0, spans[0]
    for a, b in spans[1:]:
        if a > hi:
            busy, lo, hi = busy + hi - lo, a, b
        else:
            hi = max(hi, b)
    return busy + hi - lo


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def provenance(records: Sequence[dict[str, Any]]) -> str:
    """Commit, versions, device/hardware and wall time per framework."""
    rows = []
    for fw in _order({str(field_of(r, "framework")) for r in records}, ("torch", "keras")):
        recs = [r for r in records if field_of(r, "framework") == fw and r.get("status") in (DONE, FAILED)]
        if not recs:
            continue
        commits = sorted(
            {
                (r.get("provenance", {}).get("git", {}).get("commit") or "?")[:10]
                + ("+dirty" if r.get("provenance", {}).get("git", {}).get("dirty") else "")
                for r in recs
            }
        )
        versions: dict[str, set[str]] = defaultdict(set)
        for r in recs:
            for k, v in (r.get("provenance", {}).get("versions") or {}).items():
                if k in ("python", "numpy", "torch", "keras", "tensorflow", "tensorflow-cpu", "jax"):
                    versions[k].add(str(v))
        backends = sorted(
            {
                str(r.get("provenance", {}).get("keras_backend"))
                for r in recs
                if r.get("provenance", {}).get("keras_backend")
            }
        )
        vtext = ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(versions.items()))
        if backends:
            vtext += f"; Keras backend {'/'.join(backends)}"
        devices = sorted({str(field_of(r, "device")) for r in recs})
        hw = sorted({str(r.get("provenance", {}).get("hardware")) for r in recs if r.get("provenance")})
        walls = [float(r["wall_time_s"]) for r in recs if isinstance(r.get("wall_time_s"), int | float)]
        total = sum(walls)
        busy = busy_seconds(recs)
        dates = sorted(str(r.get("finished", ""))[:10] for r in recs if r.get("finished"))
        rows.append(
            [
                fw,
                ", ".join(devices),
                "; ".join(hw),
                vtext,
                ", ".join(commits),
                f"{len(recs)} jobs, {total / 60:.1f} min total, {statistics.median(walls):.0f} s median"
                + (f"; the machine was busy {_duration(busy)}" if busy is not None else "")
                if walls
                else NA,
                f"{dates[0]} … {dates[-1]}" if dates else NA,
            ]
        )
    return _md(["framework", "device", "hardware", "versions", "commit", "wall time", "dates"], rows)


def _cell_text(text: str) -> str:
    """Text safe inside a markdown table cell (one line, no column separator)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def refusals(checked: Records) -> str:
    """The refused records (file:line and every problem) and the duplicates left out, as markdown."""
    out = []
    if checked.refused:
        rows = [
            [_cell_text(p.where.short), _cell_text(p.reason)]
            for f in checked.refused
            for p in f.problems
        ]
        out.append(
            f"{len(checked.refused)} invalid records were refused: they are in no table and no count above. "
            "A record whose suite is unreadable is listed in the README of every suite.\n\n"
            + _md(["record (file:line)", "problem"], rows)
        )
    if checked.duplicates:
        rows = [
            [
                _cell_text(d.dropped.short),
                _cell_text(d.kept.short),
                "the same job collected twice"
                if d.same_job
                else _cell_text(
                    f"another job (job_id {d.job_ids[1]} vs {d.job_ids[0]}), which finished earlier"
                ),
            ]
            for d in checked.duplicates
        ]
        out.append(
            f"{len(checked.duplicates)} duplicate records were ignored: of the records of one job cell "
            "(setting, framework, method, variant, target, seed) only the one that finished last is "
            "shown.\n\n"
            + _md(["ignored record", "shown instead", "why"], rows)
        )
    return "\n\n".join(out)


# --------------------------------------------------------------------------------------------- document
def groups_of(records: Sequence[dict[str, Any]], suite: str, selection: str = "auto") -> list[Group]:
    """Records of ``suite`` split by setting (sorted by the setting's JSON)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if field_of(r, "suite") == suite:
            by[setting_key(r)].append(r)
    return [Group(suite, json.loads(k), v, resolve_selection(v, selection)) for k, v in sorted(by.items())]


PAPER_NOTE = (
    "Transcribed from the paper (`harness/paper_numbers.py`) and shown beside ours for comparison only: a "
    'different backbone schedule and compute. The paper reports mean ± its spread over 5 runs ("mean and '
    "variance\"), with model selection as in the authors' code (best epoch on target test, i.e. an oracle). "
    "Its "
    "static MCD row is quoted from the literature (classic MCD); its MCD+DRT rows use the one-step form (our "
    "`mcd_grl`)."
)


def _paper_parts(suite: str, kind: str, h: str) -> list[str]:
    out = []
    for t in paper_numbers.tables(suite):
        if t["kind"] == kind:
            out.append(f"{h}# The paper's numbers, NOT ours — Li et al., CVPR 2021, {t['source']}")
            out.append(PAPER_NOTE)
            out.append(table_paper(suite, t))
    return out


def render_group(g: Group, drt: str = "sr", level: int = 2, plots: dict[str, str] | None = None) -> str:
    """All tables of one setting as markdown."""
    h = "#" * level
    sel = _sel_note(g.selection)
    n = len(g.seeds)
    parts = [
        f"{h} Setting: {setting_label(g.setting)}",
        f"Seeds: {', '.join(map(str, g.seeds))} (n = {n}). Frameworks: {', '.join(g.frameworks)}. "
        f"Model selection: {SELECTION_WORDS[g.selection]}.",
    ]
    for fw in g.frameworks:
        parts.append(f"{h}# {fw}: target accuracy (%), static / DRT ({drt}){sel}")
        parts.append(table_static_drt(g, fw, drt))
        parts.append(f"{h}# {fw}: DRT ({drt}) − static, paired over seeds, 95 % CI (t distribution){sel}")
        parts.append(table_gain(g, fw, drt))
        if comparisons(g, fw, drt):
            parts.append(f"{h}# {fw}: verdict (selection: {g.selection}){sel}")
            parts.append(table_verdict(g, fw, drt))
            parts.append(seeds_needed(g, fw, drt))
            parts.append(pairing_check(g, fw, drt))
            if any(r.get("source_val_target_acc") is not None for r in g.records):
                parts.append(
                    f"{h}# {fw}: the verdict under each selection rule — DRT ({drt}) gain, points, 95 % CI "
                    "(`*`: excludes 0); the ORACLE column uses target test labels (the release's rule) and "
                    "is not a valid unsupervised result"
                )
                parts.append(table_verdict_by_selection(g, fw, drt))
            pairing = table_pairing(g, fw, drt)
            if pairing.count("\n") >= 2:
                parts.append(
                    f"{h}# {fw}: what pairing buys (per-run SD of each arm, paired SD, correlation){sel}"
                )
                parts.append(pairing)
        chance = NUM_CLASSES.get(g.suite)
        parts.append(
            f"{h}# {fw}: source accuracy (%), static / DRT ({drt}){sel}"
            + (f" — chance is {100 / chance:.1f} %" if chance else "")
        )
        parts.append(table_static_drt(g, fw, drt, which="source"))
        if plots and fw in plots:
            parts.append(f"![static vs DRT, {fw}]({plots[fw]})")
        if any(curve_points(r) for r in g.records if field_of(r, "framework") == fw):
            parts.append(
                f"{h}# Where the {fw} learning curves plateau (mean over seeds and targets; every "
                "evaluation, so independent of the model selection)"
            )
            parts.append(table_plateau(g, fw))
    parts += _paper_parts(g.suite, "static_vs_drt", h)
    for fw in g.frameworks:
        others = [v for v in VARIANT_ORDER if v not in ("static", drt)]
        ran_others = [v for v in others if any(g.has(fw, m, v) for m in g.methods)]
        parts.append(f"{h}# {fw}: DRT variants (the paper's Table 1 shape), target accuracy (%){sel}")
        parts.append(table_variants(g, fw))
        not_run = [v for v in others if v not in ran_others]
        if not_run:
            parts.append(
                f"Variants not run in this setting: {', '.join(not_run)} "
                f"(run with `--variants {','.join(VARIANT_ORDER)}`)."
            )
    parts += _paper_parts(g.suite, "variants", h)
    if len(g.frameworks) >= 2 and "torch" in g.frameworks and "keras" in g.frameworks:
        parts.append(f"{h}# Framework agreement: torch / Keras mean target accuracy (%) per cell{sel}")
        parts.append(table_agreement(g))
        if any(comparisons(g, fw, drt) for fw in ("torch", "keras")):
            parts.append(
                f"{h}# Framework agreement on the verdict: torch vs Keras (selection: {g.selection}){sel}"
            )
            parts.append(table_verdict_agreement(g, drt))
    else:
        parts.append(
            f"{h}# Framework agreement\n\nOnly {', '.join(g.frameworks)} ran in this setting: no "
            "torch-vs-Keras comparison (run with `--frameworks torch,keras`)."
        )
    return "\n\n".join(parts)


def render(
    records: Sequence[dict[str, Any]],
    suite: str,
    *,
    selection: str = "auto",
    drt: str = "sr",
    plots: dict[str, Any] | None = None,
) -> str:
    """The whole README for ``suite`` (deterministic: depends on the records only).

    ``records`` are checked first (:func:`harness.records.check_records`; a :class:`Records` from
    :func:`harness.store.collect` already is): refused and duplicate records are listed, never shown."""
    if selection not in SELECTIONS:
        raise DrtBenchError(f"--selection {selection!r}: expected one of {', '.join(SELECTIONS)}")
    checked = check_records(records).for_suite(suite)
    recs = list(checked)
    groups = groups_of(recs, suite, selection)
    counts = defaultdict(int)
    for r in recs:
        counts[str(r.get("status"))] += 1
    n_refused, n_dups = len(checked.refused), len(checked.duplicates)
    title = f"# Results: `{suite}` suite" + {
        "oracle": " — ORACLE model selection",
        "source-val": " — source-validation model selection",
    }.get(selection, "")
    head = [
        title,
        "Generated by `python -m harness.report` from the job records alone "
        f"({len(recs)} records: {counts[DONE]} done, {counts[FAILED]} failed, "
        f"{counts[INCOMPLETE]} incomplete"
        + (f"; {n_refused} invalid records refused" if n_refused else "")
        + (f"; {n_dups} duplicate records ignored" if n_dups else "")
        + "). "
        + ("See *Refused and duplicate records*. " if n_refused or n_dups else "")
        + "Do not edit by hand.",
        "**How to read.** Accuracy in %, on the target domain's test split unless stated. Cells are "
        "mean ± std over seeds, where std is the *sample* standard deviation (n − 1) — not the standard "
        "error. "
        "`(n=k/N)`: only k of the N seeds of this setting have a result (see *Failed, incomplete and missing "
        "jobs*); `failed`: every seed failed; `incomplete`: started, no result yet; `—`: not run. Avg is "
        "computed per seed over all targets, then "
        "averaged over seeds. DRT − static: mean paired difference over seeds with a 95 % confidence "
        "interval from the t distribution (none for n = 1). Source accuracy is the trainer's accuracy on "
        "pooled source images (the current trainers score up to `source_eval_max` source *training* images): "
        "it shows that the models learned, it is not a held-out score. "
        "**Verdict** tables: per method, over the seeds that have every target in both arms (the per-seed "
        "Avg), n paired seeds, the paired mean gain in points with its 95 % t-interval, the paired SD of the "
        "per-seed differences and the minimum detectable effect (MDE: the smallest true gain a two-sided "
        "paired t-test at α = 0.05 detects with 80 % power at this n and SD). The verdict reads the "
        "interval: *helps* / *hurts* when it excludes 0, else no difference larger than the MDE could be "
        "seen with these seeds.",
        (
            "**Model selection: ORACLE** — each job is scored at its best epoch on *target test* accuracy, "
            "which uses "
            "test labels; these numbers are optimistic and not a valid unsupervised result."
            if selection == "oracle"
            else "**Model selection: source validation** — each job is scored at the evaluation with the "
            "best accuracy on its held-out source slice (never trained on; no target label is used). Jobs "
            "that held out no slice have no figure under this rule."
            if selection == "source-val"
            else "**Model selection: last epoch** (no target labels are used; `--selection source-val` picks "
            "on the held-out source slice, `--selection oracle` gives the labelled best-epoch oracle)."
            if selection == "last"
            else "**Model selection: per setting, without target labels** (`--selection auto`, the default) "
            "— the evaluation with the best accuracy on the held-out source slice (*source-val*) in a "
            "setting whose jobs all held one out (the `study` profile), else the last epoch; each setting's "
            "*Seeds* line names its rule, and source-val tables say so in their heading. `--selection "
            "last|source-val|oracle` forces one rule (oracle: labelled, uses target test labels)."
        ),
    ]
    body = [
        render_group(g, drt, plots=(plots or {}).get("bars", {}).get(setting_key(g.records[0])))
        for g in groups
    ]
    if not groups:
        body.append("No records for this suite.")
    tail = []
    if plots and plots.get("curves"):
        tail.append("## Learning curves")
        tail.append(CURVES_CAPTION)
        for rel, caption in plots["curves"]:
            tail.append(f"![{caption}]({rel})\n\n{caption}")
    if plots and (plots.get("tsne") or plots.get("skipped")):
        tail.append("## Dynamic coefficients (the paper's Figure 4 shape)")
        for rel, caption in plots.get("tsne", []):
            tail.append(f"![{caption}]({rel})\n\n{caption}")
        for note in plots.get("skipped", []):
            tail.append(f"Plot skipped: {note}.")
    if n_refused or n_dups:
        tail.append("## Refused and duplicate records")
        tail.append(refusals(checked))
    tail.append("## Failed, incomplete and missing jobs")
    tail.append(problems(recs, groups, n_refused))
    tail.append("## Skipped images")
    tail.append(skipped_images(recs))
    tail.append("## Provenance")
    tail.append(provenance(recs))
    return "\n\n".join(head + body + tail) + "\n"


# --------------------------------------------------------------------------------------------- writing
def write_report(
    records: Sequence[dict[str, Any]],
    suite: str,
    out_root: Path | str = "results",
    *,
    selection: str = "auto",
    drt: str = "sr",
    plots: bool = True,
    write_records_file: bool = True,
    coefficient_dirs: Sequence[Path] = (),
    warn: bool = True,
) -> Path:
    """Write ``<out_root>/<suite>/README.md`` (``auto``; ``README-<rule>.md`` for a forced rule),
    ``records.jsonl`` and plots. ``coefficient_dirs``: more places to find kept ``<record name>.npz``
    coefficient files (a results directory the records were read from).

    ``records`` are checked first (see :func:`render`); ``records.jsonl`` holds the accepted records only.
    ``warn``: print the refused and conflicting duplicate records of ``suite`` to stderr."""
    checked = check_records(records).for_suite(suite)
    if warn:
        for line in checked.warnings():
            print(f"report: warning: {line}", file=sys.stderr)
    out_dir = Path(out_root) / suite
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = list(checked)
    if write_records_file:
        write_records(recs, out_dir / RECORDS_FILE)
    made: dict[str, Any] = {}
    if plots:
        made = make_plots(
            recs, suite, out_dir, selection=selection, drt=drt, coefficient_dirs=coefficient_dirs
        )
    text = render(checked, suite, selection=selection, drt=drt, plots=made)
    path = out_dir / README_NAMES.get(selection, "README.md")
    from harness.atomic import write_text as atomic_write_text

    atomic_write_text(path, text)
    return path


def make_plots(
    records: Sequence[dict[str, Any]],
    suite: str,
    out_dir: Path,
    *,
    selection: str = "auto",
    drt: str = "sr",
    coefficient_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    """Bar charts and learning curves per setting × framework and one t-SNE of DRT coefficients; returns
    relative paths (``curves``: ``(file, caption)`` per figure, for records with ``history[].curve`` points).

    A ``coefficients.npz`` that cannot be read or plotted (empty, garbage, truncated, missing arrays, …) is
    skipped with a warning naming the file and the reason (the next DRT record's file is tried); the
    returned ``skipped`` notes go into the README."""
    from harness import plots as P

    made: dict[str, Any] = {"bars": {}, "curves": [], "tsne": [], "skipped": []}
    suffix = README_NAMES.get(selection, "README.md")[len("README") : -len(".md")]
    groups = groups_of(records, suite, selection)
    for i, g in enumerate(groups):
        key = setting_key(g.records[0])
        for fw in g.frameworks:
            panels = curve_panels(g, fw, drt)
            if not panels:
                continue
            name = f"curves-{i}-{fw}{suffix}.png"
            P.learning_curves(
                panels, out_dir / name, title=f"{suite}, {fw}: learning curves (setting {i + 1})",
                drt_label=drt,
            )
            kinds = sorted({p[1] for p in panels})
            made["curves"].append(
                (
                    name,
                    f"Learning curves, setting {i + 1}"
                    + (f" of {len(groups)}" if len(groups) > 1 else "")
                    + f" ({setting_label(g.setting)}), {fw}: static vs DRT ({drt}); solid = target test "
                    "accuracy, dashed = "
                    + " / ".join(
                        "held-out source-validation accuracy"
                        if k == "source-val"
                        else "source training accuracy"
                        for k in kinds
                    )
                    + (" (per panel, as titled)" if len(kinds) > 1 else "")
                    + ".",
                )
            )
        for fw in g.frameworks:
            data = []
            for method in g.methods:
                pair = []
                for variant in ("static", drt):
                    vals = list(g.per_seed_avg(fw, method, variant).values())
                    pair.append(
                        (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
                        if vals
                        else None
                    )
                data.append((METHOD_LABELS.get(method, method), pair[0], pair[1]))
            if not any(s or d for _, s, d in data):
                continue
            name = f"bars-{i}-{fw}{suffix}.png"
            P.bars_static_vs_drt(
                data,
                out_dir / name,
                title=f"{suite}, {fw}: average target accuracy"
                f"{' (ORACLE selection)' if selection == 'oracle' else ''}",
                drt_label=drt,
            )
            made["bars"].setdefault(key, {})[fw] = name
    for npz, shown, rec in _coefficients_sources(records, out_dir, drt, coefficient_dirs):
        name = f"tsne-{rec.get('name')}.png"
        png = out_dir / name
        try:
            P.load_coefficients(shown)  # a corrupt file is named as such (and not copied)
            if shown != npz:
                shutil.copyfile(shown, npz)
            if not (png.exists() and png.stat().st_mtime >= npz.stat().st_mtime):  # t-SNE is slow: reuse
                P.tsne_coefficients(
                    npz,
                    out_dir / name,
                    title=f"t-SNE of DRT coefficients: {field_of(rec, 'method')}"
                    f" + {field_of(rec, 'variant')}, target {field_of(rec, 'target')}, "
                    f"{field_of(rec, 'framework')}, seed {field_of(rec, 'seed')}",
                )
        except Exception as exc:  # noqa: BLE001 - a bad coefficients file only costs its plot
            reason = str(exc).removeprefix(f"{shown}: ").removeprefix(f"{npz}: ") or type(exc).__name__
            print(f"report: warning: {shown}: t-SNE plot skipped: {reason}", file=sys.stderr)
            made["skipped"].append(
                f"the coefficients of `{rec.get('name')}` ({Path(rec['artifacts']['coefficients']).name}) "
                f"could not be plotted: {' '.join(reason.split())}"
            )
            continue
        caption = f"Dynamic coefficients of `{rec.get('name')}` (t-SNE), coloured by domain."
        made["tsne"].append((name, caption))
        break
    return made


def _coefficients_sources(
    records: Sequence[dict[str, Any]], out_dir: Path, drt: str, extra_dirs: Sequence[Path] = ()
) -> Iterable[tuple[Path, Path, dict[str, Any]]]:
    """DRT records with a ``coefficients.npz``, best first, as ``(kept copy next to the README, file to
    read, record)``: the job directory's file (copied next to the README so the plot can be regenerated),
    else one kept in ``extra_dirs`` or ``out_dir/coefficients``."""
    cands = [
        r
        for r in records
        if r.get("status") == DONE
        and field_of(r, "variant") != "static"
        and (r.get("artifacts") or {}).get("coefficients")
        and r.get("name")
    ]

    def rank(method: str) -> int:
        row = method_table.TABLE.get(method)
        return row.plot_rank if row is not None else 99

    cands.sort(
        key=lambda r: (
            field_of(r, "variant") != drt,
            rank(str(field_of(r, "method"))),
            str(r.get("name")),
        )
    )
    for rec in cands:
        kept = out_dir / "coefficients" / f"{rec.get('name')}.npz"
        src = Path(rec["job_dir"]) / rec["artifacts"]["coefficients"] if rec.get("job_dir") else None
        if src is None or not src.is_file():
            src = next(
                (p for d in extra_dirs if (p := Path(d) / f"{rec.get('name')}.npz").is_file()), None
            )
        if src is not None and src.is_file():
            kept.parent.mkdir(parents=True, exist_ok=True)
            if src.resolve() == kept.resolve():
                src = kept
            yield kept, src, rec
        elif kept.is_file():
            yield kept, kept, rec


# --------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--results",
        default="runs",
        help="runs directory (job dirs), a records.jsonl, or a results/<suite> dir (default: runs)",
    )
    p.add_argument("--suite", default=None, help="suite to report (default: every suite in the records)")
    p.add_argument(
        "--out", default="results", help="output root; writes <out>/<suite>/README.md (default: results)"
    )
    p.add_argument(
        "--selection",
        choices=SELECTIONS,
        default="auto",
        help="model selection: auto (default: source-val in settings whose jobs all held out a source slice, "
        "else last), last epoch, source-val (best held-out source accuracy; jobs that held out a source "
        "slice) or oracle (best target-test epoch; labelled)",
    )
    p.add_argument(
        "--drt-variant",
        default="sr",
        choices=VARIANT_ORDER[1:],
        help="which DRT variant the static / DRT tables use (default: sr, the paper's)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 at the first invalid record or conflicting duplicate (default: refuse it, warn on "
        "stderr with file:line, list and count it in the README, and go on)",
    )
    p.add_argument("--print", dest="print_", action="store_true", help="also print the README to stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 for a usage/data error, or an invalid record with
    ``--strict``)."""
    args = build_parser().parse_args(argv)
    try:
        src = Path(args.results)
        if not src.exists():
            raise DrtBenchError(
                f"--results {src}: no such file or directory (run `python -m harness.run` first)"
            )
        records = collect(src, args.suite, strict=args.strict)
        for line in records.warnings():
            print(f"report: warning: {line}", file=sys.stderr)
        suites = [args.suite] if args.suite else suites_in(records)
        if not records:
            raise DrtBenchError(
                f"no valid job records found in {src}"
                + (f" for suite {args.suite!r}" if args.suite else "")
                + (f" ({len(records.refused)} invalid records refused: see above)" if records.refused else "")
            )
        from_file = src.is_file() or not any(r.get("job_dir") for r in records)
        for suite in suites:
            path = write_report(
                records,
                suite,
                args.out,
                selection=args.selection,
                drt=args.drt_variant,
                plots=not args.no_plots,
                write_records_file=not from_file,
                coefficient_dirs=[(src if src.is_dir() else src.parent) / "coefficients"],
                warn=False,
            )
            print(f"wrote {path}")
            if args.print_:
                print(path.read_text())
        conflicts = [d for d in records.duplicates if not d.same_job]
        if records.refused or conflicts:
            print(
                f"report: {len(records.refused)} invalid records refused, {len(conflicts)} conflicting "
                "duplicate records ignored (listed in the README; --strict makes them an error)",
                file=sys.stderr,
            )
    except (DrtBenchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
