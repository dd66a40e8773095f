r"""ADDA (Keras) loss code; stages, the copy ``G_t ← G_s``, stage 2's Adam and the prediction with ``G_t``
come from the table row ``adda``. Mirrors :mod:`impl_torch.methods.adda`:

* ``source_step``: ``CE_ε(F(G_s x_s), y_s)`` on G_s and F;
* ``critic_step``: ``½[BCE(D(G_s x_s), 1) + BCE(D(G_t x_t), 0)]`` on D (G_s in inference mode);
* ``encoder_step``: ``BCE(D(G_t x_t), 1)`` on G_t.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.losses import bce_with_logits
from impl_keras.methods.base import Algorithm
from impl_keras.methods.source_only import source_ce


class ADDA(Algorithm):
    def source_step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        return source_ce(self, ctx, b)

    def critic_step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs = ops.stop_gradient(ctx("features", b["xs"], training=False))
        ft = ops.stop_gradient(ctx("target_features", b["xt"]))
        loss = 0.5 * (bce_with_logits(ctx("critic", fs), 1.0) + bce_with_logits(ctx("critic", ft), 0.0))
        return loss, {"critic": loss}

    def encoder_step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        loss = bce_with_logits(ctx("critic", ctx("target_features", b["xt"])), 1.0)
        return loss, {"loss": loss, "encoder": loss}
