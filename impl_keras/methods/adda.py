r"""ADDA (Keras), the original two-stage method; mirrors :mod:`impl_torch.methods.adda` (see its
docstring)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from impl_keras.losses import bce_with_logits, cross_entropy
from impl_keras.methods.base import Algorithm, copy_net


class ADDA(Algorithm):
    def build_nets(self) -> dict[str, keras.layers.Layer]:
        from impl_keras.backbones import build_features

        nets = super().build_nets()
        nets["target_features"] = build_features(self.model_spec, dtype=self.dtype)
        return nets

    def enter_stage(self, stage: int) -> None:
        if stage == 1:
            copy_net(self.nets["features"], self.nets["target_features"])
        super().enter_stage(stage)

    def _source(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        ce = cross_entropy(ctx("head", ctx("features", b["xs"])), b["ys"], self.spec["label_smoothing"])
        return ce, {"loss": ce, "ce": ce}

    def _critic(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs = ops.stop_gradient(ctx("features", b["xs"], training=False))
        ft = ops.stop_gradient(ctx("target_features", b["xt"]))
        loss = 0.5 * (bce_with_logits(ctx("critic", fs), 1.0) + bce_with_logits(ctx("critic", ft), 0.0))
        return loss, {"critic": loss}

    def _encoder(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        loss = bce_with_logits(ctx("critic", ctx("target_features", b["xt"])), 1.0)
        return loss, {"encoder": loss}

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        if self.stage == 0:
            return self.run_step("source", self._source, ["features", "head"], batch)[1]
        _, m1 = self.run_step("critic", self._critic, ["critic"], batch)
        g, m2 = self.run_step("encoder", self._encoder, ["target_features"], batch)
        return {"loss": g, **m1, **m2}

    def _predict(self, ctx: Any, x: Any) -> Any:
        g = "target_features" if self.stage >= 1 else "features"
        return ops.softmax(ctx("head", ctx(g, x, False), False), axis=-1)
