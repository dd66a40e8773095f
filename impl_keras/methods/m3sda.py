r"""M3SDA-β (Keras); mirrors :mod:`impl_torch.methods.m3sda` (see its docstring)."""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.losses import masked_cross_entropy, moment_distance
from impl_keras.methods.base import Algorithm
from impl_keras.methods.mcd import pair_discrepancy
from impl_keras.numerics import mean


class M3SDA(Algorithm):
    def _heads(self) -> list[tuple[str, str]]:
        return [(f"head_s{i}_1", f"head_s{i}_2") for i in range(self.spec.num_sources)]

    def _source_ce(self, ctx: Any, fs: Any, ys: Any, ds: Any) -> Any:
        eps = self.spec["label_smoothing"]
        total = 0.0
        for i, (a, b) in enumerate(self._heads()):
            m = ops.equal(ds, i)
            total = (
                total
                + masked_cross_entropy(ctx(a, fs), ys, m, eps)
                + masked_cross_entropy(ctx(b, fs), ys, m, eps)
            )
        return total / self.spec.num_sources

    def _target_dis(self, ctx: Any, ft: Any) -> Any:
        total = 0.0
        for a, b in self._heads():
            total = total + pair_discrepancy(ctx, ft, a, b)
        return total / self.spec.num_sources

    def _step_a(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs, ft = ctx("features", b["xs"]), ctx("features", b["xt"])
        ce = self._source_ce(ctx, fs, b["ys"], b["ds"])
        md = moment_distance(fs, b["ds"], self.spec.num_sources, ft)
        loss = ce + self.spec["md_weight"] * md
        return loss, {"loss": loss, "ce": ce / 2, "moment": md}

    def _step_b(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs, ft = ctx("features", b["xs"]), ctx("features", b["xt"])
        loss = self._source_ce(ctx, fs, b["ys"], b["ds"]) - self._target_dis(ctx, ft)
        return loss, {"step_b": loss}

    def _step_c(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        d = self._target_dis(ctx, ctx("features", b["xt"]))
        return d, {"discrepancy": d}

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        heads = [n for pair in self._heads() for n in pair]
        _, ma = self.run_step("a", self._step_a, ["features", *heads], batch)
        _, mb = self.run_step("b", self._step_b, heads, batch)
        for _ in range(int(self.spec["num_k"])):
            _, mc = self.run_step("c", self._step_c, ["features"], batch)
        return {**ma, **mb, **mc}

    def _predict(self, ctx: Any, x: Any) -> Any:
        fx = ctx("features", x, False)
        ps = [ops.softmax(ctx(n, fx, False), axis=-1) for pair in self._heads() for n in pair]
        return mean(ops.stack(ps), axis=0)
