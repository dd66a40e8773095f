r"""Difference measures and reporting shared by the equivalence checks (framework-free: numpy + tabulate).

For two arrays ``a`` (reference) and ``b`` of the same shape:

* max absolute difference ``max|a − b|``;
* max relative difference ``max|a − b| / max(max|a|, max|b|, tiny)`` — the largest element-wise error in units
  of the largest magnitude of either tensor (a max-norm relative error; ``tiny`` = the smallest positive
  float64, so two all-zero tensors give 0). It does not blow up on individual near-zero elements, and it is
  what the bounds (float64 ``1e-10``, float32 ``1e-4``) apply to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TINY = float(np.finfo(np.float64).tiny)
#: Default bounds on the max relative difference, per dtype.
BOUNDS: dict[str, float] = {"float64": 1e-10, "float32": 1e-4}
RELATIVE_DEFINITION = "rel = max|a-b| / max(max|a|, max|b|, tiny)"


def max_abs_diff(a: Any, b: Any) -> float:
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"shape mismatch: {a64.shape} vs {b64.shape}")
    return float(np.max(np.abs(a64 - b64))) if a64.size else 0.0


def max_rel_diff(a: Any, b: Any) -> float:
    """``max|a-b| / max(max|a|, max|b|, tiny)`` (see the module docstring)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not a64.size:
        return 0.0
    scale = max(float(np.max(np.abs(a64))), float(np.max(np.abs(b64))), TINY)
    return max_abs_diff(a64, b64) / scale


@dataclass(frozen=True)
class Diff:
    """One compared quantity: e.g. ``config="sr/kernel_merge"``, ``what="grad bases"``."""

    config: str
    what: str
    max_abs: float
    max_rel: float
    bound: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_rel)) and self.max_rel <= self.bound

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def diff(config: str, what: str, a: Any, b: Any, bound: float) -> Diff:
    return Diff(config, what, max_abs_diff(a, b), max_rel_diff(a, b), bound)


def compare_dicts(config: str, a: dict[str, Any], b: dict[str, Any], bound: float) -> list[Diff]:
    """Compare every key present in ``a`` (a missing key in ``b`` is an error)."""
    missing = sorted(set(a) - set(b))
    if missing:
        raise KeyError(f"{config}: missing in the other framework: {', '.join(missing)}")
    return [diff(config, k, a[k], b[k], bound) for k in a]


def summarise(diffs: Iterable[Diff]) -> list[Diff]:
    """Worst case per (config, what) over trials: the Diff with the largest max_rel (and largest max_abs)."""
    worst: dict[tuple[str, str], Diff] = {}
    for d in diffs:
        key = (d.config, d.what)
        w = worst.get(key)
        if w is None:
            worst[key] = d
        else:
            worst[key] = Diff(d.config, d.what, max(w.max_abs, d.max_abs), max(w.max_rel, d.max_rel), d.bound)
    return list(worst.values())


def markdown_table(diffs: Sequence[Diff]) -> str:
    from tabulate import tabulate

    rows = [
        [d.config, d.what, f"{d.max_abs:.3e}", f"{d.max_rel:.3e}", f"{d.bound:.0e}", "ok" if d.ok else "FAIL"]
        for d in diffs
    ]
    return tabulate(
        rows, headers=["config", "quantity", "max abs", "max rel", "bound", ""], tablefmt="github"
    )


def to_json(diffs: Sequence[Diff], **extra: Any) -> str:
    return json.dumps(
        {
            **extra,
            "relative_difference": RELATIVE_DEFINITION,
            "ok": all(d.ok for d in diffs),
            "max_abs": max((d.max_abs for d in diffs), default=0.0),
            "max_rel": max((d.max_rel for d in diffs), default=0.0),
            "rows": [d.to_dict() for d in diffs],
        },
        indent=2,
    )
