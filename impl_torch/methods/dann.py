r"""DANN (Ganin & Lempitsky 2015): ``L = CE(F(G x_s), y_s) + w·½[BCE(D(R G x_s), 1) + BCE(D(R G x_t), 0)]``,
``R = GRL_{λ_p}`` with ``λ_p = 2/(1+exp(-γp)) - 1``; one step on G, F and D."""

from __future__ import annotations

import torch

from impl_torch.losses import bce_with_logits, cross_entropy, grad_reverse
from impl_torch.methods.base import Algorithm, f


class DANN(Algorithm):
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lam = self.spec.grl_lambda(self.step_count, self.total_steps)
        fs = self.nets["features"](batch["xs"])
        ft = self.nets["features"](batch["xt"])
        ce = cross_entropy(self.nets["head"](fs), batch["ys"], self.spec["label_smoothing"])
        ds = self.nets["critic"](grad_reverse(fs, lam))
        dt = self.nets["critic"](grad_reverse(ft, lam))
        dom = 0.5 * (bce_with_logits(ds, 1.0) + bce_with_logits(dt, 0.0))
        loss = ce + self.spec["dann_weight"] * dom
        self.optimize(loss, ["features", "head", "critic"])
        return {"loss": f(loss), "ce": f(ce), "domain": f(dom), "grl_lambda": lam}
