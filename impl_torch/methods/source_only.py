"""Source-only: cross-entropy on the pooled sources (``L = CE_ε(F(G(x_s)), y_s)``)."""

from __future__ import annotations

import torch

from impl_torch.losses import cross_entropy
from impl_torch.methods.base import Algorithm, f


class SourceOnly(Algorithm):
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        ce = cross_entropy(self.classify(batch["xs"]), batch["ys"], self.spec["label_smoothing"])
        self.optimize(ce, ["features", "head"])
        return {"loss": f(ce), "ce": f(ce)}
