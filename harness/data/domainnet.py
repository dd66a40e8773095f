"""Suite ``domainnet``: the published DomainNet folder layout and split files (cleaned release).

Layout (see ``datasets/domainnet.md``)::

    <root>/{domain}/{class}/{domain}_{NNN}_{id:06d}.jpg   images (domain in clipart, infograph, painting,
                                                           quickdraw, real, sketch)
    <root>/{domain}_train.txt                              one `domain/class/file.jpg label` per line
    <root>/{domain}_test.txt                               labels 0..344

Expected (cleaned release) counts are :data:`CLEANED_COUNTS`; class 327 (t-shirt) has no image in
``painting_train`` (a known gap, reported as a note, not a problem).
Root: ``root=`` / ``--root``, else ``$DRT_DOMAINNET_ROOT``, else ``<data root>/domainnet``.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.cache import ENV_DATA_ROOT, default_data_root
from harness.data.domains import DOMAINNET, SUITE_NUM_CLASSES
from harness.data.images import (
    IMAGE_CHECKS,
    check_image,
    is_inside,
    max_image_pixels,
    outside_root_message,
    real_root,
)
from harness.data.images import allow_outside_root as _allow_outside_root
from harness.data.protocol import SPLITS, Suite
from harness.data.report import CheckReport, CountRow
from harness.data.splits import FileSplit
from harness.data.transforms import TransformSpec
from harness.errors import DataError

ENV_ROOT = "DRT_DOMAINNET_ROOT"
DOMAINS: tuple[str, ...] = DOMAINNET
NUM_CLASSES = SUITE_NUM_CLASSES["domainnet"]
CLEANED_COUNTS: dict[str, dict[str, int]] = {
    "clipart": {"train": 33525, "test": 14604},
    "infograph": {"train": 36023, "test": 15582},
    "painting": {"train": 50416, "test": 21850},
    "quickdraw": {"train": 120750, "test": 51750},
    "real": {"train": 120906, "test": 52041},
    "sketch": {"train": 48212, "test": 20916},
}
#: documented gaps of the cleaned release: (domain, split) -> classes with no image
KNOWN_MISSING_CLASSES: dict[tuple[str, str], tuple[int, ...]] = {("painting", "train"): (327,)}
LAYOUT = (
    __doc__[__doc__.index("Layout") : __doc__.index("Expected (cleaned")]
    .strip()
    .replace("``", "")
    .replace("::", ":")
)
#: a split file larger than this is refused unread (the largest cleaned-release file is ~7 MB)
MAX_SPLIT_FILE_BYTES = 256 * 1024 * 1024
_LABEL = re.compile(r"[0-9]+")  # ASCII digits only: no sign, no "_", no other scripts' digits, no spaces
_FIELDS = re.compile(r"[ \t]+")  # fields are separated by ASCII spaces/tabs only


class DomainNetSuite(Suite):
    """Suite ``domainnet`` (module docstring for layout).

    ``n_train``/``n_test``: use a fixed seeded subset (``subset_seed``) of at most that many images per domain
    (quick runs); ``None`` = all. For fixtures: ``num_classes``, ``expected`` (replaces
    :data:`CLEANED_COUNTS`), ``domains`` (a subset or other names), ``known_missing``.
    Hostile-input guards (:mod:`harness.data.images`): ``allow_outside_root`` (default
    ``$DRT_ALLOW_OUTSIDE_ROOT``, off: every image must resolve inside the resolved root) and ``max_pixels``
    (default ``$DRT_MAX_IMAGE_PIXELS``, else 64 megapixels per image, checked from the header).
    """

    name = "domainnet"
    num_classes = NUM_CLASSES
    kind = "file"

    def __init__(
        self,
        root: str | Path | None = None,
        num_classes: int = NUM_CLASSES,
        expected: dict[str, dict[str, int]] | None = None,
        domains: tuple[str, ...] | None = None,
        known_missing: dict[tuple[str, str], tuple[int, ...]] | None = None,
        n_train: int | None = None,
        n_test: int | None = None,
        subset_seed: int = 0,
        allow_outside_root: bool | None = None,
        max_pixels: int | None = None,
    ) -> None:
        self.root_source = (
            "--root"
            if root is not None
            else (f"${ENV_ROOT}" if os.environ.get(ENV_ROOT) else f"default (${ENV_DATA_ROOT}/domainnet)")
        )
        if root is None:
            root = os.environ.get(ENV_ROOT) or (default_data_root() / "domainnet")
        super().__init__(root)
        self.domains = tuple(domains) if domains is not None else DOMAINS
        self.num_classes = num_classes
        if expected is not None:
            self.expected = {d: dict(v) for d, v in expected.items()}
        else:
            self.expected = {d: dict(CLEANED_COUNTS[d]) for d in self.domains if d in CLEANED_COUNTS}
        self.known_missing = KNOWN_MISSING_CLASSES if known_missing is None else known_missing
        self._mem: dict[tuple[str, str], FileSplit] = {}
        for nm, v in (("n_train", n_train), ("n_test", n_test)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise DataError(f"domainnet suite: {nm} = {v!r}, expected None or a positive integer")
        self.n_train, self.n_test, self.subset_seed = n_train, n_test, subset_seed
        self.allow_outside_root = _allow_outside_root(allow_outside_root)
        self.max_pixels = max_image_pixels(max_pixels)

    def expected_counts(self) -> dict[str, dict[str, int]]:
        return self.expected

    def transform(self, train: bool) -> TransformSpec:
        return TransformSpec.domainnet(train)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "root_from": self.root_source,
            "allow_outside_root": self.allow_outside_root,
            "max_pixels": self.max_pixels,
        }

    def split_file(self, domain: str, split: str) -> Path:
        return self.root / f"{domain}_{split}.txt"

    def missing_root_message(self) -> str:
        return (
            f"DomainNet root {self.root} does not exist (taken from {self.root_source}). Set it with "
            f"--root PATH or ${ENV_ROOT}. Expected layout:\n{LAYOUT}"
        )

    # -- parsing ------------------------------------------------------------------------------------------
    def parse(self, domain: str, split: str, rep: CheckReport) -> FileSplit | None:
        """Parse one split file, recording malformed lines, bad labels and duplicates in ``rep``."""
        f = self.split_file(domain, split)
        if not f.is_file():
            rep.add(
                "missing-file",
                str(f),
                f"split file absent; expected one `{domain}/<class>/<file>.jpg <label>` per line",
            )
            return None
        root_real = real_root(self.root)
        if not self.allow_outside_root and not is_inside(os.path.realpath(f), root_real):
            rep.add("outside-root", str(f), outside_root_message(str(f), os.path.realpath(f), root_real))
            return None
        try:
            if f.stat().st_size > MAX_SPLIT_FILE_BYTES:
                rep.add("bad-format", str(f), f"larger than {MAX_SPLIT_FILE_BYTES} bytes: not read")
                return None
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            rep.add("bad-format", str(f), f"unreadable split file ({e})")
            return None
        paths, labels, sources = [], [], []
        seen: dict[str, int] = {}
        class_label: dict[str, tuple[int, int]] = {}
        dir_outside: dict[str, str | None] = {}  # class folder -> where it resolves when outside the root
        # lines end at "\n" only (str.splitlines would also split at \x0b, \x1c, \u2028, ... and shift lines)
        for ln, line in enumerate(text.split("\n"), start=1):
            s = line.strip(" \t\r")
            if not s:
                continue
            parts = _FIELDS.split(s)
            where = f"{f}:{ln}"
            if len(parts) != 2:
                rep.add(
                    "malformed-line",
                    where,
                    f"{line!r}: expected `relative/path.jpg label` (2 fields, got {len(parts)})",
                )
                continue
            p, lab = parts
            if not _LABEL.fullmatch(lab):
                rep.add(
                    "malformed-line",
                    where,
                    f"label {lab!r} is not a non-negative integer in ASCII digits "
                    f"(expected 0..{self.num_classes - 1})",
                )
                continue
            comps = p.split("/")
            if (
                not p.startswith(f"{domain}/")
                or len(comps) != 3
                or ".." in p
                or any(c in ("", ".") for c in comps)
                or any(ord(ch) < 32 or ch == "\x7f" for ch in p)
            ):
                rep.add(
                    "malformed-line",
                    where,
                    f"path {p!r}: expected `{domain}/<class>/<file>` relative to the root",
                )
                continue
            if len(lab) > 9:
                msg = f"label {lab[:12]}..., expected 0..{self.num_classes - 1}"
                rep.add("label-out-of-range", where, msg)
                continue
            y = int(lab)
            cdir = f"{comps[0]}/{comps[1]}"
            if not self.allow_outside_root:
                if cdir not in dir_outside:
                    rd = os.path.realpath(os.path.join(self.root, cdir))
                    dir_outside[cdir] = None if is_inside(rd, root_real) else rd
                if dir_outside[cdir] is not None:
                    full = os.path.join(self.root, p)
                    rp = os.path.join(dir_outside[cdir], comps[2])
                    rep.add("outside-root", where, outside_root_message(full, rp, root_real))
                    continue
            if not 0 <= y < self.num_classes:
                rep.add("label-out-of-range", where, f"label {y}, expected 0..{self.num_classes - 1}")
                continue
            if p in seen:
                rep.add("duplicate", where, f"{p} already listed at line {seen[p]}")
                continue
            cls = p.split("/")[1]
            if cls in class_label and class_label[cls][0] != y:
                rep.add(
                    "bad-format",
                    where,
                    f"class folder {cls!r} has label {y} but label "
                    f"{class_label[cls][0]} at line {class_label[cls][1]}",
                )
            class_label.setdefault(cls, (y, ln))
            seen[p] = ln
            paths.append(p)
            labels.append(y)
            sources.append(where)
        return FileSplit(
            self.root,
            tuple(paths),
            np.asarray(labels, np.int64),
            np.zeros(len(paths), np.int64),
            (domain,),
            self.num_classes,
            f"domainnet:{domain}:{split}",
            tuple(sources),
            self.allow_outside_root,
            self.max_pixels,
        )

    def _load_split(self, domain: str, split: str) -> FileSplit:
        if (domain, split) not in self._mem:
            if not self.root.is_dir():
                raise DataError(self.missing_root_message())
            rep = CheckReport(self.name, str(self.root))
            sp = self.parse(domain, split, rep)
            if rep.problems or sp is None:
                more = (
                    f" (+{len(rep.problems) - 5} more; run `python -m harness.data check --suite domainnet`)"
                    if len(rep.problems) > 5
                    else ""
                )
                raise DataError("; ".join(str(p) for p in rep.problems[:5]) + more)
            n = self.n_train if split == "train" else self.n_test
            if n is not None and len(sp) > n:
                key = [self.subset_seed, self.domains.index(domain), SPLITS.index(split)]
                rng = np.random.default_rng(key)
                sp = sp.subset(np.sort(rng.permutation(len(sp))[:n]))
            self._mem[(domain, split)] = sp
        return self._mem[(domain, split)]

    def check(self, full: bool = False, images: str | None = None, workers: int = 4) -> CheckReport:
        """Split files, labels, classes, counts vs expected (the files, not ``n_train``), every listed image.

        ``images``: ``"none"``, ``"exists"``, ``"header"`` or ``"full"`` (see
        :func:`~harness.data.images.check_image`); default ``"header"`` (every image opened, its header read
        and its size checked against the pixel limit, JPEG end marker checked; nothing larger than the limit
        is decoded), ``"full"`` when ``full=True``. Every level but ``"none"`` also checks that each image
        resolves inside the data root (unless ``allow_outside_root``).
        """
        mode = images or ("full" if full else "header")
        if mode not in IMAGE_CHECKS:
            raise DataError(f"images={mode!r}: expected one of {IMAGE_CHECKS}")
        rep = CheckReport(self.name, str(self.root))
        if not self.root.is_dir():
            rep.add("missing-root", str(self.root), self.missing_root_message())
            return rep
        root_real = real_root(self.root)

        def one(p: str) -> tuple[str, str] | None:
            if not self.allow_outside_root:
                rp = os.path.realpath(p)
                if not is_inside(rp, root_real):
                    return "outside-root", outside_root_message(p, rp, root_real)
                p = rp
            res = check_image(p, mode, self.max_pixels)
            if res is None:
                return None
            if res == "missing":
                return "missing-file", "image is absent"
            kind, _, msg = res.partition(": ")
            return ("image-too-large" if kind == "too-large" else "corrupt-image"), msg

        for d in self.domains:
            for s in SPLITS:
                sp = self.parse(d, s, rep)
                exp = self.expected.get(d, {}).get(s)
                if sp is None:
                    rep.rows.append(CountRow(d, s, None, exp))
                    continue
                present = set(np.unique(sp.labels).tolist())
                known = set(self.known_missing.get((d, s), ()))
                for c in sorted(set(range(self.num_classes)) - present):
                    if c in known:
                        rep.notes.append(
                            f"{d}/{s}: class {c} has no image (known gap of the cleaned release)"
                        )
                    else:
                        rep.add(
                            "missing-class", str(self.split_file(d, s)), f"class {c} has no image in {d}/{s}"
                        )
                rep.rows.append(CountRow(d, s, len(sp), exp, len(present), self.num_classes))
                if mode != "none" and len(sp):
                    full_paths = [os.path.join(self.root, p) for p in sp.paths]
                    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
                        results = list(ex.map(one, full_paths, chunksize=64))
                    for i, res in enumerate(results):
                        if res is None:
                            continue
                        kind, msg = res
                        if kind == "outside-root":
                            rep.add(kind, sp.sources[i], msg)
                        elif kind == "missing-file":
                            rep.add(kind, full_paths[i], f"image listed at {sp.sources[i]} is absent")
                        else:
                            rep.add(kind, full_paths[i], f"{msg} (listed at {sp.sources[i]})")
        return rep
