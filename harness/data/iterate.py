"""Framework-neutral iteration helpers shared by both training loops (``impl_torch/train.py``,
``impl_keras/train.py``); they work with any loader that has ``set_epoch`` and yields batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def rewind(loader: Any) -> Any:
    """``loader`` reset to its epoch 0 (the same shuffled order at every evaluation)."""
    loader.set_epoch(0)
    return loader


def cycle(loader: Any) -> Iterator[Any]:
    """Yield batches forever, a new pass whenever one ends; a loader that yields nothing is an error."""
    while True:
        yielded = False
        for b in loader:
            yielded = True
            yield b
        if not yielded:
            raise RuntimeError("a data loader produced no batch (split smaller than the batch size?)")
