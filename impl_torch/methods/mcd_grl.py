r"""One-step MCD as in the DRT release (the paper's "MCD" / "MCD+DRT" rows), PyTorch loss code.

One forward of ``[x_s; x_t]`` through G (BatchNorm statistics over source and target together), both
classifiers on the whole batch, then::

    L = CE_ε(F1(f_s), y_s) + CE_ε(F2(f_s), y_s) + γ [ent(σF1(f_t)) + ent(σF2(f_t))]
        − η d(σF1(R f_t), σF2(R f_t))

with ``R = GRL_λ`` (λ = grl_lambda = 4, the row's ``grl = "constant"``), ``η`` = ``eta`` (constant, or
ramped by ``eta_schedule``: ``scalars["eta"]``) and the classifiers applied a second
time to ``R f_t`` (as released); one optimiser step on G, F1 and F2: the classifiers maximise ``d`` while G,
through the reversal, minimises it.
"""

from __future__ import annotations

from typing import Any

import torch

from impl_torch.losses import cross_entropy, discrepancy, diversity_entropy, grad_reverse
from impl_torch.methods.base import Algorithm


def mcd_grl_loss(
    algo: Algorithm, batch: dict[str, torch.Tensor], lam: float, eta: float
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The one-step MCD objective of ``algo``'s features/head/head2 on ``batch`` (shared with drt_st)."""
    G, F1, F2 = algo.nets["features"], algo.nets["head"], algo.nets["head2"]
    h = algo.spec.hparams
    n = batch["xs"].shape[0]
    feat = G(torch.cat([batch["xs"], batch["xt"]], 0))
    z1, z2 = F1(feat), F2(feat)
    ce1 = cross_entropy(z1[:n], batch["ys"], h["label_smoothing"])
    ce2 = cross_entropy(z2[:n], batch["ys"], h["label_smoothing"])
    ent = diversity_entropy(torch.softmax(z1[n:], -1)) + diversity_entropy(torch.softmax(z2[n:], -1))
    rt = grad_reverse(feat[n:], lam)
    d = discrepancy(torch.softmax(F1(rt), -1), torch.softmax(F2(rt), -1))
    loss = ce1 + ce2 + h["gamma"] * ent - eta * d
    return loss, {"loss": loss, "ce": 0.5 * (ce1 + ce2), "entropy": ent, "discrepancy": d}


class MCDGRL(Algorithm):
    def mcd_grl_step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        return mcd_grl_loss(self, batch, s["lam"], s["eta"])
