r"""M3SDA-β (Peng et al. 2019) as in Dassl, PyTorch loss code (table row ``m3sda``: a classifier pair per
source, the balanced sampler, prediction by the mean of the 2N softmaxes).

With ``m_i`` the rows of source ``i`` (domain id ``i``) and ``CE_i`` the mean over them:

* ``step_a``: ``(1/N) Σ_i [CE_i(F1_i(G x_s)) + CE_i(F2_i(G x_s))] + w_md · MD(G x_s by source, G x_t)`` on G
  and every pair;
* ``step_b`` (G fixed): ``(1/N) Σ_i [CE_i + CE_i] − (1/N) Σ_i d(σF1_i(G x_t), σF2_i(G x_t))`` on the pairs;
* ``step_c`` (pairs fixed): ``(1/N) Σ_i d(σF1_i(G x_t), σF2_i(G x_t))`` on G, ``num_k`` times.

The pooled source batch and the target batch are one forward each (shared BatchNorm statistics across
sources; Dassl forwards each source chunk separately).
"""

from __future__ import annotations

import torch

from impl_torch.losses import masked_cross_entropy, moment_distance
from impl_torch.methods.base import Algorithm
from impl_torch.methods.mcd import pair_discrepancy


class M3SDA(Algorithm):
    def _pairs(self) -> list[tuple[str, str]]:
        h = self.spec.classifier_names()
        return list(zip(h[0::2], h[1::2]))

    def _source_ce(self, fs: torch.Tensor, ys: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
        eps = self.spec["label_smoothing"]
        total = fs.new_zeros(())
        for i, (a, b) in enumerate(self._pairs()):
            m = ds == i
            total = (
                total
                + masked_cross_entropy(self.nets[a](fs), ys, m, eps)
                + masked_cross_entropy(self.nets[b](fs), ys, m, eps)
            )
        return total / self.spec.num_sources

    def _target_dis(self, ft: torch.Tensor) -> torch.Tensor:
        total = ft.new_zeros(())
        for a, b in self._pairs():
            total = total + pair_discrepancy(self, ft, a, b)
        return total / self.spec.num_sources

    def step_a(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        G = self.nets["features"]
        fs, ft = G(batch["xs"]), G(batch["xt"])
        ce = self._source_ce(fs, batch["ys"], batch["ds"])
        md = moment_distance(fs, batch["ds"], self.spec.num_sources, ft)
        loss = ce + self.spec["md_weight"] * md
        return loss, {"loss": loss, "ce": ce / 2, "moment": md}

    def step_b(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():  # G fixed
            fs, ft = self.nets["features"](batch["xs"]), self.nets["features"](batch["xt"])
        loss = self._source_ce(fs, batch["ys"], batch["ds"]) - self._target_dis(ft)
        return loss, {"step_b": loss}

    def step_c(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        d = self._target_dis(self.nets["features"](batch["xt"]))
        return d, {"discrepancy": d}
