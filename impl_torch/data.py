"""PyTorch adapter of :mod:`harness.data`: a ``DataLoader`` yielding ``(x, y, d)``.

``x`` float32 NCHW, ``y`` int64 labels, ``d`` int64 domain ids. Batch composition (pooled or balanced sampler)
and every image operation come from :mod:`harness.data` (``make_plan`` + ``load_batch``), so the Keras adapter
sees the same samples and the same pixels for the same ``(seed, epoch)``.

Each ``iter(loader)`` is one epoch; the epoch counter advances after every pass (``loader.set_epoch(e)`` to
resume). Unreadable images (corrupt, empty, missing, over the pixel limit) are skipped (``on_corrupt="skip"``,
default) or raise :class:`harness.errors.DataError` (``on_corrupt="fail"``). ``loader.skipped`` (int) counts
the images skipped in every batch this loader delivered in this process (all epochs; batches a resume
``set_epoch(e, start=k)`` passes over are not loaded, hence not counted); ``loader.skipped_files()`` gives
the first :data:`SKIPPED_KEPT` messages (path and reason). A path outside the data root always raises.

Workers (``num_workers=N``): ``N`` persistent worker processes decode and augment whole batches; the batch
plan (which samples, in which order) is drawn in this process by the batch sampler, and every random
augmentation draw by the counter-based generator of ``(seed, epoch, split index)``
(:func:`harness.data.pipeline.sample_rng`), never by a worker's own generator, and the ``DataLoader``
delivers batches in plan order: the stream is bit-identical for every ``N`` (0 = load in this process).
Skipped images are counted here when a batch is *delivered* (whichever worker loaded it; batches prefetched
and never delivered are not counted). ``pin_memory=True`` (the CUDA trainer passes it) pins batches for
asynchronous copies; ``prefetch_factor`` (default 2) batches per worker are loaded ahead. With workers a
loader serves one pass at a time: a new ``iter()`` restarts the shared workers on the new pass, and the
previous iterator raises if used again. :meth:`SplitLoader.close` stops the workers (the training loop calls
it when a job ends; otherwise they stop when the loader is garbage-collected).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from harness.data.pipeline import ON_CORRUPT, Batch, load_batch
from harness.data.samplers import SAMPLERS, make_plan
from harness.data.splits import ArraySplit, FileSplit
from harness.data.transforms import TransformSpec

#: how many skipped-image messages a loader keeps for :meth:`SplitLoader.skipped_files`
SKIPPED_KEPT = 20


class _PlanSampler(Sampler):
    """Batch sampler: yields lists of ``(index, epoch)`` keys from the neutral plan; advances the epoch."""

    def __init__(
        self,
        domains: np.ndarray,
        batch_size: int,
        sampler: str,
        train: bool,
        seed: int,
        drop_last: bool | None,
        num_batches: int | None,
    ) -> None:
        self.domains, self.batch_size, self.sampler = domains, batch_size, sampler
        self.train, self.seed, self.drop_last, self.num_batches = train, seed, drop_last, num_batches
        self.epoch = 0
        self.start = 0  # batches of the next pass to skip (resuming mid-pass); reset after use

    def plan(self, epoch: int) -> list[np.ndarray]:
        return make_plan(
            self.domains,
            self.batch_size,
            sampler=self.sampler,
            train=self.train,
            seed=self.seed,
            epoch=epoch,
            drop_last=self.drop_last,
            num_batches=self.num_batches,
        )

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.epoch, self.start
        self.epoch += 1
        self.start = 0
        for b in self.plan(epoch)[start:]:
            yield [(int(i), epoch) for i in b]

    def __len__(self) -> int:
        return len(self.plan(self.epoch))


class SplitDataset(Dataset):
    """Map-style dataset over a neutral split; ``__getitems__`` loads a whole batch via ``load_batch``."""

    def __init__(
        self, split: ArraySplit | FileSplit, transform: TransformSpec, seed: int, on_corrupt: str
    ) -> None:
        self.split, self.transform, self.seed, self.on_corrupt = split, transform, seed, on_corrupt

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, keys: list[tuple[int, int]]) -> Batch:
        epoch = keys[0][1] if keys else 0
        return load_batch(
            self.split,
            np.array([k[0] for k in keys], np.int64),
            self.transform,
            seed=self.seed,
            epoch=epoch,
            layout="CHW",
            on_corrupt=self.on_corrupt,
        )

    def __getitem__(self, key: tuple[int, int] | int) -> Batch:
        if isinstance(key, tuple):
            return self.__getitems__([key])
        return self.__getitems__([(int(key), 0)])


def _collate(b: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    return torch.from_numpy(b.x), torch.from_numpy(b.y), torch.from_numpy(b.d), b.skipped


class SplitLoader(DataLoader):
    """A ``DataLoader`` over a neutral split yielding ``(x, y, d)``; ``skipped`` counts unreadable images."""

    def __init__(
        self,
        split: ArraySplit | FileSplit,
        transform: TransformSpec,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        sampler: str = "pooled",
        num_workers: int = 0,
        drop_last: bool | None = None,
        num_batches: int | None = None,
        on_corrupt: str = "skip",
        pin_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler {sampler!r}: expected one of {SAMPLERS}")
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"on_corrupt {on_corrupt!r}: expected one of {ON_CORRUPT}")
        plan = _PlanSampler(split.domains, batch_size, sampler, train, seed, drop_last, num_batches)
        kwargs.setdefault("persistent_workers", num_workers > 0)
        # every iter() of a DataLoader draws a base seed from its generator; with its own generator the global
        # torch RNG (dropout masks) is untouched, so a job resumed from a checkpoint draws the same masks
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
        super().__init__(
            SplitDataset(split, transform, seed, on_corrupt),
            batch_sampler=plan,
            num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=pin_memory,
            **kwargs,
        )
        self.plan_sampler = plan
        self.skipped: int = 0  # images skipped as unreadable, cumulative over every pass of this process
        self._skipped_files: list[str] = []
        self._pass = 0  # passes started: with persistent workers only the latest may be iterated

    def close(self) -> None:
        """Stop the persistent worker processes (a later ``iter()`` starts new ones)."""
        it, self._iterator = self._iterator, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()

    def skipped_files(self) -> list[str]:
        """The first :data:`SKIPPED_KEPT` skipped images: ``"<path>: <reason>; listed at <file:line>"``."""
        return list(self._skipped_files)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch the next ``iter()`` will produce, from its batch ``start`` on (for resuming)."""
        self.plan_sampler.epoch = epoch
        self.plan_sampler.start = int(start)

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` will produce."""
        return self.plan_sampler.epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        self._pass += 1
        mine = self._pass
        shared = self.persistent_workers and self.num_workers > 0
        batches = super().__iter__()
        while True:
            if shared and self._pass != mine:  # checked before taking a batch of the newer pass
                raise RuntimeError(
                    "this loader's workers were restarted on a new pass (a later iter()); an iterator of an "
                    "earlier pass cannot go on (num_workers > 0 serves one pass at a time)"
                )
            try:
                x, y, d, skipped = next(batches)
            except StopIteration:
                return
            if skipped:  # counted when the batch arrives here, whichever worker loaded it
                self.skipped += len(skipped)
                self._skipped_files.extend(skipped[: max(0, SKIPPED_KEPT - len(self._skipped_files))])
            if len(y) == 0:
                continue
            yield x, y, d


def make_loader(
    split: ArraySplit | FileSplit,
    transform: TransformSpec,
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    sampler: str = "pooled",
    num_workers: int = 0,
    drop_last: bool | None = None,
    num_batches: int | None = None,
    on_corrupt: str = "skip",
    **kwargs: Any,
) -> SplitLoader:
    """A torch loader over ``split``: batches ``(x float32 NCHW, y int64, d int64)``.

    ``train=True`` shuffles per ``(seed, epoch)`` and drops the last partial batch (``drop_last`` overrides);
    ``train=False`` goes in order and keeps it. ``sampler="balanced"`` draws the same number per domain id in
    every batch (``num_batches`` per epoch, default ``len(split) // batch_size``). Extra keyword arguments
    go to ``torch.utils.data.DataLoader`` (e.g. ``pin_memory``, ``prefetch_factor``). ``num_workers``: worker
    processes (the batches are the same for every count; see the module docstring).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers {num_workers!r}: expected an integer >= 0")
    return SplitLoader(
        split,
        transform,
        batch_size,
        train=train,
        seed=seed,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        num_batches=num_batches,
        on_corrupt=on_corrupt,
        **kwargs,
    )
