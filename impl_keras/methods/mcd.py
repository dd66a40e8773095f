r"""MCD classic three steps (Keras); mirrors :mod:`impl_torch.methods.mcd` (see its docstring)."""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.losses import cross_entropy, discrepancy
from impl_keras.methods.base import Algorithm


def two_head_predict(z1: Any, z2: Any, how: str) -> Any:
    """``mean_softmax`` or ``max_logit`` (softmax of the classifier with the larger max logit per sample)."""
    p1, p2 = ops.softmax(z1, axis=-1), ops.softmax(z2, axis=-1)
    if how == "mean_softmax":
        return 0.5 * (p1 + p2)
    use2 = ops.less(ops.max(z1, axis=-1), ops.max(z2, axis=-1))[:, None]
    return ops.where(use2, p2, p1)


def pair_discrepancy(ctx: Any, f: Any, a: str = "head", b: str = "head2") -> Any:
    return discrepancy(ops.softmax(ctx(a, f), axis=-1), ops.softmax(ctx(b, f), axis=-1))


class MCD(Algorithm):
    def _step_a(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        eps = self.spec["label_smoothing"]
        fs = ctx("features", b["xs"])
        loss = cross_entropy(ctx("head", fs), b["ys"], eps) + cross_entropy(ctx("head2", fs), b["ys"], eps)
        return loss, {"loss": loss}

    def _step_b(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        eps = self.spec["label_smoothing"]
        fs, ft = ctx("features", b["xs"]), ctx("features", b["xt"])
        d = pair_discrepancy(ctx, ft)
        loss = (
            cross_entropy(ctx("head", fs), b["ys"], eps) + cross_entropy(ctx("head2", fs), b["ys"], eps) - d
        )
        return loss, {"step_b": loss}

    def _step_c(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        d = pair_discrepancy(ctx, ctx("features", b["xt"]))
        return d, {"discrepancy": d}

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        la, _ = self.run_step("a", self._step_a, ["features", "head", "head2"], batch)
        lb, _ = self.run_step("b", self._step_b, ["head", "head2"], batch)
        for _ in range(int(self.spec["num_k"])):
            lc, _ = self.run_step("c", self._step_c, ["features"], batch)
        return {"loss": la, "ce": la / 2, "step_b": lb, "discrepancy": lc}

    def _predict(self, ctx: Any, x: Any) -> Any:
        fx = ctx("features", x, False)
        return two_head_predict(ctx("head", fx, False), ctx("head2", fx, False), self.spec["mcd_predict"])
