r"""Losses of the adaptation methods (Keras 3, ``keras.ops`` only). Maths in :mod:`harness.spec.method`; each
function mirrors :mod:`impl_torch.losses` operation by operation (float64 agreement to rounding)."""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.grad import grad_reverse
from impl_keras.numerics import mean

Tensor = Any

__all__ = [
    "bce_with_logits",
    "cross_entropy",
    "discrepancy",
    "diversity_entropy",
    "grad_reverse",
    "masked_cross_entropy",
    "masked_moments",
    "moment_distance",
]


def _smoothed_targets(y: Tensor, num_classes: int, smoothing: float, dtype: Any) -> Tensor:
    onehot = ops.cast(ops.one_hot(ops.cast(y, "int32"), num_classes), dtype)
    off = smoothing / (num_classes - 1) if num_classes > 1 else 0.0
    return onehot * (1.0 - smoothing) + (1.0 - onehot) * off


def _per_sample_ce(logits: Tensor, y: Tensor, smoothing: float) -> Tensor:
    w = _smoothed_targets(y, int(logits.shape[-1]), smoothing, logits.dtype)
    return -ops.sum(w * ops.log_softmax(logits, axis=-1), axis=-1)


def cross_entropy(logits: Tensor, y: Tensor, smoothing: float = 0.0) -> Tensor:
    r"""``-mean_b Σ_c w_bc log σ(z_b)_c``, ``w = 1-ε`` on the label, ``ε/(C-1)`` elsewhere (release form)."""
    return mean(_per_sample_ce(logits, y, smoothing))


def masked_cross_entropy(logits: Tensor, y: Tensor, mask: Tensor, smoothing: float = 0.0) -> Tensor:
    """Cross-entropy averaged over the rows where ``mask`` is 1 (0 when none)."""
    m = ops.cast(mask, logits.dtype)
    return ops.sum(_per_sample_ce(logits, y, smoothing) * m) / ops.maximum(ops.sum(m), 1.0)


def discrepancy(p1: Tensor, p2: Tensor) -> Tensor:
    """MCD classifier discrepancy ``mean |p1 - p2|``."""
    return mean(ops.abs(p1 - p2))


def diversity_entropy(p: Tensor, eps: float = 1e-6) -> Tensor:
    """``-(1/C) Σ_c log(mean_b p_bc + eps)``."""
    return -mean(ops.log(mean(p, axis=0) + eps))


def bce_with_logits(z: Tensor, target: float) -> Tensor:
    """Mean BCE of logits against a constant target: ``max(z,0) - z·t + log(1 + exp(-|z|))``."""
    return mean(ops.maximum(z, 0.0) - z * target + ops.log1p(ops.exp(-ops.abs(z))))


def _l2(a: Tensor, b: Tensor) -> Tensor:
    return ops.sqrt(ops.sum((a - b) ** 2))


def masked_moments(f: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and unbiased variance of the rows of ``f`` where ``mask`` (B,) is 1."""
    m = ops.cast(mask, f.dtype)[:, None]
    n = ops.sum(m)
    mean = ops.sum(f * m, axis=0) / n
    var = ops.sum(((f - mean) ** 2) * m, axis=0) / (n - 1.0)
    return mean, var


def moment_distance(fs: Tensor, ds: Tensor, num_sources: int, ft: Tensor) -> Tensor:
    r"""M3SDA-β moment distance over the ``N`` source–target and ``C(N,2)`` source–source pairs.

    Same operations as :func:`impl_torch.losses.moment_distance`."""
    moms = [masked_moments(fs, ops.equal(ds, i)) for i in range(num_sources)]
    t_mean, t_var = masked_moments(ft, ops.ones((ft.shape[0],), dtype=ft.dtype))
    out = []
    for k, t in ((0, t_mean), (1, t_var)):
        dists = [_l2(moms[i][k], t) for i in range(num_sources)]
        dists += [_l2(moms[i][k], moms[j][k]) for i in range(num_sources) for j in range(i + 1, num_sources)]
        out.append(mean(ops.stack(dists)))
    return 0.5 * (out[0] + out[1])
