r"""ADDA (Tzeng et al. 2017), the original two-stage method.

Stage 1 (``source``): ``CE_ε(F(G_s x_s), y_s)`` on G_s (``features``) and F (``head``).
Stage 2 (``adapt``): ``G_t`` (``target_features``) ← G_s at the switch; per update (a) critic step
``½[BCE(D(G_s x_s), 1) + BCE(D(G_t x_t), 0)]`` on D, (b) encoder step ``BCE(D(G_t x_t), 1)`` (inverted labels)
on G_t. G_s runs in inference mode and F is frozen; G_t and D use Adam(adda_lr, (adda_beta1, adda_beta2)).
Prediction: ``σ(F(G_t x))`` after the switch, ``σ(F(G_s x))`` before.
"""

from __future__ import annotations

import torch

from impl_torch.losses import bce_with_logits, cross_entropy
from impl_torch.methods.base import Algorithm, copy_net, f


class ADDA(Algorithm):
    def build_nets(self) -> dict[str, torch.nn.Module]:
        from impl_torch.backbones import build_features

        nets = super().build_nets()
        nets["target_features"] = build_features(self.model_spec)
        return nets

    def enter_stage(self, stage: int) -> None:
        if stage == 1:
            copy_net(self.nets["features"], self.nets["target_features"])
        super().enter_stage(stage)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.stage == 0:
            ce = cross_entropy(self.classify(batch["xs"]), batch["ys"], self.spec["label_smoothing"])
            self.optimize(ce, ["features", "head"])
            return {"loss": f(ce), "ce": f(ce)}
        gs, gt, critic = self.nets["features"], self.nets["target_features"], self.nets["critic"]
        gs.eval()
        with torch.no_grad():
            fs = gs(batch["xs"])
        gs.train()
        ft = gt(batch["xt"])
        d_loss = 0.5 * (bce_with_logits(critic(fs), 1.0) + bce_with_logits(critic(ft.detach()), 0.0))
        self.optimize(d_loss, ["critic"])
        g_loss = bce_with_logits(critic(gt(batch["xt"])), 1.0)
        self.optimize(g_loss, ["target_features"])
        return {"loss": f(g_loss), "critic": f(d_loss), "encoder": f(g_loss)}

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        g = "target_features" if self.stage >= 1 else "features"
        return torch.softmax(self.classify(x, features=g), dim=-1)
