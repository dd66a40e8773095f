r"""DRT + self-training (Keras); mirrors :mod:`impl_torch.methods.drt_st` (see its docstring)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from impl_keras.losses import cross_entropy, masked_cross_entropy
from impl_keras.methods.base import Algorithm, copy_net
from impl_keras.methods.mcd import two_head_predict
from impl_keras.methods.mcd_grl import mcd_grl_loss
from impl_keras.numerics import mean

_PAIRS = (("features", "teacher_features"), ("head", "teacher_head"), ("head2", "teacher_head2"))


class DRTST(Algorithm):
    def build_nets(self) -> dict[str, keras.layers.Layer]:
        from impl_keras.backbones import build_features, build_head

        nets = super().build_nets()
        nets["teacher_features"] = build_features(self.model_spec, dtype=self.dtype)
        nets["teacher_head"] = build_head(
            self.model_spec, num_classes=self.spec.num_classes, dtype=self.dtype, name="teacher_head"
        )
        nets["teacher_head2"] = build_head(
            self.model_spec, num_classes=self.spec.num_classes, dtype=self.dtype, name="teacher_head2"
        )
        return nets

    def enter_stage(self, stage: int) -> None:
        if stage == 1:
            for s, t in _PAIRS:
                copy_net(self.nets[s], self.nets[t])
        super().enter_stage(stage)

    def _stage1(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        return mcd_grl_loss(self, ctx, b, s)

    def _stage2(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
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

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        train = ["features", "head", "head2"]
        if self.stage == 0:
            lam = self.spec.grl_lambda(self.step_count, self.total_steps)
            return self.run_step("drt", self._stage1, train, batch, {"lam": lam})[1]
        return self.run_step("self_train", self._stage2, train, batch)[1]

    def _predict(self, ctx: Any, x: Any) -> Any:
        fx = ctx("features", x, False)
        return two_head_predict(ctx("head", fx, False), ctx("head2", fx, False), self.spec["mcd_predict"])
