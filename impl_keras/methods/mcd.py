r"""MCD (Saito et al. 2018), the classic three-step form, Keras loss code (table row ``mcd``); mirrors
:mod:`impl_torch.methods.mcd`:

* ``step_a``: ``CE_ε(F1(G x_s), y_s) + CE_ε(F2(G x_s), y_s)`` on G, F1, F2;
* ``step_b`` (G fixed): ``CE_ε(F1) + CE_ε(F2) − d(σF1(G x_t), σF2(G x_t))`` on F1, F2;
* ``step_c`` (F fixed): ``d(σF1(G x_t), σF2(G x_t))`` on G, ``num_k`` times.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.losses import cross_entropy, discrepancy
from impl_keras.methods.base import Algorithm


def pair_discrepancy(ctx: Any, f: Any, a: str = "head", b: str = "head2") -> Any:
    """``d(σF_a(f), σF_b(f))``."""
    return discrepancy(ops.softmax(ctx(a, f), axis=-1), ops.softmax(ctx(b, f), axis=-1))


class MCD(Algorithm):
    def _ce(self, ctx: Any, fs: Any, ys: Any) -> Any:
        eps = self.spec["label_smoothing"]
        return cross_entropy(ctx("head", fs), ys, eps) + cross_entropy(ctx("head2", fs), ys, eps)

    def step_a(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        loss = self._ce(ctx, ctx("features", b["xs"]), b["ys"])
        return loss, {"loss": loss, "ce": loss / 2}

    def step_b(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs, ft = ctx("features", b["xs"]), ctx("features", b["xt"])
        loss = self._ce(ctx, fs, b["ys"]) - pair_discrepancy(ctx, ft)
        return loss, {"step_b": loss}

    def step_c(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        d = pair_discrepancy(ctx, ctx("features", b["xt"]))
        return d, {"discrepancy": d}
