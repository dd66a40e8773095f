"""Splits: in-memory arrays (:class:`ArraySplit`) or image files on disk (:class:`FileSplit`).

Both carry ``labels`` (int64, 0..num_classes-1) and ``domains`` (int64 domain id per sample, an index into
``domain_names``). A split is read-only; ``subset``/``concat`` build new ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.images import (
    OutsideRootError,
    allow_outside_root,
    is_inside,
    max_image_pixels,
    open_rgb,
    outside_root_message,
    real_root,
)
from harness.errors import DataError


def _as_i64(a: np.ndarray | list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class ArraySplit:
    """Images in memory: ``images`` uint8 ``(N, H, W, C)``, ``labels``/``domains`` int64 ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray
    domains: np.ndarray
    domain_names: tuple[str, ...]
    num_classes: int
    name: str = ""
    bases: np.ndarray | None = field(default=None, repr=False)

    kind = "array"

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _as_i64(self.labels))
        object.__setattr__(self, "domains", _as_i64(self.domains))
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(
                f"split {self.name!r}: images must be uint8 (N, H, W, C), got "
                f"{self.images.dtype} {self.images.shape}"
            )
        n = len(self.images)
        if len(self.labels) != n or len(self.domains) != n:
            raise DataError(
                f"split {self.name!r}: {n} images but {len(self.labels)} labels and "
                f"{len(self.domains)} domain ids"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> np.ndarray:
        """The uint8 HWC image ``index``."""
        return self.images[index]

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from (for error messages)."""
        return f"{self.name}[{index}]"

    def subset(self, index: np.ndarray, name: str | None = None) -> ArraySplit:
        """A new split with the samples at ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        return ArraySplit(
            self.images[index],
            self.labels[index],
            self.domains[index],
            self.domain_names,
            self.num_classes,
            name or self.name,
            None if self.bases is None else self.bases[index],
        )

    def with_domains(self, domain_id: int | np.ndarray, domain_names: tuple[str, ...]) -> ArraySplit:
        """The same samples relabelled with new domain ids (scalar or per-sample)."""
        d = np.broadcast_to(np.asarray(domain_id, dtype=np.int64), self.labels.shape)
        return ArraySplit(
            self.images, self.labels, d.copy(), domain_names, self.num_classes, self.name, self.bases
        )


@dataclass(frozen=True, eq=False)
class FileSplit:
    """Images on disk: ``paths`` relative to ``root`` (str), ``labels``/``domains`` int64 ``(N,)``.

    ``sources[i]`` optionally says where sample ``i`` was listed (``"file:line"``) for error messages.
    :meth:`load` refuses a path that resolves outside ``root`` (``OutsideRootError``, never skipped) unless
    ``allow_outside_root``, and an image whose header exceeds ``max_pixels`` (before decoding); both default
    (None) to the environment (``DRT_ALLOW_OUTSIDE_ROOT``, ``DRT_MAX_IMAGE_PIXELS``, see
    :mod:`harness.data.images`), resolved once when the split is built.
    """

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    domains: np.ndarray
    domain_names: tuple[str, ...]
    num_classes: int
    name: str = ""
    sources: tuple[str, ...] | None = field(default=None, repr=False)
    allow_outside_root: bool | None = field(default=None, repr=False)
    max_pixels: int | None = field(default=None, repr=False)

    kind = "file"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "allow_outside_root", allow_outside_root(self.allow_outside_root))
        object.__setattr__(self, "max_pixels", max_image_pixels(self.max_pixels))
        object.__setattr__(self, "_real_root", real_root(self.root))
        object.__setattr__(self, "paths", tuple(self.paths))
        object.__setattr__(self, "labels", _as_i64(self.labels))
        object.__setattr__(self, "domains", _as_i64(self.domains))
        if not (len(self.paths) == len(self.labels) == len(self.domains)):
            raise DataError(
                f"split {self.name!r}: {len(self.paths)} paths, {len(self.labels)} labels, "
                f"{len(self.domains)} domain ids"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> Path:
        """Absolute path of sample ``index``."""
        return self.root / self.paths[index]

    def load(self, index: int) -> Image.Image:
        """Decode sample ``index`` as an RGB PIL image; :class:`DataError` (naming the file) if unreadable."""
        p = os.path.join(self.root, self.paths[index])
        rp = p
        if not self.allow_outside_root:
            rp = os.path.realpath(p)  # open what was checked
            if not is_inside(rp, self._real_root):
                raise OutsideRootError(
                    f"{outside_root_message(p, rp, self._real_root)}; {self.describe(index)}"
                )
        try:
            return open_rgb(rp, self.max_pixels)
        except FileNotFoundError:
            raise DataError(f"{p}: file missing ({self.describe(index)})") from None
        except DataError as e:  # too many pixels (not decoded), not a regular file
            raise DataError(f"{p}: {e}; {self.describe(index)}") from None
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
            raise DataError(f"{p}: unreadable or corrupt image ({e}); {self.describe(index)}") from None

    def describe(self, index: int) -> str:
        """Where sample ``index`` was listed (split file and line when known)."""
        if self.sources is not None:
            return f"listed at {self.sources[index]}"
        return f"{self.name}[{index}]"

    def subset(self, index: np.ndarray, name: str | None = None) -> FileSplit:
        """A new split with the samples at ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        return FileSplit(
            self.root,
            tuple(self.paths[i] for i in index),
            self.labels[index],
            self.domains[index],
            self.domain_names,
            self.num_classes,
            name or self.name,
            None if self.sources is None else tuple(self.sources[i] for i in index),
            self.allow_outside_root,
            self.max_pixels,
        )

    def with_domains(self, domain_id: int | np.ndarray, domain_names: tuple[str, ...]) -> FileSplit:
        """The same samples relabelled with new domain ids (scalar or per-sample)."""
        d = np.broadcast_to(np.asarray(domain_id, dtype=np.int64), self.labels.shape)
        return FileSplit(
            self.root,
            self.paths,
            self.labels,
            d.copy(),
            domain_names,
            self.num_classes,
            self.name,
            self.sources,
            self.allow_outside_root,
            self.max_pixels,
        )


Split = ArraySplit | FileSplit


def concat(splits: list[Split], name: str = "") -> Split:
    """Concatenate splits of one kind (same ``domain_names`` and ``num_classes``) keeping each domain id."""
    if not splits:
        raise ValueError("concat needs at least one split")
    first = splits[0]
    if any(type(s) is not type(first) or s.domain_names != first.domain_names for s in splits):
        raise ValueError("concat: splits must have the same kind and domain_names")
    if isinstance(first, ArraySplit):
        shapes = {s.images.shape[1:] for s in splits}
        if len(shapes) != 1:
            raise DataError(f"cannot pool splits with different image shapes {sorted(shapes)}")
        bases = None if any(s.bases is None for s in splits) else np.concatenate([s.bases for s in splits])
        return ArraySplit(
            np.concatenate([s.images for s in splits]),
            np.concatenate([s.labels for s in splits]),
            np.concatenate([s.domains for s in splits]),
            first.domain_names,
            max(s.num_classes for s in splits),
            name,
            bases,
        )
    roots = {str(s.root) for s in splits}
    if len(roots) != 1:
        raise ValueError("concat: file splits must share a root")
    sources = None if any(s.sources is None for s in splits) else tuple(x for s in splits for x in s.sources)
    return FileSplit(
        first.root,
        tuple(p for s in splits for p in s.paths),
        np.concatenate([s.labels for s in splits]),
        np.concatenate([s.domains for s in splits]),
        first.domain_names,
        max(s.num_classes for s in splits),
        name,
        sources,
        all(s.allow_outside_root for s in splits),
        min(s.max_pixels for s in splits),
    )
