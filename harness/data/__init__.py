"""Framework-neutral data layer: suites, splits, the leave-one-domain-out protocol, preprocessing, samplers.

Quick use::

    from harness.data import get_suite
    suite = get_suite("digits")                 # or "smoke", "digit-five", "domainnet" (root=... or env var)
    p = suite.protocol("mnistm", seed=0)         # sources pooled with domain ids 0..S-1, target id S
    p.source_train, p.target_train, p.target_test, p.transform_train, p.transform_test

    from impl_torch.data import make_loader      # or impl_keras.data.make_loader (NHWC)
    for x, y, d in make_loader(p.source_train, p.transform_train, 64, train=True, seed=0): ...

CLI: ``python -m harness.data check|prepare|show|list`` (see ``datasets/README.md``). Nothing here imports
torch, TensorFlow or Keras.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.data.domains import SUITE_DOMAINS, SUITE_NUM_CLASSES, suite_domains, suite_num_classes
from harness.data.pipeline import ON_CORRUPT, Batch, load_batch, sample_rng
from harness.data.protocol import SPLITS, Protocol, Suite
from harness.data.report import PROBLEM_KINDS, CheckReport, CountRow, Problem
from harness.data.samplers import SAMPLERS, balanced_plan, make_plan, pooled_plan
from harness.data.splits import ArraySplit, FileSplit, Split, concat
from harness.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TransformSpec, apply_transform
from harness.errors import DataError

DEFAULT_SUITE = "digits"


def _digits(**kw: Any) -> Suite:
    from harness.data.digits import DigitsSuite

    return DigitsSuite(**kw)


def _smoke(**kw: Any) -> Suite:
    from harness.data.smoke import SmokeSuite

    return SmokeSuite(**kw)


def _digit_five(**kw: Any) -> Suite:
    from harness.data.digit_five import DigitFiveSuite

    return DigitFiveSuite(**kw)


def _domainnet(**kw: Any) -> Suite:
    from harness.data.domainnet import DomainNetSuite

    return DomainNetSuite(**kw)


#: suite name -> factory(root=None, **options)
SUITES: dict[str, Callable[..., Suite]] = {
    "digits": _digits,
    "smoke": _smoke,
    "digit-five": _digit_five,
    "domainnet": _domainnet,
}


def list_suites() -> list[str]:
    """Registered suite names."""
    return sorted(SUITES)


def get_suite(name: str = DEFAULT_SUITE, root: str | Path | None = None, **options: Any) -> Suite:
    """The suite ``name`` reading from ``root`` (None: the suite's flag/env-var default).

    Options are suite-specific: ``digits``/``smoke``: ``n_train``, ``n_test``, ``seed``; ``digit-five``:
    ``n_train``, ``n_test``, ``expected``, ``subset_seed``; ``domainnet``: ``n_train``, ``n_test`` (subsets),
    ``num_classes``, ``expected``, ``domains``. Unknown options raise :class:`DataError`.
    """
    if name not in SUITES:
        raise DataError(f"unknown suite {name!r}: expected one of {list_suites()}")
    unknown = sorted(set(options) - set(suite_options(name)))
    if unknown:
        raise DataError(f"suite {name!r} has no option(s) {unknown}: expected some of {suite_options(name)}")
    return SUITES[name](root=root, **options)


def suite_options(name: str) -> list[str]:
    """Option names accepted by ``get_suite(name, ...)`` (for CLIs/job specs)."""
    fac = {
        "digits": "harness.data.digits:DigitsSuite",
        "smoke": "harness.data.smoke:SmokeSuite",
        "digit-five": "harness.data.digit_five:DigitFiveSuite",
        "domainnet": "harness.data.domainnet:DomainNetSuite",
    }[name]
    import importlib

    mod, cls = fac.split(":")
    sig = inspect.signature(getattr(importlib.import_module(mod), cls).__init__)
    return [p for p in sig.parameters if p not in ("self", "root")]


__all__ = [
    "ArraySplit",
    "Batch",
    "CheckReport",
    "CountRow",
    "DEFAULT_SUITE",
    "DataError",
    "FileSplit",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ON_CORRUPT",
    "PROBLEM_KINDS",
    "Problem",
    "Protocol",
    "SAMPLERS",
    "SPLITS",
    "SUITES",
    "SUITE_DOMAINS",
    "SUITE_NUM_CLASSES",
    "Split",
    "Suite",
    "TransformSpec",
    "apply_transform",
    "balanced_plan",
    "concat",
    "get_suite",
    "list_suites",
    "load_batch",
    "make_plan",
    "pooled_plan",
    "sample_rng",
    "suite_domains",
    "suite_num_classes",
    "suite_options",
]
