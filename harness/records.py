"""The job record the report reads: its fields (``TypedDict``), a validator, and duplicate resolution.

Records come from files an attacker (or a bug, or a hand edit) may have written: the ``result.json`` of a job
directory (see :mod:`harness.jobs`) or one line of a ``records.jsonl`` store. Before the report shows a record
it is checked here; every problem names the file and line it came from::

    runs/digits/torch_x/result.json:7: field 'target_acc' = 75.0: expected a fraction in [0, 1]

**Policy** (used by :func:`harness.store.collect` and ``python -m harness.report``):

* An *invalid* record is **refused**: it is never shown in a table. By default the report goes on without it,
  prints one warning per problem to stderr, lists it under *Refused and duplicate records* in the README and
  counts it in the README's header. With ``--strict`` the first invalid record stops the report (exit 2).
* Two records with the same *identity* — suite, setting (:data:`SETTING_KEYS`), framework, method, variant,
  target and seed — are never both shown: the one that finished last (``finished`` timestamp; a record
  without one counts as oldest; ties go to the later location) is kept. When their ``job_id`` differs that is
  a conflict: a loud warning names both files (``--strict``: exit 2). The same ``job_id`` twice is the same
  job collected from two places: dropped without a warning. Both kinds are counted in the header.

A record is valid when ``status`` is ``done``, ``failed`` or ``incomplete`` (the store's name for a job
directory without a result); ``suite``, ``framework``, ``method``, ``variant`` and ``target`` are non-empty
strings (``suite`` also a plain file name: the README is written to ``<out>/<suite>/``); ``seed`` is a
non-negative integer (not a bool); a done record has a string ``job_id`` and finite ``target_acc`` /
``source_acc`` fractions in [0, 1] (the report shows them × 100); and the optional fields the report reads
have the types of :class:`Record`. Framework-neutral: no framework is imported.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from harness.errors import DrtBenchError
from harness.jobs import DONE, FAILED, canonical_json

INCOMPLETE = "incomplete"
STATUSES: tuple[str, ...] = (DONE, FAILED, INCOMPLETE)
#: Fields every record must have (a copy at the top level or in ``spec``), all non-empty strings.
NAME_FIELDS: tuple[str, ...] = ("suite", "framework", "method", "variant", "target")
ACC_FIELDS: tuple[str, ...] = ("target_acc", "source_acc")
#: Spec fields that define a *setting* (records of different settings are never averaged together).
SETTING_KEYS: tuple[str, ...] = (
    "suite",
    "profile",
    "arch",
    "model",
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "data",
    "formulation",
    "hparams_overrides",
    "hparams_seed",
    "selection",
    "pretrained",
    "init",
    "precision",
)


# --------------------------------------------------------------------------------------------- fields
class Git(TypedDict, total=False):
    commit: str | None
    dirty: bool | None


class Provenance(TypedDict, total=False):
    git: Git
    versions: dict[str, str]
    hardware: str | None
    keras_backend: str | None


class HistoryEntry(TypedDict, total=False):
    """One epoch of ``metrics.jsonl`` as kept in a record (accuracies are fractions or null)."""

    epoch: int
    target_acc: float | None
    source_acc: float | None


class RecordSpec(TypedDict, total=False):
    """The job spec inside a record: the identity fields (copied to the top level) and the setting."""

    suite: str
    framework: str
    method: str
    variant: str
    target: str
    seed: int
    device: str
    profile: str
    arch: str
    model: dict[str, Any]
    epochs: int
    steps_per_epoch: int | None
    batch_size: int
    data: dict[str, Any]
    formulation: str
    hparams_overrides: dict[str, Any]
    hparams_seed: int | None
    selection: str


class Record(TypedDict):
    """The fields of a job record that the report reads (``result.json`` / one line of ``records.jsonl``).

    The identity fields may be at the top level or only in ``spec`` (the top-level copy wins)."""

    status: str  # done / failed / incomplete
    suite: NotRequired[str]
    framework: NotRequired[str]
    method: NotRequired[str]
    variant: NotRequired[str]
    target: NotRequired[str]
    seed: NotRequired[int]
    spec: NotRequired[RecordSpec]
    job_id: NotRequired[str]  # required for done records
    name: NotRequired[str]
    target_acc: NotRequired[float]  # fraction in [0, 1]; required for done records
    source_acc: NotRequired[float]  # fraction in [0, 1]; required for done records
    oracle_target_acc: NotRequired[float | None]
    source_val_target_acc: NotRequired[float | None]
    source_val_source_acc: NotRequired[float | None]
    oracle_epoch: NotRequired[int | None]
    history: NotRequired[list[HistoryEntry]]
    error: NotRequired[str | None]
    device: NotRequired[str | None]
    provenance: NotRequired[Provenance]
    wall_time_s: NotRequired[float | None]
    finished: NotRequired[str | None]  # ISO 8601 timestamp
    artifacts: NotRequired[dict[str, str]]
    job_dir: NotRequired[str]  # set by the store; never written to records.jsonl


def field_of(rec: dict[str, Any], key: str) -> Any:
    """A spec field of a record (top-level copy first, then the spec)."""
    val = rec.get(key)
    if val is None:
        spec = rec.get("spec")
        return spec.get(key) if isinstance(spec, dict) else None
    return val


# --------------------------------------------------------------------------------------------- locations
_KEY_LINE = re.compile(r'^(\s*)"((?:[^"\\]|\\.)*)"\s*:')


@dataclass(frozen=True)
class Location:
    """Where a record came from: ``path`` as reached from the source the report was given, the 1-based
    ``line`` of the record (JSONL) or of the file's start, and ``rel``, the path relative to that source (the
    README shows ``rel``, so it does not depend on where the files lie). ``text``: the file's text, to find
    the line of a key in a multi-line ``result.json``."""

    path: str
    line: int = 1
    rel: str | None = None
    text: str | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def short(self) -> str:
        return f"{self.rel or self.path}:{self.line}"

    def of(self, key: str) -> Location:
        """The location of ``key`` (a top-level field, or a spec field when the top level lacks it)."""
        if not self.text or "\n" not in self.text.strip():
            return self
        hits: list[tuple[int, int, str]] = []  # (indent, line, key)
        for i, ln in enumerate(self.text.splitlines(), self.line):
            m = _KEY_LINE.match(ln)
            if m:
                hits.append((len(m.group(1)), i, m.group(2)))
        if not hits:
            return self
        top = min(h[0] for h in hits)
        own = [i for ind, i, k in hits if ind == top and k == key]
        if own:
            return Location(self.path, own[0], self.rel)
        spec = [i for ind, i, k in hits if ind == top and k == "spec"]
        if spec:
            nested = [i for ind, i, k in hits if ind > top and k == key and i > spec[0]]
            if nested:
                return Location(self.path, nested[0], self.rel)
        return self


@dataclass(frozen=True)
class Problem:
    """One invalid field of a record, located."""

    where: Location
    field: str
    value: Any
    expected: str

    def __str__(self) -> str:
        return self.message(str(self.where))

    @property
    def reason(self) -> str:
        """The problem without its location."""
        if self.field == "":
            return self.expected
        return f"field {self.field!r} = {_show(self.value)}: expected {self.expected}"

    def message(self, where: str) -> str:
        return f"{where}: {self.reason}"

    @property
    def short(self) -> str:
        return self.message(self.where.short)


class RecordError(DrtBenchError, ValueError):
    """An invalid or conflicting record (``--strict``); the message names the file and line."""


@dataclass(frozen=True)
class Refusal:
    """A record that is not shown: where it is, what is wrong, and its suite when that is readable."""

    where: Location
    problems: tuple[Problem, ...]
    suite: str | None
    record: Any = field(compare=False, repr=False)


@dataclass(frozen=True)
class Duplicate:
    """A record that was not shown because ``kept`` has the same identity and finished later."""

    kept: Location
    dropped: Location
    same_job: bool  # the same job_id: one job collected twice (no warning)
    job_ids: tuple[str, str]  # (kept, dropped)
    suite: str

    def __str__(self) -> str:
        return self.message(str(self.dropped), str(self.kept))

    @property
    def short(self) -> str:
        return self.message(self.dropped.short, self.kept.short)

    def message(self, dropped: str, kept: str) -> str:
        if self.same_job:
            return f"{dropped}: the same job (job_id {self.job_ids[1]}) as {kept}; collected twice, ignored"
        return (
            f"{dropped}: duplicate record (job_id {self.job_ids[1]}) of the same suite, setting, framework, "
            f"method, variant, target and seed as {kept} (job_id {self.job_ids[0]}), which finished later "
            "and is the one shown; this one is ignored"
        )


class Records(list):
    """A list of the accepted records, with what was left out: ``refused`` (invalid) and ``duplicates``."""

    def __init__(
        self,
        records: Iterable[dict[str, Any]] = (),
        refused: Sequence[Refusal] = (),
        duplicates: Sequence[Duplicate] = (),
    ) -> None:
        super().__init__(records)
        self.refused: list[Refusal] = list(refused)
        self.duplicates: list[Duplicate] = list(duplicates)

    def for_suite(self, suite: str) -> Records:
        """The records, refusals and duplicates of ``suite`` (refusals whose suite is unreadable included)."""
        return Records(
            [r for r in self if field_of(r, "suite") == suite],
            [f for f in self.refused if f.suite in (suite, None)],
            [d for d in self.duplicates if d.suite == suite],
        )

    def warnings(self) -> list[str]:
        """One line per refused record's problem and per conflicting duplicate (not per same-job copy)."""
        out = [f"refused record {p}" for f in self.refused for p in f.problems]
        out += [f"{d}" for d in self.duplicates if not d.same_job]
        return out


