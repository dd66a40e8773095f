"""Keras 3 adapter of :mod:`harness.data`: a ``keras.utils.PyDataset`` yielding ``(x, y, d)``.

``x`` float32 NHWC, ``y`` int64 labels, ``d`` int64 domain ids, as numpy arrays (accepted by every Keras
backend: TensorFlow, JAX, torch). Batch composition and every image operation come from :mod:`harness.data`
(``make_plan`` + ``load_batch``), so the torch adapter sees the same samples and pixels for the same
``(seed, epoch)``; the eval transform gives identical arrays up to the NCHW/NHWC transpose.

Iterating (``for x, y, d in loader``) is one epoch and then advances the epoch; ``model.fit`` calls
``on_epoch_end``, which does the same. Unreadable images (corrupt, empty, missing, over the pixel limit) are
skipped (``on_corrupt="skip"``, default) or raise :class:`harness.errors.DataError` (``on_corrupt="fail"``).
``loader.skipped`` (int) counts the images skipped in the batches this loader delivered in this process (all
epochs; a batch fetched twice in one pass, as ``model.fit`` does to peek at the first one, counts once;
batches a resume ``set_epoch(e, start=k)`` passes over are not loaded, and batches prefetched but never
delivered are not counted); ``loader.skipped_files()`` gives the first :data:`SKIPPED_KEPT` messages (path and
reason). With ``use_multiprocessing=True`` under ``model.fit`` batches load in other processes and are not
counted here; iterating the loader (``for x, y, d in loader``) always counts. A path outside the data root
always raises.

Workers (``num_workers=N``, the training loop's ``loader_workers``): iterating the loader loads up to ``2·N``
batches ahead on a pool of ``N`` threads and delivers them in plan order. Threads, not processes: they work
the same on every Keras backend (TensorFlow, JAX, torch: a ``fork`` of a process running JAX or TensorFlow
can deadlock), and the work — JPEG decoding, PIL resizing, numpy normalisation — runs in C code that releases
the GIL. Each batch is a pure function of ``(split, plan indices, transform, seed, epoch)`` (every random
draw comes from :func:`harness.data.pipeline.sample_rng` of ``(seed, epoch, split index)``, never from a
thread's state) and a pass works on a snapshot of its epoch and plan, so the stream is bit-identical for
every ``N`` (0 = load in the iterating thread) and passes may overlap. ``close()`` stops the threads. The
``workers``/``use_multiprocessing`` arguments are ``keras.utils.PyDataset``'s, used by ``model.fit`` only.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from harness.frameworks import require

require("keras")

import keras  # noqa: E402

from harness.data.pipeline import ON_CORRUPT, Batch, load_batch  # noqa: E402
from harness.data.samplers import SAMPLERS, make_plan  # noqa: E402
from harness.data.splits import ArraySplit, FileSplit  # noqa: E402
from harness.data.transforms import TransformSpec  # noqa: E402

#: how many skipped-image messages a loader keeps for :meth:`SplitSequence.skipped_files`
SKIPPED_KEPT = 20
#: batches loaded ahead per worker thread while iterating
PREFETCH_PER_WORKER = 2


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
        num_workers: int = 0,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ) -> None:
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers {num_workers!r}: expected an integer >= 0")
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
        self.num_workers = num_workers
        self._pool: ThreadPoolExecutor | None = None  # made on the first pass that needs it

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_pool"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the worker threads (batches not started are dropped; a later pass starts new threads)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="drt-loader")
            return self._pool

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

    def _load(self, index: np.ndarray, epoch: int) -> Batch:
        """The batch of split positions ``index`` in ``epoch`` (pure: safe on any thread)."""
        return load_batch(
            self.split,
            index,
            self.transform,
            seed=self.seed,
            epoch=epoch,
            layout="HWC",
            on_corrupt=self.on_corrupt,
        )

    def _count(self, i: int, b: Batch) -> None:
        """Count the skipped images of batch ``i`` of the current pass (once per pass)."""
        if b.skipped:
            with self._lock:
                if i not in self._counted:
                    self._counted.add(i)
                    self.skipped += len(b.skipped)
                    self._skipped_files.extend(b.skipped[: max(0, SKIPPED_KEPT - len(self._skipped_files))])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if i < 0 or i >= len(self._plan):
            raise IndexError(f"batch {i} out of range (epoch has {len(self._plan)} batches)")
        b = self._load(self._plan[i], self._epoch)
        self._count(i, b)
        return b.x, b.y, b.d

    def on_epoch_end(self) -> None:
        """Advance to the next epoch (new shuffle / augmentation draws)."""
        self.set_epoch(self._epoch + 1)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        start, self._start = self._start, 0
        with self._lock:
            self._counted = set()  # a new pass over this epoch counts its skips again
        for i, b in self._batches(start, self._epoch, self._plan):
            self._count(i, b)
            if len(b.y):
                yield b.x, b.y, b.d
        self.on_epoch_end()

    def _batches(self, start: int, epoch: int, plan: list[np.ndarray]) -> Iterator[tuple[int, Batch]]:
        """``(i, batch i)`` for ``i`` from ``start`` in order: loaded here (``num_workers`` 0) or up to
        ``PREFETCH_PER_WORKER · num_workers`` batches ahead on the worker threads. A worker's error is raised
        at its batch, as without workers."""
        if self.num_workers == 0:
            for i in range(start, len(plan)):
                yield i, self._load(plan[i], epoch)
            return
        pool, depth = self._executor(), PREFETCH_PER_WORKER * self.num_workers
        ahead: collections.deque[tuple[int, Future[Batch]]] = collections.deque()
        nxt = start
        try:
            while ahead or nxt < len(plan):
                while nxt < len(plan) and len(ahead) < depth:
                    ahead.append((nxt, pool.submit(self._load, plan[nxt], epoch)))
                    nxt += 1
                i, fut = ahead.popleft()
                yield i, fut.result()
        finally:  # an abandoned pass (a break, a resume) drops the batches not started
            for _, fut in ahead:
                fut.cancel()


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
    num_workers: int = 0,
    **kwargs: Any,
) -> SplitSequence:
    """A Keras loader over ``split``: batches ``(x float32 NHWC, y int64, d int64)`` as numpy arrays.

    Same arguments and semantics as :func:`impl_torch.data.make_loader` (``num_workers``: loading threads,
    the same batches for every count; see the module docstring); extra keyword arguments go to
    ``keras.utils.PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``: ``model.fit`` only).
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
        num_workers=num_workers,
        **kwargs,
    )
