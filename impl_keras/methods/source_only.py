"""Source-only (Keras): ``L = CE_ε(F(G(x_s)), y_s)`` on G and F (table row ``source_only``)."""

from __future__ import annotations

from typing import Any

from impl_keras.losses import cross_entropy
from impl_keras.methods.base import Algorithm


def source_ce(algo: Algorithm, ctx: Any, b: dict) -> tuple[Any, dict]:
    """``CE_ε(F(G x_s), y_s)`` with the ``features`` network and ``head`` (shared with ADDA's stage 1)."""
    ce = cross_entropy(ctx("head", ctx("features", b["xs"])), b["ys"], algo.spec["label_smoothing"])
    return ce, {"loss": ce, "ce": ce}


class SourceOnly(Algorithm):
    def source_step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        return source_ce(self, ctx, b)
