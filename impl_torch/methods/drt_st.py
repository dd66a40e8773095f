r"""DRT + self-training (the paper's "DRT+ST"), PyTorch loss code (table row ``drt_st``).

Stage 1 (``drt``): the one-step MCD objective (:mod:`impl_torch.methods.mcd_grl`). At the switch the table
copies the networks into a frozen *teacher* (``teacher_*``). Stage 2 (``self_train``), per update: the
teacher (inference mode) pseudo-labels the target batch, ``ŷ_t = argmax p_t``, kept where
``max p_t > st_confidence``; then::

    L = CE_ε(F1(f_s), y_s) + CE_ε(F2(f_s), y_s) + st_weight · [CE_m(F1(f_t), ŷ_t) + CE_m(F2(f_t), ŷ_t)]

(``CE_m``: mean over the confident rows, 0 if none) from one forward of ``[x_s; x_t]``; one step on G, F1,
F2. The teacher's prediction rule is ``mcd_predict``.
"""

from __future__ import annotations

import torch

from impl_torch.losses import cross_entropy, masked_cross_entropy
from impl_torch.methods.base import Algorithm, two_head_predict
from impl_torch.methods.mcd_grl import mcd_grl_loss

_TEACHER = ("teacher_features", "teacher_head", "teacher_head2")


class DRTST(Algorithm):
    @torch.no_grad()
    def pseudo_labels(self, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, mask) of the frozen teacher on ``xt``: mask = confidence > st_confidence."""
        tf, t1, t2 = (self.nets[t] for t in _TEACHER)
        modes = [m.training for m in (tf, t1, t2)]
        for m in (tf, t1, t2):
            m.eval()
        fx = tf(xt)
        p = two_head_predict(t1(fx), t2(fx), self.spec["mcd_predict"])
        for m, was in zip((tf, t1, t2), modes):
            m.train(was)
        conf, lab = p.max(-1)
        return lab, conf > self.spec["st_confidence"]

    def mcd_grl_step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        return mcd_grl_loss(self, batch, s["lam"], s["eta"])

    def self_train_step(
        self, batch: dict[str, torch.Tensor], s: dict[str, float]
    ) -> tuple[torch.Tensor, dict]:
        eps = self.spec["label_smoothing"]
        yt, mask = self.pseudo_labels(batch["xt"])
        n = batch["xs"].shape[0]
        feat = self.nets["features"](torch.cat([batch["xs"], batch["xt"]], 0))
        z1, z2 = self.nets["head"](feat), self.nets["head2"](feat)
        ce = cross_entropy(z1[:n], batch["ys"], eps) + cross_entropy(z2[:n], batch["ys"], eps)
        pl = masked_cross_entropy(z1[n:], yt, mask, eps) + masked_cross_entropy(z2[n:], yt, mask, eps)
        loss = ce + self.spec["st_weight"] * pl
        return loss, {"loss": loss, "ce": ce / 2, "pseudo_ce": pl, "pseudo_frac": mask.double().mean()}
