r"""DANN (Ganin & Lempitsky 2015), PyTorch: one step on G, F and D of

``L = CE_ε(F(G x_s), y_s) + w·½[BCE(D(R G x_s), 1) + BCE(D(R G x_t), 0)]``, ``R = GRL_{λ_p}``,
``λ_p = 2/(1+exp(-γp)) - 1`` (the table row's ``grl = "dann"``); source and target are separate forwards."""

from __future__ import annotations

import torch

from impl_torch.losses import bce_with_logits, cross_entropy, grad_reverse
from impl_torch.methods.base import Algorithm


class DANN(Algorithm):
    def step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        lam = s["lam"]
        fs = self.nets["features"](batch["xs"])
        ft = self.nets["features"](batch["xt"])
        ce = cross_entropy(self.nets["head"](fs), batch["ys"], self.spec["label_smoothing"])
        ds = self.nets["critic"](grad_reverse(fs, lam))
        dt = self.nets["critic"](grad_reverse(ft, lam))
        dom = 0.5 * (bce_with_logits(ds, 1.0) + bce_with_logits(dt, 0.0))
        loss = ce + self.spec["dann_weight"] * dom
        return loss, {"loss": loss, "ce": ce, "domain": dom, "grl_lambda": lam}
