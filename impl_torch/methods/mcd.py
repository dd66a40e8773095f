r"""MCD (Saito et al. 2018), the classic three-step form, per iteration:

* step A: ``CE_ε(F1(G x_s), y_s) + CE_ε(F2(G x_s), y_s)`` on G, F1, F2;
* step B (G fixed): ``CE_ε(F1) + CE_ε(F2) − d(σF1(G x_t), σF2(G x_t))`` on F1, F2;
* step C (F fixed): ``d(σF1(G x_t), σF2(G x_t))`` on G, ``num_k`` times.

Source and target go through G as separate forwards (Saito's code). Prediction (``mcd_predict``):
``mean_softmax`` (default for mcd) or ``max_logit`` (the classifier with the larger max logit per sample).
"""

from __future__ import annotations

import torch

from impl_torch.losses import cross_entropy, discrepancy
from impl_torch.methods.base import Algorithm, f


def two_head_predict(z1: torch.Tensor, z2: torch.Tensor, how: str) -> torch.Tensor:
    """Probabilities of a classifier pair: ``mean_softmax`` or ``max_logit`` (softmax of the classifier whose
    max logit is larger, per sample; ties go to the first, as in the release)."""
    p1, p2 = torch.softmax(z1, -1), torch.softmax(z2, -1)
    if how == "mean_softmax":
        return 0.5 * (p1 + p2)
    use2 = (z1.max(-1).values < z2.max(-1).values)[:, None]
    return torch.where(use2, p2, p1)


class MCD(Algorithm):
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        G, F1, F2 = self.nets["features"], self.nets["head"], self.nets["head2"]
        eps = self.spec["label_smoothing"]
        xs, ys, xt = batch["xs"], batch["ys"], batch["xt"]
        # step A
        fs = G(xs)
        loss_a = cross_entropy(F1(fs), ys, eps) + cross_entropy(F2(fs), ys, eps)
        self.optimize(loss_a, ["features", "head", "head2"])
        # step B (G fixed: its forward needs no graph)
        with torch.no_grad():
            fs, ft = G(xs), G(xt)
        d_b = discrepancy(torch.softmax(F1(ft), -1), torch.softmax(F2(ft), -1))
        loss_b = cross_entropy(F1(fs), ys, eps) + cross_entropy(F2(fs), ys, eps) - d_b
        self.optimize(loss_b, ["head", "head2"])
        # step C
        for _ in range(int(self.spec["num_k"])):
            ft = G(xt)
            d_c = discrepancy(torch.softmax(F1(ft), -1), torch.softmax(F2(ft), -1))
            self.optimize(d_c, ["features"])
        return {"loss": f(loss_a), "ce": f(loss_a) / 2, "step_b": f(loss_b), "discrepancy": f(d_c)}

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        fx = self.nets["features"](x)
        return two_head_predict(self.nets["head"](fx), self.nets["head2"](fx), self.spec["mcd_predict"])
