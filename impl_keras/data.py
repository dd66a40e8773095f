"""Keras 3 adapter of :mod:`harness.data`: a ``keras.utils.PyDataset`` yielding ``(x, y, d)``.

``x`` float32 NHWC, ``y`` int64 labels, ``d`` int64 domain ids, as numpy arrays (accepted by every Keras
backend: TensorFlow, JAX, torch). Batch composition and every image operation come from :mod:`harness.data`
(``make_plan`` + ``load_batch``), so the torch adapter sees the same samples and pixels for the same
``(seed, epoch)``; the eval transform gives identical arrays up to the NCHW/NHWC transpose.

Iterating (``for x, y, d in loader``) is one epoch and then advances the epoch; ``model.fit`` calls
``on_epoch_end``, which does the same. Unreadable images (corrupt, empty, missing, over the pixel limit) are
skipped (``on_corrupt="skip"``, default) or raise :class:`harness.errors.DataError` (``on_corrupt="fail"``).
``loader.skipped`` (int) counts the images skipped in the batches this loader loaded in this process (all
epochs; a batch fetched twice in one pass, as ``model.fit`` does to peek at the first one, counts once;
batches a resume ``set_epoch(e, start=k)`` passes over are not loaded, hence not counted);
``loader.skipped_files()`` gives the first :data:`SKIPPED_KEPT` messages (path and reason). With
``use_multiprocessing=True`` under ``model.fit`` batches load in other processes and are not counted here;
iterating the loader (``for x, y, d in loader``) always counts. A path outside the data root always raises.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.frameworks import require

require("keras")

import keras  # noqa: E402

from harness.data.pipeline import ON_CORRUPT, load_batch  # noqa: E402
from harness.data.samplers import SAMPLERS, make_plan  # noqa: E402
from harness.data.splits import ArraySplit, FileSplit  # noqa: E402
from harness.data.transforms import TransformSpec  # noqa: E402

#: how many skipped-image messages a loader keeps for :meth:`SplitSequence.skipped_files`
SKIPPED_KEPT = 20


class SplitSequence(keras.utils.PyDataset):
    """One epoch of batches over a neutral split; ``__getitem__(i)`` is batch ``i`` of the current epoch."""

    def __init__(
        self,
        split: ArraySplit | FileSplit,
        transform: TransformSpec,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        sampler: str = "pooled",
        drop_last: bool | None = None,
        num_batches: int | None = None,
        on_corrupt: str = "skip",
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ) -> None:
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler {sampler!r}: expected one of {SAMPLERS}")
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"on_corrupt {on_corrupt!r}: expected one of {ON_CORRUPT}")
        self.split, self.transform, self.batch_size = split, transform, batch_size
        self.train, self.seed, self.sampler, self.drop_last = train, seed, sampler, drop_last
        self.num_batches_override, self.on_corrupt = num_batches, on_corrupt
        self.skipped: int = 0  # images skipped as unreadable, cumulative over every pass of this process
        self._skipped_files: list[str] = []
        self._counted: set[int] = set()  # batches of the current pass whose skips are counted
        self._lock = threading.Lock()  # PyDataset workers call __getitem__ from threads
        self._epoch = 0
        self._start = 0  # batches of the current pass that iteration skips (resuming mid-pass)
        self._plan = self._make_plan()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def skipped_files(self) -> list[str]:
        """The first :data:`SKIPPED_KEPT` skipped images: ``"<path>: <reason>; listed at <file:line>"``."""
        return list(self._skipped_files)

    def _make_plan(self) -> list[np.ndarray]:
        return make_plan(
            self.split.domains,
            self.batch_size,
            sampler=self.sampler,
            train=self.train,
            seed=self.seed,
            epoch=self._epoch,
            drop_last=self.drop_last,
            num_batches=self.num_batches_override,
        )

    @property
    def epoch(self) -> int:
        """The epoch currently being served."""
        return self._epoch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Serve ``epoch`` next; the next ``iter()`` starts at its batch ``start`` (for resuming)."""
        self._epoch = epoch
        self._start = int(start)
        self._plan = self._make_plan()
        with self._lock:
            self._counted = set()

    def __len__(self) -> int:
        return len(self._plan)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if i < 0 or i >= len(self._plan):
            raise IndexError(f"batch {i} out of range (epoch has {len(self._plan)} batches)")
        b = load_batch(
            self.split,
            self._plan[i],
            self.transform,
            seed=self.seed,
            epoch=self._epoch,
            layout="HWC",
            on_corrupt=self.on_corrupt,
        )
        if b.skipped:
            with self._lock:
                if i not in self._counted:
                    self._counted.add(i)
                    self.skipped += len(b.skipped)
                    self._skipped_files.extend(b.skipped[: max(0, SKIPPED_KEPT - len(self._skipped_files))])
        return b.x, b.y, b.d

    def on_epoch_end(self) -> None:
        """Advance to the next epoch (new shuffle / augmentation draws)."""
        self.set_epoch(self._epoch + 1)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        start, self._start = self._start, 0
        with self._lock:
            self._counted = set()  # a new pass over this epoch counts its skips again
        for i in range(start, len(self._plan)):
            x, y, d = self[i]
            if len(y):
                yield x, y, d
        self.on_epoch_end()


def make_loader(
    split: ArraySplit | FileSplit,
    transform: TransformSpec,
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    sampler: str = "pooled",
    drop_last: bool | None = None,
    num_batches: int | None = None,
    on_corrupt: str = "skip",
    **kwargs: Any,
) -> SplitSequence:
    """A Keras loader over ``split``: batches ``(x float32 NHWC, y int64, d int64)`` as numpy arrays.

    Same arguments and semantics as :func:`impl_torch.data.make_loader`; extra keyword arguments go to
    ``keras.utils.PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).
    """
    return SplitSequence(
        split,
        transform,
        batch_size,
        train=train,
        seed=seed,
        sampler=sampler,
        drop_last=drop_last,
        num_batches=num_batches,
        on_corrupt=on_corrupt,
        **kwargs,
    )
