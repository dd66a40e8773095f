"""Source-only (PyTorch): ``L = CE_ε(F(G(x_s)), y_s)`` on G and F (table row ``source_only``)."""

from __future__ import annotations

from typing import Any

import torch

from impl_torch.losses import cross_entropy
from impl_torch.methods.base import Algorithm


class SourceOnly(Algorithm):
    def source_step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        """``CE_ε(F(G x_s), y_s)``."""
        return source_ce(self, batch)


def source_ce(algo: Algorithm, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """``CE_ε(F(G x_s), y_s)`` with the ``features`` network and ``head`` (shared with ADDA's stage 1)."""
    ce = cross_entropy(algo.classify(batch["xs"]), batch["ys"], algo.spec["label_smoothing"])
    return ce, {"loss": ce, "ce": ce}
