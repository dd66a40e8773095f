"""The result of ``suite.check()``: per-domain/split counts and located problems, as a table or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: every kind of problem a check can report
PROBLEM_KINDS: tuple[str, ...] = (
    "missing-root",  # the data root does not exist
    "missing-file",  # a file the layout needs (split file, .mat, listed image) is absent
    "corrupt-image",  # an image that cannot be decoded (empty, unreadable header, truncated, not a file)
    "malformed-line",  # a split-file line that is not `relative/path.jpg label`
    "label-out-of-range",  # a label outside 0..num_classes-1
    "missing-class",  # a class with no sample in a domain/split (unless a known, documented gap)
    "count-mismatch",  # number of samples differs from the expected (published) count
    "bad-format",  # a .mat key missing or with the wrong shape/dtype, a wrong path prefix, ...
    "duplicate",  # a path listed twice in one split file
    "checksum",  # a cached array that does not match its recorded checksum
    "outside-root",  # an image path that resolves (symlinks followed) outside the data root
    "image-too-large",  # an image whose header declares more pixels than the limit (never decoded)
)


@dataclass
class Problem:
    """One defect: ``kind`` (see :data:`PROBLEM_KINDS`), ``where`` (file[:line] or file:key) and a message."""

    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.message}"


@dataclass
class CountRow:
    """Counts of one domain/split: found vs expected (None = no expectation) and classes present."""

    domain: str
    split: str
    found: int | None
    expected: int | None
    classes: int | None = None
    num_classes: int | None = None

    @property
    def ok(self) -> bool:
        return self.found is not None and (self.expected is None or self.found == self.expected)


@dataclass
class CheckReport:
    """Everything ``python -m harness.data check`` prints. ``ok`` is False as soon as one problem is found."""

    suite: str
    root: str
    rows: list[CountRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_listed: int = 50

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.rows)

    def add(self, kind: str, where: str, message: str) -> None:
        """Record one problem."""
        assert kind in PROBLEM_KINDS, kind
        self.problems.append(Problem(kind, where, message))

    def kinds(self) -> set[str]:
        """The set of problem kinds found."""
        return {p.kind for p in self.problems}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``ok``, ``rows``, ``problems``, ``counts_by_kind``, ``notes``)."""
        by_kind: dict[str, int] = {}
        for p in self.problems:
            by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
        return {
            "suite": self.suite,
            "root": self.root,
            "ok": self.ok,
            "rows": [asdict(r) | {"ok": r.ok} for r in self.rows],
            "problems": [asdict(p) for p in self.problems],
            "counts_by_kind": by_kind,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        """Human-readable table + problem list (at most ``max_listed`` per kind)."""
        from tabulate import tabulate

        table = [
            [
                r.domain,
                r.split,
                "-" if r.found is None else r.found,
                "-" if r.expected is None else r.expected,
                "-" if r.classes is None else f"{r.classes}/{r.num_classes}",
                "ok" if r.ok else "MISMATCH",
            ]
            for r in self.rows
        ]
        out = [f"suite {self.suite}  root {self.root}"]
        if table:
            out.append(tabulate(table, headers=["domain", "split", "found", "expected", "classes", "status"]))
        shown: dict[str, int] = {}
        if self.problems:
            out.append(f"\n{len(self.problems)} problem(s):")
            for p in self.problems:
                shown[p.kind] = shown.get(p.kind, 0) + 1
                if shown[p.kind] <= self.max_listed:
                    out.append(f"  {p}")
            for k, n in shown.items():
                if n > self.max_listed:
                    out.append(f"  ... and {n - self.max_listed} more [{k}] (use --json for all)")
        for n in self.notes:
            out.append(f"note: {n}")
        out.append("OK" if self.ok else "FAILED")
        return "\n".join(out)