# --------------------------------------------------------------------------------------------- checks
def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_fraction(x: Any) -> bool:
    return _is_number(x) and math.isfinite(x) and 0.0 <= float(x) <= 1.0


def _plain_name(x: Any) -> bool:
    return (
        isinstance(x, str)
        and x.strip() == x
        and x not in ("", ".", "..")
        and not any(c in x for c in "/\\\0")
    )


FRACTION = "a fraction in [0, 1]"


def problems(rec: Any, where: Location) -> list[Problem]:
    """Every problem of one record (an empty list: the record is valid)."""
    if not isinstance(rec, dict):
        return [Problem(where, "", rec, f"expected a JSON object, got {type(rec).__name__}")]
    out: list[Problem] = []

    def bad(key: str, value: Any, expected: str) -> None:
        out.append(Problem(where.of(key.split(".")[0].split("[")[0]), key, value, expected))

    spec = rec.get("spec")
    if spec is not None and not isinstance(spec, dict):
        bad("spec", spec, "an object")
    status = rec.get("status")
    if status not in STATUSES:
        bad("status", status, "one of " + ", ".join(STATUSES))
    for key in NAME_FIELDS:
        val = field_of(rec, key)
        if not isinstance(val, str) or not val.strip():
            bad(key, val, "a non-empty string" + (" (missing)" if val is None else ""))
        elif key == "suite" and not _plain_name(val):
            bad(key, val, "a plain name (no path separators)")
    seed = field_of(rec, "seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        bad("seed", seed, "a non-negative integer" + (" (missing)" if seed is None else ""))
    job_id = rec.get("job_id")
    if status == DONE or job_id is not None:
        if not isinstance(job_id, str) or not job_id:
            bad("job_id", job_id, "a non-empty string" + (" (missing)" if job_id is None else ""))
    if status == DONE:
        for key in ACC_FIELDS:
            val = rec.get(key)
            if not _is_fraction(val):
                bad(key, val, FRACTION + (" (missing)" if val is None else ""))
    for key in ("oracle_target_acc", "source_val_target_acc", "source_val_source_acc"):
        val = rec.get(key)
        if val is not None and not _is_fraction(val):
            bad(key, val, FRACTION + " or null")
    for key in ("oracle_epoch",):
        val = rec.get(key)
        if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
            bad(key, val, "an integer or null")
    history = rec.get("history")
    if history is not None:
        if not isinstance(history, list):
            bad("history", history, "a list of per-epoch objects")
        else:
            for i, h in enumerate(history):
                if not isinstance(h, dict):
                    bad(f"history[{i}]", h, "an object")
                    continue
                for key in ACC_FIELDS:
                    val = h.get(key)
                    if val is not None and not _is_fraction(val):
                        bad(f"history[{i}].{key}", val, FRACTION + " or null")
    name = rec.get("name")
    if name is not None and not _plain_name(name):
        bad("name", name, "a plain name (no path separators)")
    wall = rec.get("wall_time_s")
    if wall is not None and not (_is_number(wall) and math.isfinite(wall) and wall >= 0):
        bad("wall_time_s", wall, "a non-negative number of seconds or null")
    finished = rec.get("finished")
    if finished is not None and _timestamp(finished) is None:
        bad("finished", finished, "an ISO 8601 timestamp or null")
    prov = rec.get("provenance")
    if prov is not None:
        if not isinstance(prov, dict):
            bad("provenance", prov, "an object")
        else:
            for key in ("git", "versions"):
                if prov.get(key) is not None and not isinstance(prov[key], dict):
                    bad(f"provenance.{key}", prov[key], "an object")
    arts = rec.get("artifacts")
    if arts is not None:
        if not isinstance(arts, dict):
            bad("artifacts", arts, "an object")
        else:
            for key, val in arts.items():
                if not _plain_name(val):
                    bad(f"artifacts.{key}", val, "a file name in the job directory")
    if isinstance(spec, dict):
        for key in ("model", "data"):
            if spec.get(key) is not None and not isinstance(spec[key], dict):
                bad(f"spec.{key}", spec[key], "an object")
    job_dir = rec.get("job_dir")
    if job_dir is not None and not isinstance(job_dir, str):
        bad("job_dir", job_dir, "a path (string)")
    return out


def _timestamp(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=_dt.UTC)


def identity(rec: dict[str, Any]) -> str:
    """Canonical JSON of what makes two records the same result: setting + framework, method, variant,
    target, seed (valid records only)."""
    spec = rec.get("spec") if isinstance(rec.get("spec"), dict) else {}
    return canonical_json(
        {
            "setting": {k: spec.get(k) for k in SETTING_KEYS},
            **{k: field_of(rec, k) for k in ("suite", "framework", "method", "variant", "target", "seed")},
        }
    )


_OLDEST = _dt.datetime.min.replace(tzinfo=_dt.UTC)


def check(
    located: Iterable[tuple[Any, Location]],
    *,
    strict: bool = False,
    refused: Iterable[Refusal] = (),
) -> Records:
    """Validate ``(record, location)`` pairs and resolve duplicates (policy in the module docstring).

    ``refused``: records already refused by the reader (e.g. a line that is not JSON). ``strict``: raise
    :class:`RecordError` on the first refused record (in file and line order) or, when none is, on the first
    conflicting duplicate, instead of collecting them."""
    refusals = list(refused)
    valid: list[tuple[dict[str, Any], Location]] = []
    for rec, where in located:
        found = problems(rec, where)
        if found:
            suite = field_of(rec, "suite") if isinstance(rec, dict) else None
            refusals.append(Refusal(where, tuple(found), suite if _plain_name(suite) else None, rec))
        else:
            valid.append((rec, where))
    refusals.sort(key=lambda f: (f.where.path, f.where.line))
    if strict and refusals:
        raise RecordError(str(refusals[0].problems[0]))
    kept: dict[str, tuple[dict[str, Any], Location]] = {}
    dups: list[Duplicate] = []
    for rec, where in valid:
        key = identity(rec)
        if key not in kept:
            kept[key] = (rec, where)
            continue
        old, old_where = kept[key]
        newer = (_timestamp(rec.get("finished")) or _OLDEST) >= (_timestamp(old.get("finished")) or _OLDEST)
        if newer:
            (win, win_at), (lose, lose_at) = (rec, where), (old, old_where)
        else:
            (win, win_at), (lose, lose_at) = (old, old_where), (rec, where)
        dup = Duplicate(
            kept=win_at,
            dropped=lose_at,
            same_job=win.get("job_id") is not None and win.get("job_id") == lose.get("job_id"),
            job_ids=(str(win.get("job_id")), str(lose.get("job_id"))),
            suite=str(field_of(rec, "suite")),
        )
        if strict and not dup.same_job:
            raise RecordError(str(dup))
        dups.append(dup)
        kept[key] = (win, win_at)
    return Records([r for r, _ in kept.values()], refusals, dups)


def check_records(records: Sequence[Any], *, source: str = "<records>", strict: bool = False) -> Records:
    """:func:`check` for records given in memory: the location is ``<source>:<index + 1>``. A
    :class:`Records` (already checked, e.g. by :func:`harness.store.collect`) is returned as is."""
    if isinstance(records, Records):
        return records
    return check(((r, Location(source, i)) for i, r in enumerate(records, 1)), strict=strict)
