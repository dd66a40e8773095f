"""The leave-one-domain-out protocol and the :class:`Suite` base class every suite implements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.report import CheckReport
from harness.data.splits import ArraySplit, FileSplit, Split, concat
from harness.data.transforms import TransformSpec
from harness.errors import DataError

SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True, eq=False)
class Protocol:
    """One multi-source adaptation task (leave one domain out).

    Domain ids: ``d = i`` for ``sources[i]`` and ``d = len(sources)`` for the target, i.e. an index into
    :attr:`domains`. ``source_train`` pools every source train split (labels used), ``target_train`` is the
    target train split (unlabeled for training: its labels are kept only for reporting), ``target_test`` is
    the evaluation split.
    """

    suite: str
    target: str
    sources: tuple[str, ...]
    seed: int
    num_classes: int
    source_train: Split
    target_train: Split
    target_test: Split
    transform_train: TransformSpec
    transform_test: TransformSpec

    @property
    def domains(self) -> tuple[str, ...]:
        """``sources + (target,)``: the names of domain ids 0..S."""
        return self.sources + (self.target,)

    @property
    def target_id(self) -> int:
        return len(self.sources)

    def summary(self) -> dict[str, Any]:
        """Counts and names, JSON-ready (for run records)."""
        return {
            "suite": self.suite,
            "target": self.target,
            "sources": list(self.sources),
            "seed": self.seed,
            "num_classes": self.num_classes,
            "source_train": len(self.source_train),
            "source_train_per_domain": {
                s: int((self.source_train.domains == i).sum()) for i, s in enumerate(self.sources)
            },
            "target_train": len(self.target_train),
            "target_test": len(self.target_test),
            "transform_train": self.transform_train.to_dict(),
            "transform_test": self.transform_test.to_dict(),
        }


class Suite:
    """A named set of domains with train/test splits. Subclasses implement ``_load_split`` and ``check``."""

    name: str = ""
    domains: tuple[str, ...] = ()
    num_classes: int = 0
    kind: str = "array"  # "array" (ArraySplit) or "file" (FileSplit)

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else None

    # -- to implement -------------------------------------------------------------------------------------
    def _load_split(self, domain: str, split: str) -> Split:
        raise NotImplementedError

    def check(self, full: bool = False) -> CheckReport:
        """Validate the data root / cache; ``full`` also decodes every image."""
        raise NotImplementedError

    def expected_counts(self) -> dict[str, dict[str, int]]:
        """``{domain: {"train": n, "test": n}}`` as the protocol will deliver them."""
        raise NotImplementedError

    def transform(self, train: bool) -> TransformSpec:
        """The suite's train/eval preprocessing."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        """Build whatever cache the suite needs (no-op by default); returns a summary."""
        return {"suite": self.name, "cached": False}

    def describe(self) -> dict[str, Any]:
        """Name, domains, classes, root, expected counts."""
        return {
            "suite": self.name,
            "domains": list(self.domains),
            "num_classes": self.num_classes,
            "kind": self.kind,
            "root": None if self.root is None else str(self.root),
        }

    def _check_domain(self, domain: str) -> None:
        if domain not in self.domains:
            raise DataError(f"suite {self.name!r} has no domain {domain!r}: expected one of {self.domains}")

    def split(self, domain: str, split: str) -> Split:
        """One domain's ``"train"`` or ``"test"`` split; domain id 0, ``domain_names == (domain,)``."""
        self._check_domain(domain)
        if split not in SPLITS:
            raise DataError(f"split {split!r}: expected one of {SPLITS}")
        return self._load_split(domain, split)

    def protocol(self, target: str, seed: int = 0, sources: tuple[str, ...] | None = None) -> Protocol:
        """Leave-one-domain-out: sources = every other domain (or ``sources``) pooled with their ids."""
        self._check_domain(target)
        srcs = tuple(d for d in self.domains if d != target) if sources is None else tuple(sources)
        for s in srcs:
            self._check_domain(s)
            if s == target:
                raise DataError(f"target {target!r} cannot also be a source")
        names = srcs + (target,)
        parts = [self.split(s, "train").with_domains(i, names) for i, s in enumerate(srcs)]
        src = concat(parts, name=f"{self.name}:{'+'.join(srcs)}:train")
        tt = self.split(target, "train").with_domains(len(srcs), names)
        te = self.split(target, "test").with_domains(len(srcs), names)
        return Protocol(
            self.name,
            target,
            srcs,
            seed,
            self.num_classes,
            src,
            tt,
            te,
            self.transform(True),
            self.transform(False),
        )


def class_counts(split: ArraySplit | FileSplit, num_classes: int) -> list[int]:
    """Samples per class (labels outside the range are ignored)."""
    import numpy as np

    lab = split.labels[(split.labels >= 0) & (split.labels < num_classes)]
    return np.bincount(lab, minlength=num_classes).tolist()
