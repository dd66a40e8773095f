r"""One-step MCD as in the DRT release (Keras); mirrors :mod:`impl_torch.methods.mcd_grl` (see its
docstring)."""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.grad import grad_reverse
from impl_keras.losses import cross_entropy, discrepancy, diversity_entropy
from impl_keras.methods.base import Algorithm
from impl_keras.methods.mcd import two_head_predict


def mcd_grl_loss(algo: Algorithm, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
    """The one-step MCD objective (shared with drt_st); ``s["lam"]`` is the GRL coefficient."""
    h = algo.spec.hparams
    n = b["xs"].shape[0]
    feat = ctx("features", ops.concatenate([b["xs"], b["xt"]], axis=0))
    z1, z2 = ctx("head", feat), ctx("head2", feat)
    ce1 = cross_entropy(z1[:n], b["ys"], h["label_smoothing"])
    ce2 = cross_entropy(z2[:n], b["ys"], h["label_smoothing"])
    ent = diversity_entropy(ops.softmax(z1[n:], axis=-1)) + diversity_entropy(ops.softmax(z2[n:], axis=-1))
    rt = grad_reverse(feat[n:], s["lam"])
    d = discrepancy(ops.softmax(ctx("head", rt), axis=-1), ops.softmax(ctx("head2", rt), axis=-1))
    loss = ce1 + ce2 + h["gamma"] * ent - h["eta"] * d
    return loss, {"loss": loss, "ce": 0.5 * (ce1 + ce2), "entropy": ent, "discrepancy": d}


class MCDGRL(Algorithm):
    def _loss(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        return mcd_grl_loss(self, ctx, b, s)

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        lam = self.spec.grl_lambda(self.step_count, self.total_steps)
        return self.run_step("main", self._loss, ["features", "head", "head2"], batch, {"lam": lam})[1]

    def _predict(self, ctx: Any, x: Any) -> Any:
        fx = ctx("features", x, False)
        return two_head_predict(ctx("head", fx, False), ctx("head2", fx, False), self.spec["mcd_predict"])
