"""The one batch-loading function both adapters call: indices → transformed float32 batch.

Corrupt-image policy (``on_corrupt``): ``"skip"`` (default) drops an unreadable image (corrupt, truncated,
empty, missing, or over the pixel limit: see :mod:`harness.data.images`) from its batch and reports it in
:attr:`Batch.skipped` (the adapters count these in ``loader.skipped``, an int, and keep the first messages in
``loader.skipped_files()``, so the runner can record them); ``"fail"`` raises
:class:`~harness.errors.DataError` naming the file. An image path that resolves outside the data root
(:class:`~harness.data.images.OutsideRootError`) is never skipped: it always raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from harness.data.images import UnsafeDataError
from harness.data.splits import ArraySplit, FileSplit
from harness.data.transforms import Layout, TransformSpec, _normalise_inplace, geometric, normalise_batch
from harness.errors import DataError

OnCorrupt = Literal["skip", "fail"]
ON_CORRUPT: tuple[str, ...] = ("skip", "fail")


@dataclass
class Batch:
    """One batch: ``x`` float32 (NHWC or NCHW), ``y`` and ``d`` int64, ``index`` int64 (split positions)."""

    x: np.ndarray
    y: np.ndarray
    d: np.ndarray
    index: np.ndarray
    skipped: list[str] = field(default_factory=list)  # one message per skipped image (path first)


_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class SampleRNG:
    """A tiny, fast counter-based generator (splitmix64) for per-sample augmentation draws.

    Implements the two ``numpy.random.Generator`` methods the transforms use, ``integers(low, high)`` and
    ``random()``; its stream is a pure function of ``(seed, epoch, index)``, identical in every framework and
    worker, and costs about a microsecond per draw (seeding a numpy ``default_rng`` costs tens of
    microseconds).
    """

    __slots__ = ("_state",)

    def __init__(self, seed: int, epoch: int, index: int) -> None:
        s = _splitmix64(int(seed) & _MASK)
        s = _splitmix64(s ^ (int(epoch) & _MASK))
        self._state = _splitmix64(s ^ (int(index) & _MASK))

    def _next(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        return _splitmix64(self._state)

    def integers(self, low: int, high: int) -> int:
        """Uniform integer in ``[low, high)`` (modulo bias < 2**-40 for image-sized ranges)."""
        if high <= low:
            raise ValueError(f"integers: high ({high}) must be > low ({low})")
        return low + self._next() % (high - low)

    def random(self) -> float:
        """Uniform float in ``[0, 1)`` with 53 random bits."""
        return (self._next() >> 11) * (1.0 / (1 << 53))


def sample_rng(seed: int, epoch: int, index: int) -> SampleRNG:
    """The generator for the random transform of sample ``index`` in ``epoch`` (same in every framework)."""
    return SampleRNG(seed, epoch, index)


def load_batch(
    split: ArraySplit | FileSplit,
    index: np.ndarray,
    transform: TransformSpec,
    *,
    seed: int = 0,
    epoch: int = 0,
    layout: Layout = "HWC",
    on_corrupt: OnCorrupt = "skip",
) -> Batch:
    """Load and transform the samples at ``index``. ``layout`` "HWC" → x (N,H,W,C); "CHW" → x (N,C,H,W)."""
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt {on_corrupt!r}: expected one of {ON_CORRUPT}")
    index = np.asarray(index, dtype=np.int64)
    if isinstance(split, ArraySplit) and transform.deterministic:
        imgs = split.images[index]
        out_hw = transform.output_size(imgs.shape[1:3])
        if out_hw == imgs.shape[1:3] and (
            imgs.shape[-1] == transform.channels or (imgs.shape[-1] == 1 and transform.channels == 3)
        ):
            x = normalise_batch(imgs, transform, layout)
            return Batch(x, split.labels[index], split.domains[index], index)
    out_hw = transform.output_size()
    c = transform.channels
    out = None
    if out_hw is not None:  # write straight into the batch (no per-image float arrays, no stack)
        out = np.empty((len(index), c, *out_hw) if layout == "CHW" else (len(index), *out_hw, c), np.float32)
    xs, keep, skipped = [], [], []
    for i in index:
        try:
            img = split.load(int(i))
        except UnsafeDataError:
            raise
        except DataError as e:
            if on_corrupt == "fail":
                raise
            skipped.append(str(e))
            continue
        rng = None if transform.deterministic else sample_rng(seed, epoch, int(i))
        try:
            u8 = geometric(img, transform, rng)
        except ValueError as e:
            raise DataError(f"{split.describe(int(i))}: cannot transform ({e})") from None
        if u8.shape[-1] != c:
            u8 = np.repeat(u8, c, axis=-1)
        if out is not None:
            if u8.shape[:2] != tuple(out_hw):
                raise DataError(f"{split.describe(int(i))}: transformed to {u8.shape[:2]}, expected {out_hw}")
            out[len(keep)] = u8.transpose(2, 0, 1) if layout == "CHW" else u8
        else:
            xs.append(u8.transpose(2, 0, 1) if layout == "CHW" else u8)
        keep.append(int(i))
    keep_idx = np.asarray(keep, dtype=np.int64)
    if out is not None:
        x = out[: len(keep)]
    elif xs:
        shapes = {a.shape for a in xs}
        if len(shapes) != 1:
            raise DataError(
                f"{split.name}: images of different sizes {sorted(shapes)} in one batch: give the "
                f"transform a crop or an exact (h, w) resize"
            )
        x = np.stack(xs).astype(np.float32)
    else:
        x = np.zeros((0, c, 0, 0) if layout == "CHW" else (0, 0, 0, c), np.float32)
    x = _normalise_inplace(x, transform, layout)
    labels, domains = split.labels[keep_idx], split.domains[keep_idx]
    return Batch(x, labels, domains, keep_idx, skipped)
