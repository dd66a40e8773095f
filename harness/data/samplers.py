"""Batch plans shared by both adapters: pooled and per-source-domain balanced (M3SDA-β).

A plan is a list of int64 index arrays (one per batch) computed from ``(seed, epoch)`` only, so the torch and
Keras loaders visit exactly the same samples in the same order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SamplerName = Literal["pooled", "balanced"]
SAMPLERS: tuple[str, ...] = ("pooled", "balanced")

_POOLED, _BALANCED = 0x9001, 0xBA1


def pooled_plan(
    n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = False
) -> list[np.ndarray]:
    """One pass over ``n`` samples in batches (a fresh permutation per ``(seed, epoch)`` when ``shuffle``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed, epoch, _POOLED]).permutation(n) if shuffle else np.arange(n)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i : i + batch_size].astype(np.int64) for i in range(0, stop, batch_size)]


def balanced_plan(
    domains: np.ndarray, batch_size: int, *, seed: int, epoch: int, num_batches: int | None = None
) -> list[np.ndarray]:
    """Batches with the same number of samples from each domain present in ``domains`` (M3SDA-β style).

    Each batch takes ``batch_size // D`` samples per domain (the remainder goes to domains in rotating order).
    Each domain is read as a stream of fresh permutations, so small domains are repeated and large ones are
    sampled without replacement within a pass. ``num_batches`` defaults to ``len(domains) // batch_size``
    (at least 1), the number of full pooled batches.
    """
    domains = np.asarray(domains)
    ids = np.unique(domains)
    if len(ids) == 0:
        return []
    if batch_size < len(ids):
        raise ValueError(f"balanced sampler: batch_size {batch_size} < number of domains {len(ids)}")
    if num_batches is None:
        num_batches = max(1, len(domains) // batch_size)
    rng = np.random.default_rng([seed, epoch, _BALANCED])
    members = [np.flatnonzero(domains == d) for d in ids]
    pos = [0] * len(ids)
    orders = [rng.permutation(m) for m in members]
    per, rem = divmod(batch_size, len(ids))
    plan = []
    for b in range(num_batches):
        parts = []
        for j in range(len(ids)):
            k = per + (1 if (j - b) % len(ids) < rem else 0)
            take = []
            while k > 0:
                avail = len(orders[j]) - pos[j]
                if avail == 0:
                    orders[j], pos[j] = rng.permutation(members[j]), 0
                    continue
                t = min(k, avail)
                take.append(orders[j][pos[j] : pos[j] + t])
                pos[j] += t
                k -= t
            parts.extend(take)
        plan.append(np.concatenate(parts).astype(np.int64))
    return plan


def make_plan(
    domains: np.ndarray,
    batch_size: int,
    *,
    sampler: str = "pooled",
    train: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool | None = None,
    num_batches: int | None = None,
) -> list[np.ndarray]:
    """The batch plan of one epoch. ``train=False`` → sequential, no shuffle, keeps the last partial batch.

    ``drop_last`` defaults to ``train``. ``num_batches`` (balanced only) overrides the epoch length.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: expected one of {SAMPLERS}")
    n = len(domains)
    if not train:
        return pooled_plan(n, batch_size, seed=seed, epoch=epoch, shuffle=False, drop_last=bool(drop_last))
    if sampler == "balanced":
        return balanced_plan(domains, batch_size, seed=seed, epoch=epoch, num_batches=num_batches)
    drop = True if drop_last is None else drop_last
    if drop and n < batch_size:
        drop = False  # never produce an empty epoch
    return pooled_plan(n, batch_size, seed=seed, epoch=epoch, shuffle=True, drop_last=drop)
