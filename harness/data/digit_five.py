"""Suite ``digit-five``: the published Digit-Five ``.mat`` files (as distributed with M3SDA).

Layout (all files directly in the root; see ``datasets/digit-five.md``)::

    <root>/mnist_data.mat          train_32 (55000,32,32) u8, test_32 (10000,32,32), label_train (55000,10)
                                   one-hot, label_test (10000,10)   [train_28/test_28 are ignored]
    <root>/mnistm_with_label.mat   train (55000,28,28,3) u8, test (10000,28,28,3), label_train/label_test
                                   one-hot; resized 28→32 (PIL bilinear)
    <root>/svhn_train_32x32.mat    X (32,32,3,N) u8, y (N,1) in 1..10, 10 means digit 0
    <root>/svhn_test_32x32.mat     same keys
    <root>/syn_number.mat          train_data (25000,32,32,3), train_label (25000,1), test_data (9000,...),
                                   test_label; labels 0..9
    <root>/usps_28x28.mat          dataset: 2×2 cell; [0][0] train images (7438,1,28,28) float in [0,1],
                                   [0][1] labels (7438,1); [1][0]/[1][1] test (1860); labels 0..9; 28→32

Protocol (M3SDA): ``n_train`` = 25,000 / ``n_test`` = 9,000 per domain, a fixed seeded subset
(``subset_seed``); USPS uses all 7,438 train images tiled to ``n_train`` and all 1,860 test images.
Every domain is delivered as uint8 ``(N, 32, 32, 3)`` (grey copied to 3 channels).
Root: ``root=`` / ``--root``, else ``$DRT_DIGIT_FIVE_ROOT``, else ``<data root>/digit-five``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.data.cache import ENV_DATA_ROOT, default_data_root
from harness.data.domains import DIGIT_FIVE, SUITE_NUM_CLASSES
from harness.data.protocol import SPLITS, Suite
from harness.data.report import CheckReport, CountRow
from harness.data.splits import ArraySplit
from harness.data.transforms import TransformSpec
from harness.errors import DataError

ENV_ROOT = "DRT_DIGIT_FIVE_ROOT"
DOMAINS: tuple[str, ...] = DIGIT_FIVE
FILES: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist_data.mat",),
    "mnistm": ("mnistm_with_label.mat",),
    "usps": ("usps_28x28.mat",),
    "syn": ("syn_number.mat",),
    "svhn": ("svhn_train_32x32.mat", "svhn_test_32x32.mat"),
}
#: sample counts in the published files (train, test)
PUBLISHED_COUNTS: dict[str, dict[str, int]] = {
    "mnist": {"train": 55000, "test": 10000},
    "mnistm": {"train": 55000, "test": 10000},
    "usps": {"train": 7438, "test": 1860},
    "syn": {"train": 25000, "test": 9000},
    "svhn": {"train": 73257, "test": 26032},
}
LAYOUT = (
    __doc__[__doc__.index("Layout") : __doc__.index("Protocol (M3SDA)")]
    .strip()
    .replace("``", "")
    .replace("::", ":")
)


def _resize32(x: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W[,C]) → (N,32,32,3) bilinear; grey copied to 3 channels."""
    if x.shape[1:3] != (32, 32):
        x = (
            np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.BILINEAR)) for im in x])
            if len(x)
            else np.zeros((0, 32, 32) + x.shape[3:], np.uint8)
        )
    if x.ndim == 3:
        x = x[:, :, :, None]
    if x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    return np.ascontiguousarray(x)


