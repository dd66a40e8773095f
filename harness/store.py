"""Results store: collect job records from a runs directory (or a records file) after the fact.

Like DomainBed's ``collect_results``, nothing is kept in memory between runs: the records are read back from
the job directories (``result.json`` + ``spec.json``; see :mod:`harness.jobs`). A job directory with a spec
but no result is an *incomplete* job (interrupted or still running) and is returned with
``status: "incomplete"`` so the report can show it instead of silently dropping it.

``records.jsonl`` (written by the report next to the README) holds the same records, one per line, with
their per-epoch history; ``python -m harness.report --results results/<suite>/records.jsonl`` regenerates
every table from that file alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.atomic import write_text
from harness.jobs import (
    DONE,
    FAILED,
    JobPaths,
    clean_floats,
    job_id,
    read_json,
    read_metrics,
)

INCOMPLETE = "incomplete"
RECORDS_FILE = "records.jsonl"


def _history(jdir: Path) -> list[dict[str, Any]]:
    """Compact per-epoch history (epoch + accuracies + losses) for the records file."""
    out = []
    for rec in read_metrics(JobPaths(jdir).metrics):
        out.append({k: v for k, v in rec.items() if isinstance(v, int | float | str | type(None))})
    return out


def record_from_dir(jdir: Path) -> dict[str, Any] | None:
    """The record of one job directory, or None when it is not a job directory."""
    paths = JobPaths(Path(jdir))
    spec = read_json(paths.spec)
    res = read_json(paths.result)
    if res is not None and res.get("status") in (DONE, FAILED):
        rec = dict(res)
        rec.setdefault("spec", spec or {})
    elif spec is not None:
        rec = {
            "status": INCOMPLETE,
            "job_id": job_id(spec),
            "name": paths.root.name,
            "spec": spec,
            **{
                k: spec.get(k)
                for k in ("framework", "suite", "target", "method", "variant", "seed", "device", "profile")
            },
        }
    else:
        return None
    rec["job_dir"] = str(paths.root)
    rec["history"] = _history(paths.root)
    if paths.coefficients.exists():
        rec.setdefault("artifacts", {})["coefficients"] = paths.coefficients.name
    return rec


def collect(source: Path | str, suite: str | None = None) -> list[dict[str, Any]]:
    """All records under ``source``: a runs directory (searched recursively for job directories), a
    ``records.jsonl`` file, or a directory holding one. ``suite`` filters. Sorted by job name."""
    source = Path(source)
    records: list[dict[str, Any]] = []
    if source.is_file():
        records = load_records(source)
    elif source.is_dir():
        job_dirs = sorted(
            {p.parent for p in source.rglob("spec.json")} | {p.parent for p in source.rglob("result.json")}
        )
        for jdir in job_dirs:
            rec = record_from_dir(jdir)
            if rec is not None:
                records.append(rec)
        if not records and (source / RECORDS_FILE).is_file():
            records = load_records(source / RECORDS_FILE)
    if suite is not None:
        records = [r for r in records if r.get("suite", (r.get("spec") or {}).get("suite")) == suite]
    return sorted(records, key=lambda r: str(r.get("name", "")))


def load_records(path: Path | str) -> list[dict[str, Any]]:
    """Records from a JSONL file; malformed lines raise ``ValueError`` naming the file and line."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON record ({exc})") from exc
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            out.append(rec)
    return out


def write_records(records: Iterable[dict[str, Any]], path: Path | str) -> Path:
    """Write records as JSONL atomically (sorted keys; the local ``job_dir`` path is dropped)."""
    lines = []
    for rec in records:
        rec = {k: v for k, v in rec.items() if k != "job_dir"}
        lines.append(json.dumps(clean_floats(rec), sort_keys=True) + "\n")
    write_text(Path(path), "".join(lines))
    return Path(path)


def suites_in(records: Iterable[dict[str, Any]]) -> list[str]:
    """The suites present in ``records``, sorted."""
    return sorted({str(r.get("suite") or (r.get("spec") or {}).get("suite")) for r in records})
