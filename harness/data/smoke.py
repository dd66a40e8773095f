"""Suite ``smoke``: a tiny generated suite (well under a second, nothing cached) for tests and quick checks.

Three domains of 32×32×3 uint8 digits made from scikit-learn's 8×8 digits (UCI optdigits), 10 classes:
``plain`` (white on black), ``inverse`` (dark on light, noisy), ``colour`` (random colours, shifted). Train
and test come from disjoint base images; classes are balanced (sample ``i`` has class ``i % 10``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.data.domains import SMOKE, SUITE_NUM_CLASSES
from harness.data.protocol import SPLITS, Suite
from harness.data.report import CheckReport, CountRow
from harness.data.splits import ArraySplit
from harness.data.transforms import TransformSpec
from harness.errors import DataError

SMOKE_DOMAINS: tuple[str, ...] = SMOKE


@lru_cache(maxsize=8)
def _generate(domain: str, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from harness.data.digits import optdigits

    x8, y = optdigits()
    d = SMOKE_DOMAINS.index(domain)
    rng = np.random.default_rng([seed, d, SPLITS.index(split), 0x5E])
    pool_rng = np.random.default_rng([seed, 0x5E])  # same train/test base split for every domain
    test_mask = np.zeros(len(y), bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test_mask[pool_rng.choice(idx, size=len(idx) // 5, replace=False)] = True
    pool = np.flatnonzero(test_mask if split == "test" else ~test_mask)
    labels = np.arange(n) % 10
    chosen = np.array([rng.choice(pool[y[pool] == c]) for c in labels], dtype=np.int64)
    out = np.empty((n, 32, 32, 3), np.uint8)
    for k, i in enumerate(chosen):
        g = np.asarray(Image.fromarray(x8[i]).resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255.0
        if domain == "plain":
            img = np.repeat(g[:, :, None] * 255.0, 3, axis=2)
        elif domain == "inverse":
            img = np.repeat((1.0 - 0.8 * g[:, :, None]) * 230.0, 3, axis=2) + rng.normal(0, 12, (32, 32, 3))
        else:
            fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            g = np.roll(g, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
            img = bg * (1 - g[:, :, None]) + fg * g[:, :, None]
        out[k] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out, y[chosen].astype(np.int64)


class SmokeSuite(Suite):
    """Suite ``smoke``: ``n_train``/``n_test`` images per domain (defaults 120/40), generated in memory."""

    name = "smoke"
    domains = SMOKE_DOMAINS
    num_classes = SUITE_NUM_CLASSES["smoke"]
    kind = "array"

    def __init__(
        self, root: str | Path | None = None, n_train: int = 120, n_test: int = 40, seed: int = 0
    ) -> None:
        super().__init__(root)
        for nm, v in (("n_train", n_train), ("n_test", n_test)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DataError(f"smoke suite: {nm} = {v!r}, expected a positive integer")
        self.n_train, self.n_test, self.seed = n_train, n_test, seed

    def expected_counts(self) -> dict[str, dict[str, int]]:
        return {d: {"train": self.n_train, "test": self.n_test} for d in self.domains}

    def transform(self, train: bool) -> TransformSpec:
        return TransformSpec.digits(train)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"n_train": self.n_train, "n_test": self.n_test, "seed": self.seed}

    def _load_split(self, domain: str, split: str) -> ArraySplit:
        n = self.n_train if split == "train" else self.n_test
        x, y = _generate(domain, split, n, self.seed)
        return ArraySplit(x, y, np.zeros(n, np.int64), (domain,), 10, f"smoke:{domain}:{split}")

    def check(self, full: bool = False) -> CheckReport:
        rep = CheckReport(self.name, "(generated in memory)")
        for d in self.domains:
            for s in SPLITS:
                sp = self.split(d, s)
                rep.rows.append(
                    CountRow(
                        d,
                        s,
                        len(sp),
                        self.expected_counts()[d][s],
                        len(np.unique(sp.labels)),
                        self.num_classes,
                    )
                )
        return rep
