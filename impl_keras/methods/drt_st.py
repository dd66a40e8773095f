r"""DRT + self-training (Keras loss code, table row ``drt_st``); mirrors :mod:`impl_torch.methods.drt_st`.

Stage 1: the one-step MCD objective. Stage 2: the frozen teacher (copied by the table at the switch,
inference mode) pseudo-labels the target batch where its confidence is ``> st_confidence``, then
``L = CE_ε(F1) + CE_ε(F2) + st_weight · [CE_m(F1(f_t), ŷ_t) + CE_m(F2(f_t), ŷ_t)]``.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.losses import cross_entropy, masked_cross_entropy
from impl_keras.methods.base import Algorithm, two_head_predict
from impl_keras.methods.mcd_grl import mcd_grl_loss
from impl_keras.numerics import mean


class DRTST(Algorithm):
    def mcd_grl_step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        return mcd_grl_loss(self, ctx, b, s)

    def self_train_step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        eps = self.spec["label_smoothing"]
        ft_teacher = ctx("teacher_features", b["xt"], training=False)
        p = two_head_predict(
            ctx("teacher_head", ft_teacher, training=False),
            ctx("teacher_head2", ft_teacher, training=False),
            self.spec["mcd_predict"],
        )
        p = ops.stop_gradient(p)
        yt = ops.argmax(p, axis=-1)
        mask = ops.greater(ops.max(p, axis=-1), self.spec["st_confidence"])
        n = b["xs"].shape[0]
        feat = ctx("features", ops.concatenate([b["xs"], b["xt"]], axis=0))
        z1, z2 = ctx("head", feat), ctx("head2", feat)
        ce = cross_entropy(z1[:n], b["ys"], eps) + cross_entropy(z2[:n], b["ys"], eps)
        pl = masked_cross_entropy(z1[n:], yt, mask, eps) + masked_cross_entropy(z2[n:], yt, mask, eps)
        loss = ce + self.spec["st_weight"] * pl
        return loss, {
            "loss": loss,
            "ce": ce / 2,
            "pseudo_ce": pl,
            "pseudo_frac": mean(ops.cast(mask, loss.dtype)),
        }
