r"""Losses of the adaptation methods (PyTorch). The maths is in :mod:`harness.spec.method`; each function here
mirrors one NumPy reference there and one Keras function in :mod:`impl_keras.losses` operation by operation,
so that the two frameworks agree to float64 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-λ``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * (-ctx.lam), None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient reversal layer ``GRL_λ``: ``y = x``, ``∂L/∂x = -λ ∂L/∂y``."""
    return _GradReverse.apply(x, lam)


def _smoothed_targets(
    y: torch.Tensor, num_classes: int, smoothing: float, dtype: torch.dtype
) -> torch.Tensor:
    onehot = F.one_hot(y.long(), num_classes).to(dtype)
    off = smoothing / (num_classes - 1) if num_classes > 1 else 0.0
    return onehot * (1.0 - smoothing) + (1.0 - onehot) * off


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    r"""``-mean_b Σ_c w_bc log σ(z_b)_c``, ``w = 1-ε`` on the label and ``ε/(C-1)`` elsewhere (release)."""
    w = _smoothed_targets(y, logits.shape[-1], smoothing, logits.dtype)
    return -(w * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def masked_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy averaged over the rows where ``mask`` is 1 (0 when no row is selected).
    ``y`` may hold any class index (e.g. 0) on masked-out rows."""
    w = _smoothed_targets(y, logits.shape[-1], smoothing, logits.dtype)
    per = -(w * torch.log_softmax(logits, dim=-1)).sum(-1)
    m = mask.to(logits.dtype)
    return (per * m).sum() / torch.clamp(m.sum(), min=1.0)


def discrepancy(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """MCD classifier discrepancy ``mean |p1 - p2|`` (probabilities)."""
    return torch.abs(p1 - p2).mean()


def diversity_entropy(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``-(1/C) Σ_c log(mean_b p_bc + eps)``."""
    return -torch.log(p.mean(0) + eps).mean()


def bce_with_logits(z: torch.Tensor, target: float) -> torch.Tensor:
    """Mean BCE of logits against a constant target: ``max(z,0) - z·t + log(1 + exp(-|z|))``."""
    return (torch.clamp(z, min=0) - z * target + torch.log1p(torch.exp(-torch.abs(z)))).mean()


def _l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((a - b) ** 2).sum())


def masked_moments(f: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and unbiased variance of the rows of ``f`` where ``mask`` (B,) is 1."""
    m = mask.to(f.dtype)[:, None]
    n = m.sum()
    mean = (f * m).sum(0) / n
    var = (((f - mean) ** 2) * m).sum(0) / (n - 1.0)
    return mean, var


def moment_distance(fs: torch.Tensor, ds: torch.Tensor, num_sources: int, ft: torch.Tensor) -> torch.Tensor:
    r"""M3SDA-β moment distance ``½ [D(means) + D(variances)]`` over the ``N`` source–target and ``C(N,2)``
    source–source pairs; source ``i`` = rows of ``fs`` with ``ds == i``."""
    moms = [masked_moments(fs, ds == i) for i in range(num_sources)]
    ones = torch.ones(ft.shape[0], dtype=ft.dtype, device=ft.device)
    t_mean, t_var = masked_moments(ft, ones)
    out = []
    for k, t in ((0, t_mean), (1, t_var)):
        dists = [_l2(moms[i][k], t) for i in range(num_sources)]
        dists += [_l2(moms[i][k], moms[j][k]) for i in range(num_sources) for j in range(i + 1, num_sources)]
        out.append(torch.stack(dists).mean())
    return 0.5 * (out[0] + out[1])
