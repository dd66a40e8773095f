"""Framework-neutral iteration helpers shared by both training loops (``impl_torch/train.py``,
``impl_keras/train.py``); they work with any loader that has ``set_epoch`` and yields batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def rewind(loader: Any) -> Any:
    """``loader`` reset to its epoch 0 (the same shuffled order at every evaluation)."""
    loader.set_epoch(0)
    return loader


class Cursor:
    """An endless iterator over ``loader`` that knows where it is, so a resumed job sees the same batches.

    Its :meth:`state` is ``[pass_epoch, index]``: the loader epoch of the pass in progress and the number of
    batches already taken from it. :meth:`restore` puts the loader back there (``loader.set_epoch(epoch,
    start=index)``, which skips those batches without loading them). A checkpoint taken mid-pass therefore
    resumes mid-pass: training ``steps_per_epoch`` batches at a time, when that is not the loader's length,
    gives the same batch sequence with or without an interruption. (A batch whose every image is unreadable
    is dropped by the loader and not counted, so it shifts a resumed sequence by one batch.)
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.pass_epoch = int(loader.epoch)
        self.index = 0
        self._it: Iterator[Any] | None = None

    def state(self) -> list[int]:
        return [self.pass_epoch, self.index]

    def restore(self, state: Any) -> None:
        """Continue from a :meth:`state` (or, for old checkpoints, a bare loader epoch)."""
        if isinstance(state, int):
            state = [state, 0]
        self.pass_epoch, self.index = int(state[0]), int(state[1])
        self._it = None

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> Any:
        for _ in range(2):
            if self._it is None:
                self.loader.set_epoch(self.pass_epoch, start=self.index)
                self._it = iter(self.loader)
            try:
                batch = next(self._it)
            except StopIteration:
                if self.index == 0:
                    raise RuntimeError(
                        "a data loader produced no batch (split smaller than the batch size?)"
                    ) from None
                self._it, self.pass_epoch, self.index = None, self.pass_epoch + 1, 0
                continue
            self.index += 1
            return batch
        raise RuntimeError("a data loader produced no batch (split smaller than the batch size?)")
