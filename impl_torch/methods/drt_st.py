r"""DRT + self-training (the paper's "DRT+ST").

Stage 1 (``drt``): the one-step MCD objective (:mod:`impl_torch.methods.mcd_grl`). At the switch the networks
are copied into a frozen *teacher* (``teacher_*``). Stage 2 (``self_train``), per update: the teacher
(inference
mode) pseudo-labels the target batch, ``ŷ_t = argmax p_t``, kept where ``max p_t > st_confidence``; then::

    L = CE_ε(F1(f_s), y_s) + CE_ε(F2(f_s), y_s) + st_weight · [CE_m(F1(f_t), ŷ_t) + CE_m(F2(f_t), ŷ_t)]

(``CE_m``: mean over the confident rows, 0 if none) from one forward of ``[x_s; x_t]``; one step on G, F1, F2.
The teacher's prediction rule is ``mcd_predict``.
"""

from __future__ import annotations

import torch

from impl_torch.losses import cross_entropy, masked_cross_entropy
from impl_torch.methods.base import Algorithm, copy_net, f
from impl_torch.methods.mcd import two_head_predict
from impl_torch.methods.mcd_grl import mcd_grl_loss

_PAIRS = (("features", "teacher_features"), ("head", "teacher_head"), ("head2", "teacher_head2"))


class DRTST(Algorithm):
    def build_nets(self) -> dict[str, torch.nn.Module]:
        from impl_torch.backbones import build_features, build_head

        nets = super().build_nets()
        nets["teacher_features"] = build_features(self.model_spec)
        nets["teacher_head"] = build_head(self.model_spec, num_classes=self.spec.num_classes)
        nets["teacher_head2"] = build_head(self.model_spec, num_classes=self.spec.num_classes)
        for _, t in _PAIRS:
            nets[t].requires_grad_(False)
        return nets

    def enter_stage(self, stage: int) -> None:
        if stage == 1:
            for s, t in _PAIRS:
                copy_net(self.nets[s], self.nets[t])
        super().enter_stage(stage)

    @torch.no_grad()
    def pseudo_labels(self, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, mask) of the frozen teacher on ``xt``: mask = confidence > st_confidence."""
        tf, t1, t2 = (self.nets[t] for _, t in _PAIRS)
        modes = [m.training for m in (tf, t1, t2)]
        for m in (tf, t1, t2):
            m.eval()
        fx = tf(xt)
        p = two_head_predict(t1(fx), t2(fx), self.spec["mcd_predict"])
        for m, was in zip((tf, t1, t2), modes):
            m.train(was)
        conf, lab = p.max(-1)
        return lab, conf > self.spec["st_confidence"]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.stage == 0:
            loss, metrics = mcd_grl_loss(self, batch)
            self.optimize(loss, ["features", "head", "head2"])
            return metrics
        eps = self.spec["label_smoothing"]
        yt, mask = self.pseudo_labels(batch["xt"])
        n = batch["xs"].shape[0]
        feat = self.nets["features"](torch.cat([batch["xs"], batch["xt"]], 0))
        z1, z2 = self.nets["head"](feat), self.nets["head2"](feat)
        ce = cross_entropy(z1[:n], batch["ys"], eps) + cross_entropy(z2[:n], batch["ys"], eps)
        pl = masked_cross_entropy(z1[n:], yt, mask, eps) + masked_cross_entropy(z2[n:], yt, mask, eps)
        loss = ce + self.spec["st_weight"] * pl
        self.optimize(loss, ["features", "head", "head2"])
        return {
            "loss": f(loss),
            "ce": f(ce) / 2,
            "pseudo_ce": f(pl),
            "pseudo_frac": float(mask.double().mean()),
        }

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        fx = self.nets["features"](x)
        return two_head_predict(self.nets["head"](fx), self.nets["head2"](fx), self.spec["mcd_predict"])
