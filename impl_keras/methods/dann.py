r"""DANN (Keras): ``L = CE_ε + w·½[BCE(D(R G x_s), 1) + BCE(D(R G x_t), 0)]``, ``R = GRL_{λ_p}``; one step on
G, F and D (table row ``dann``); mirrors :mod:`impl_torch.methods.dann`."""

from __future__ import annotations

from typing import Any

from impl_keras.grad import grad_reverse
from impl_keras.losses import bce_with_logits, cross_entropy
from impl_keras.methods.base import Algorithm


class DANN(Algorithm):
    def step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        fs = ctx("features", b["xs"])
        ft = ctx("features", b["xt"])
        ce = cross_entropy(ctx("head", fs), b["ys"], self.spec["label_smoothing"])
        ds = ctx("critic", grad_reverse(fs, s["lam"]))
        dt = ctx("critic", grad_reverse(ft, s["lam"]))
        dom = 0.5 * (bce_with_logits(ds, 1.0) + bce_with_logits(dt, 0.0))
        loss = ce + self.spec["dann_weight"] * dom
        return loss, {"loss": loss, "ce": ce, "domain": dom, "grl_lambda": s["lam"]}
