"""Source-only (Keras): ``L = CE_ε(F(G(x_s)), y_s)``; mirrors :mod:`impl_torch.methods.source_only`."""

from __future__ import annotations

from typing import Any

from impl_keras.losses import cross_entropy
from impl_keras.methods.base import Algorithm


class SourceOnly(Algorithm):
    def _loss(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        ce = cross_entropy(ctx("head", ctx("features", b["xs"])), b["ys"], self.spec["label_smoothing"])
        return ce, {"loss": ce, "ce": ce}

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        return self.run_step("main", self._loss, ["features", "head"], batch)[1]
