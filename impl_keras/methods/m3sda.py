r"""M3SDA-β (Keras loss code, table row ``m3sda``); mirrors :mod:`impl_torch.methods.m3sda`:

* ``step_a``: ``(1/N) Σ_i [CE_i(F1_i) + CE_i(F2_i)] + w_md · MD`` on G and every pair;
* ``step_b`` (G fixed): ``(1/N) Σ_i [CE_i + CE_i] − (1/N) Σ_i d_i`` on the pairs;
* ``step_c``: ``(1/N) Σ_i d_i`` on G, ``num_k`` times.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.losses import masked_cross_entropy, moment_distance
from impl_keras.methods.base import Algorithm
from impl_keras.methods.mcd import pair_discrepancy


class M3SDA(Algorithm):
    def _pairs(self) -> list[tuple[str, str]]:
        h = self.spec.classifier_names()
        return list(zip(h[0::2], h[1::2]))

    def _source_ce(self, ctx: Any, fs: Any, ys: Any, ds: Any) -> Any:
        eps = self.spec["label_smoothing"]
        total = 0.0
        for i, (a, b) in enumerate(self._pairs()):
            m = ops.equal(ds, i)
            total = (
                total
                + masked_cross_entropy(ctx(a, fs), ys, m, eps)
                + masked_cross_entropy(ctx(b, fs), ys, m, eps)
            )
        return total / self.spec.num_sources

    def _target_dis(self, ctx: Any, ft: Any) -> Any:
        total = 0.0
        for a, b in self._pairs():
            total = total + pair_discrepancy(ctx, ft, a, b)
        return total / self.spec.num_sources

    def step_a(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs, ft = ctx("features", b["xs"]), ctx("features", b["xt"])
        ce = self._source_ce(ctx, fs, b["ys"], b["ds"])
        md = moment_distance(fs, b["ds"], self.spec.num_sources, ft)
        loss = ce + self.spec["md_weight"] * md
        return loss, {"loss": loss, "ce": ce / 2, "moment": md}

    def step_b(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs, ft = ctx("features", b["xs"]), ctx("features", b["xt"])
        loss = self._source_ce(ctx, fs, b["ys"], b["ds"]) - self._target_dis(ctx, ft)
        return loss, {"step_b": loss}

    def step_c(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        d = self._target_dis(ctx, ctx("features", b["xt"]))
        return d, {"discrepancy": d}
