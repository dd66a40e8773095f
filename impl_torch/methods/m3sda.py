r"""M3SDA-β (Peng et al. 2019) as in Dassl: a classifier pair per source, moment matching, MCD steps B/C.

With ``m_i`` the rows of source ``i`` (domain id ``i``) and ``CE_i`` the mean over them:

* step A: ``(1/N) Σ_i [CE_i(F1_i(G x_s)) + CE_i(F2_i(G x_s))] + w_md · MD(G x_s by source, G x_t)`` on G and
  every pair;
* step B (G fixed): ``(1/N) Σ_i [CE_i + CE_i] − (1/N) Σ_i d(σF1_i(G x_t), σF2_i(G x_t))`` on the pairs;
* step C (pairs fixed): ``(1/N) Σ_i d(σF1_i(G x_t), σF2_i(G x_t))`` on G, ``num_k`` times.

The pooled source batch and the target batch are one forward each (shared BatchNorm statistics across
sources; Dassl forwards each source chunk separately). Prediction: the mean of the 2N softmaxes.
"""

from __future__ import annotations

import torch

from impl_torch.losses import discrepancy, masked_cross_entropy, moment_distance
from impl_torch.methods.base import Algorithm, f


class M3SDA(Algorithm):
    def _heads(self) -> list[tuple[str, str]]:
        return [(f"head_s{i}_1", f"head_s{i}_2") for i in range(self.spec.num_sources)]

    def _source_ce(self, fs: torch.Tensor, ys: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
        eps = self.spec["label_smoothing"]
        total = fs.new_zeros(())
        for i, (a, b) in enumerate(self._heads()):
            m = ds == i
            total = (
                total
                + masked_cross_entropy(self.nets[a](fs), ys, m, eps)
                + masked_cross_entropy(self.nets[b](fs), ys, m, eps)
            )
        return total / self.spec.num_sources

    def _target_dis(self, ft: torch.Tensor) -> torch.Tensor:
        total = ft.new_zeros(())
        for a, b in self._heads():
            total = total + discrepancy(
                torch.softmax(self.nets[a](ft), -1), torch.softmax(self.nets[b](ft), -1)
            )
        return total / self.spec.num_sources

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        G = self.nets["features"]
        heads = [n for pair in self._heads() for n in pair]
        xs, ys, ds, xt = batch["xs"], batch["ys"], batch["ds"], batch["xt"]
        # step A
        fs, ft = G(xs), G(xt)
        ce = self._source_ce(fs, ys, ds)
        md = moment_distance(fs, ds, self.spec.num_sources, ft)
        loss_a = ce + self.spec["md_weight"] * md
        self.optimize(loss_a, ["features", *heads])
        # step B
        with torch.no_grad():
            fs, ft = G(xs), G(xt)
        loss_b = self._source_ce(fs, ys, ds) - self._target_dis(ft)
        self.optimize(loss_b, heads)
        # step C
        for _ in range(int(self.spec["num_k"])):
            d = self._target_dis(G(xt))
            self.optimize(d, ["features"])
        return {"loss": f(loss_a), "ce": f(ce) / 2, "moment": f(md), "step_b": f(loss_b), "discrepancy": f(d)}

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        fx = self.nets["features"](x)
        ps = [torch.softmax(self.nets[n](fx), -1) for pair in self._heads() for n in pair]
        return torch.stack(ps).mean(0)
