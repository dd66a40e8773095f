r"""ADDA (Tzeng et al. 2017), PyTorch loss code; the two stages, the copy ``G_t ← G_s`` at the switch, the
Adam optimiser of stage 2 and the prediction with ``G_t`` come from the table row ``adda``.

* stage 1 ``source_step``: ``CE_ε(F(G_s x_s), y_s)`` on G_s (``features``) and F (``head``);
* stage 2 ``critic_step``: ``½[BCE(D(G_s x_s), 1) + BCE(D(G_t x_t), 0)]`` on D, with G_s in inference mode;
* stage 2 ``encoder_step``: ``BCE(D(G_t x_t), 1)`` (inverted labels) on G_t.
"""

from __future__ import annotations

import torch

from impl_torch.losses import bce_with_logits
from impl_torch.methods.base import Algorithm
from impl_torch.methods.source_only import source_ce


class ADDA(Algorithm):
    def source_step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        return source_ce(self, batch)

    def critic_step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        gs, gt, critic = self.nets["features"], self.nets["target_features"], self.nets["critic"]
        gs.eval()
        with torch.no_grad():
            fs = gs(batch["xs"])
        gs.train()
        ft = gt(batch["xt"])
        loss = 0.5 * (bce_with_logits(critic(fs), 1.0) + bce_with_logits(critic(ft.detach()), 0.0))
        return loss, {"critic": loss}

    def encoder_step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        loss = bce_with_logits(self.nets["critic"](self.nets["target_features"](batch["xt"])), 1.0)
        return loss, {"loss": loss, "encoder": loss}