class DigitFiveSuite(Suite):
    """Suite ``digit-five`` over the published ``.mat`` files (module docstring for layout and protocol).

    ``expected`` overrides :data:`PUBLISHED_COUNTS` (e.g. for small test fixtures); ``n_train``/``n_test``
    are the protocol sizes (25,000 / 9,000).
    """

    name = "digit-five"
    domains = DOMAINS
    num_classes = SUITE_NUM_CLASSES["digit-five"]
    kind = "array"

    def __init__(
        self,
        root: str | Path | None = None,
        n_train: int = 25000,
        n_test: int = 9000,
        expected: dict[str, dict[str, int]] | None = None,
        subset_seed: int = 0,
    ) -> None:
        self.root_source = (
            "--root"
            if root is not None
            else (f"${ENV_ROOT}" if os.environ.get(ENV_ROOT) else f"default (${ENV_DATA_ROOT}/digit-five)")
        )
        if root is None:
            root = os.environ.get(ENV_ROOT) or (default_data_root() / "digit-five")
        super().__init__(root)
        self.n_train, self.n_test, self.subset_seed = n_train, n_test, subset_seed
        self.expected_raw = {d: dict(PUBLISHED_COUNTS[d]) for d in DOMAINS}
        for d, v in (expected or {}).items():
            self.expected_raw[d] = dict(v)
        self._mem: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    def expected_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for d in self.domains:
            r = self.expected_raw[d]
            tr = self.n_train if d == "usps" else min(self.n_train, r["train"])
            te = r["test"] if d == "usps" else min(self.n_test, r["test"])
            out[d] = {"train": tr, "test": te}
        return out

    def transform(self, train: bool) -> TransformSpec:
        return TransformSpec.digits(train)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "root_from": self.root_source,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    def missing_root_message(self) -> str:
        return (
            f"Digit-Five root {self.root} does not exist (taken from {self.root_source}). Set it with "
            f"--root PATH or ${ENV_ROOT}. Expected layout:\n{LAYOUT}"
        )

    # -- reading ------------------------------------------------------------------------------------------
    def _loadmat(self, fname: str, keys: list[str], rep: CheckReport) -> dict[str, Any] | None:
        import scipy.io

        path = self.root / fname
        if not path.exists():
            rep.add("missing-file", str(path), f"expected {fname} with keys {keys}")
            return None
        try:
            m = scipy.io.loadmat(str(path), variable_names=keys)
        except NotImplementedError:
            rep.add("bad-format", str(path), "MATLAB v7.3 (HDF5) file: expected a v5 .mat as published")
            return None
        except Exception as e:  # scipy raises many types on corrupt files
            rep.add("bad-format", str(path), f"unreadable .mat file ({type(e).__name__}: {e})")
            return None
        missing = [k for k in keys if k not in m]
        if missing:
            rep.add(
                "bad-format",
                str(path),
                f"missing key(s) {missing}; expected keys {keys}, found "
                f"{sorted(k for k in m if not k.startswith('__'))}",
            )
            return None
        return m

    def _images(
        self, a: Any, where: str, shape_desc: str, ok_shape: Any, rep: CheckReport
    ) -> np.ndarray | None:
        a = np.asarray(a)
        if not ok_shape(a.shape):
            rep.add("bad-format", where, f"shape {a.shape}, expected {shape_desc}")
            return None
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0 + 1e-6:
                a = np.round(np.clip(a, 0, 1) * 255)
            a = np.clip(a, 0, 255).astype(np.uint8)
        return a

    def _labels(self, y: Any, where: str, n: int, kind: str, rep: CheckReport) -> np.ndarray | None:
        y = np.asarray(y)
        if kind == "onehot":
            if y.ndim != 2 or y.shape != (n, 10):
                rep.add("bad-format", where, f"shape {y.shape}, expected one-hot ({n}, 10)")
                return None
            bad = np.flatnonzero((y.sum(1) != 1) | (y.max(1) != 1))
            if len(bad):
                rep.add(
                    "label-out-of-range",
                    f"{where}[{bad[0]}]",
                    f"{len(bad)} row(s) not one-hot (first: {y[bad[0]].tolist()})",
                )
            return np.argmax(y, axis=1).astype(np.int64)
        y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
        if y.ndim != 1 or len(y) != n:
            rep.add("bad-format", where, f"shape {np.shape(y)}, expected ({n}, 1)")
            return None
        y = y.astype(np.int64)
        lo, hi = (1, 10) if kind == "svhn" else (0, 9)
        bad = np.flatnonzero((y < lo) | (y > hi))
        if len(bad):
            rep.add(
                "label-out-of-range",
                f"{where}[{bad[0]}]",
                f"{len(bad)} label(s) outside {lo}..{hi} (first: {y[bad[0]]})",
            )
        if kind == "svhn":
            y = np.where(y == 10, 0, y)
        return y

    def _read(self, domain: str, rep: CheckReport) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """Raw (all samples) arrays of one domain: ``{split: (uint8 (N,32,32,3), int64 labels)}``."""
        r = self.root
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if domain in ("mnist", "mnistm"):
            f = FILES[domain][0]
            xk = {"mnist": ("train_32", "test_32"), "mnistm": ("train", "test")}[domain]
            m = self._loadmat(f, [*xk, "label_train", "label_test"], rep)
            if m is None:
                return None
            for split, k in zip(SPLITS, xk):
                if domain == "mnist":
                    x = self._images(
                        m[k],
                        f"{r / f}:{k}",
                        "(N, 32, 32) uint8",
                        lambda s: len(s) == 3 and s[1:] == (32, 32),
                        rep,
                    )
                else:
                    x = self._images(
                        m[k],
                        f"{r / f}:{k}",
                        "(N, 28, 28, 3) uint8",
                        lambda s: len(s) == 4 and s[1:] == (28, 28, 3),
                        rep,
                    )
                if x is None:
                    return None
                y = self._labels(m[f"label_{split}"], f"{r / f}:label_{split}", len(x), "onehot", rep)
                if y is None:
                    return None
                out[split] = (_resize32(x), y)
        elif domain == "svhn":
            for split, f in zip(SPLITS, FILES["svhn"]):
                m = self._loadmat(f, ["X", "y"], rep)
                if m is None:
                    return None
                x = self._images(
                    m["X"],
                    f"{r / f}:X",
                    "(32, 32, 3, N) uint8",
                    lambda s: len(s) == 4 and s[:3] == (32, 32, 3),
                    rep,
                )
                if x is None:
                    return None
                x = np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)))
                y = self._labels(m["y"], f"{r / f}:y", len(x), "svhn", rep)
                if y is None:
                    return None
                out[split] = (x, y)
        elif domain == "syn":
            f = FILES["syn"][0]
            m = self._loadmat(f, ["train_data", "train_label", "test_data", "test_label"], rep)
            if m is None:
                return None
            for split in SPLITS:
                x = self._images(
                    m[f"{split}_data"],
                    f"{r / f}:{split}_data",
                    "(N, 32, 32, 3) uint8",
                    lambda s: len(s) == 4 and s[1:] == (32, 32, 3),
                    rep,
                )
                if x is None:
                    return None
                y = self._labels(m[f"{split}_label"], f"{r / f}:{split}_label", len(x), "plain", rep)
                if y is None:
                    return None
                out[split] = (x, y)
        elif domain == "usps":
            f = FILES["usps"][0]
            m = self._loadmat(f, ["dataset"], rep)
            if m is None:
                return None
            cell = m["dataset"]
            if not (isinstance(cell, np.ndarray) and cell.dtype == object and cell.shape == (2, 2)):
                rep.add(
                    "bad-format",
                    f"{r / f}:dataset",
                    f"expected a 2x2 cell array, got "
                    f"{getattr(cell, 'dtype', type(cell))} {getattr(cell, 'shape', '')}",
                )
                return None
            for row, split in enumerate(SPLITS):
                where = f"{r / f}:dataset[{row}][0]"
                x = self._images(
                    cell[row, 0],
                    where,
                    "(N, 1, 28, 28) float in [0, 1]",
                    lambda s: len(s) == 4 and s[1:] == (1, 28, 28),
                    rep,
                )
                if x is None:
                    return None
                y = self._labels(cell[row, 1], f"{r / f}:dataset[{row}][1]", len(x), "plain", rep)
                if y is None:
                    return None
                out[split] = (_resize32(x[:, 0]), y)
        return out

    def raw(self, domain: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """All samples of ``domain`` as published (as uint8 (N,32,32,3)); DataError on any defect."""
        self._check_domain(domain)
        if domain not in self._mem:
            if not self.root.is_dir():
                raise DataError(self.missing_root_message())
            rep = CheckReport(self.name, str(self.root))
            data = self._read(domain, rep)
            if rep.problems or data is None:
                raise DataError(f"digit-five/{domain}: " + "; ".join(str(p) for p in rep.problems[:5]))
            self._mem[domain] = data
        return self._mem[domain]

    def _protocol_index(self, domain: str, split: str, n_raw: int) -> np.ndarray:
        rng = np.random.default_rng([self.subset_seed, DOMAINS.index(domain), SPLITS.index(split), 0xD5])
        if domain == "usps":
            if split == "test":
                return np.arange(n_raw)
            reps = -(-self.n_train // max(n_raw, 1))
            return (
                np.concatenate([rng.permutation(n_raw) for _ in range(reps)])[: self.n_train]
                if n_raw
                else np.zeros(0, np.int64)
            )
        n = self.n_train if split == "train" else self.n_test
        return np.sort(rng.permutation(n_raw)[: min(n, n_raw)])

    def _load_split(self, domain: str, split: str) -> ArraySplit:
        x, y = self.raw(domain)[split]
        idx = self._protocol_index(domain, split, len(y))
        return ArraySplit(
            x[idx], y[idx], np.zeros(len(idx), np.int64), (domain,), 10, f"digit-five:{domain}:{split}"
        )

    def check(self, full: bool = False) -> CheckReport:
        """Files, keys, shapes, labels, counts vs :data:`PUBLISHED_COUNTS` (or ``expected``), classes."""
        rep = CheckReport(self.name, str(self.root))
        if not self.root.is_dir():
            rep.add("missing-root", str(self.root), self.missing_root_message())
            return rep
        for d in self.domains:
            data = self._read(d, rep)
            for s in SPLITS:
                if data is None or s not in data:
                    rep.rows.append(CountRow(d, s, None, self.expected_raw[d][s]))
                    continue
                y = data[s][1]
                present = set(np.unique(y).tolist()) & set(range(10))
                for c in sorted(set(range(10)) - present):
                    rep.add(
                        "missing-class",
                        f"{self.root / FILES[d][0 if d != 'svhn' else SPLITS.index(s)]}",
                        f"{d}/{s}: class {c} has no sample",
                    )
                rep.rows.append(CountRow(d, s, len(y), self.expected_raw[d][s], len(present), 10))
            del data  # not memoised: a check should not keep ~1 GB of arrays alive
        rep.notes.append(f"protocol sizes: {self.expected_counts()} (USPS train tiled)")
        return rep
