"""Results store: collect job records from a runs directory (or a records file) after the fact.

Like DomainBed's ``collect_results``, nothing is kept in memory between runs: the records are read back from
the job directories (``result.json`` + ``spec.json``; see :mod:`harness.jobs`). A job directory with a spec
but no result is an *incomplete* job (interrupted or still running) and is returned with
``status: "incomplete"`` so the report can show it instead of silently dropping it.

``records.jsonl`` (written by the report next to the README) holds the same records, one per line, with
their per-epoch history; ``python -m harness.report --results results/<suite>/records.jsonl`` regenerates
every table from that file alone.

Every record is checked before it is returned (:mod:`harness.records`): :func:`collect` returns only the
valid records, as a :class:`harness.records.Records` list that also carries the refused ones (with file and
line) and the duplicates it left out; ``strict=True`` raises :class:`harness.records.RecordError` instead.
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
from harness.records import INCOMPLETE, Location, Problem, Records, Refusal, check, field_of

RECORDS_FILE = "records.jsonl"


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, int | float | str | type(None))}


def _history(jdir: Path) -> list[dict[str, Any]]:
    """Compact per-epoch history for the records file: the epoch's scalars (epoch, accuracies, stage, …)
    and its evaluation points (``curve``: step, stage and accuracies of every evaluation — the learning
    curves and the model selection read them)."""
    out = []
    for rec in read_metrics(JobPaths(jdir).metrics):
        row = _scalars(rec)
        curve = rec.get("curve")
        if isinstance(curve, list):
            row["curve"] = [_scalars(p) for p in curve if isinstance(p, dict)]
        out.append(row)
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


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _located_from_dir(jdir: Path, base: Path) -> tuple[dict[str, Any] | None, Location, Problem | None]:
    """The record of a job directory with its location (its ``result.json``, else its ``spec.json``), or
    a problem when ``result.json`` exists but is not a readable record."""
    paths = JobPaths(Path(jdir))
    where_file = paths.result if paths.result.exists() else paths.spec
    try:
        text = where_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        where = Location(str(where_file), 1, _rel(where_file, base))
        return None, where, Problem(where, "", None, f"unreadable ({type(exc).__name__}: {exc})")
    where = Location(str(where_file), 1, _rel(where_file, base), text)
    if where_file == paths.result:
        try:
            res = json.loads(text)
        except ValueError as exc:
            return None, where, Problem(where, "", None, f"not a JSON record ({exc})")
        if not isinstance(res, dict):
            return None, where, Problem(where, "", None, f"expected a JSON object, got {type(res).__name__}")
        if res.get("status") not in (DONE, FAILED):
            return res, where, None  # the checker names the bad status
    return record_from_dir(jdir), where, None


def _located_from_file(path: Path, base: Path) -> tuple[list[tuple[Any, Location]], list[Refusal]]:
    """``(record, location)`` per line of a JSONL store; lines that are not JSON are refused."""
    out: list[tuple[Any, Location]] = []
    refused: list[Refusal] = []
    rel = _rel(path, base) if base != path else path.name
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = Location(str(path), lineno, rel)
            try:
                rec = json.loads(line)
            except ValueError as exc:
                refused.append(
                    Refusal(where, (Problem(where, "", None, f"not a JSON record ({exc})"),), None, line)
                )
                continue
            out.append((rec, where))
    return out, refused


def collect(source: Path | str, suite: str | None = None, *, strict: bool = False) -> Records:
    """The valid records under ``source``: a runs directory (searched recursively for job directories), a
    ``records.jsonl`` file, or a directory holding one. ``suite`` filters. Sorted by job name.

    The result is a list (:class:`harness.records.Records`) whose ``refused`` and ``duplicates`` say what
    was left out and where (file and line); ``strict``: raise :class:`harness.records.RecordError` on the
    first invalid record or conflicting duplicate instead."""
    source = Path(source)
    located: list[tuple[Any, Location]] = []
    refused: list[Refusal] = []
    if source.is_file():
        located, refused = _located_from_file(source, source)
    elif source.is_dir():
        job_dirs = sorted(
            {p.parent for p in source.rglob("spec.json")} | {p.parent for p in source.rglob("result.json")}
        )
        for jdir in job_dirs:
            rec, where, problem = _located_from_dir(jdir, source)
            if problem is not None:
                refused.append(Refusal(where, (problem,), None, None))
            elif rec is not None:
                located.append((rec, where))
        if not located and not refused and (source / RECORDS_FILE).is_file():
            located, refused = _located_from_file(source / RECORDS_FILE, source)
    checked = check(located, strict=strict, refused=refused)
    if suite is not None:
        checked = checked.for_suite(suite)
    checked.sort(key=lambda r: str(r.get("name", "")))
    return checked


def load_records(path: Path | str) -> list[dict[str, Any]]:
    """Records from a JSONL file, unchecked; malformed lines raise ``ValueError`` naming the file and line."""
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
    """The suites present in ``records`` (and in the refused records of a :class:`Records` whose suite is
    readable), sorted; records without a suite are not counted (the checker refuses them)."""
    found = {field_of(r, "suite") for r in records}
    found |= {f.suite for f in getattr(records, "refused", ())}
    return sorted(s for s in found if isinstance(s, str) and s)
