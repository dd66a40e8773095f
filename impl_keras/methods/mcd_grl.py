r"""One-step MCD as in the DRT release (Keras loss code, table row ``mcd_grl``); mirrors
:mod:`impl_torch.methods.mcd_grl`::

    L = CE_ε(F1(f_s), y_s) + CE_ε(F2(f_s), y_s) + γ [ent(σF1(f_t)) + ent(σF2(f_t))]
        − η d(σF1(R f_t), σF2(R f_t)),   R = GRL_λ
"""

from __future__ import annotations

from typing import Any

from keras import ops

from impl_keras.grad import grad_reverse
from impl_keras.losses import cross_entropy, discrepancy, diversity_entropy
from impl_keras.methods.base import Algorithm


def mcd_grl_loss(algo: Algorithm, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
    """The one-step MCD objective (shared with drt_st); ``s["lam"]`` is the GRL coefficient, ``s["eta"]`` the
    discrepancy weight of this update (``eta``, or its ramp)."""
    h = algo.spec.hparams
    n = b["xs"].shape[0]
    feat = ctx("features", ops.concatenate([b["xs"], b["xt"]], axis=0))
    z1, z2 = ctx("head", feat), ctx("head2", feat)
    ce1 = cross_entropy(z1[:n], b["ys"], h["label_smoothing"])
    ce2 = cross_entropy(z2[:n], b["ys"], h["label_smoothing"])
    ent = diversity_entropy(ops.softmax(z1[n:], axis=-1)) + diversity_entropy(ops.softmax(z2[n:], axis=-1))
    rt = grad_reverse(feat[n:], s["lam"])
    d = discrepancy(ops.softmax(ctx("head", rt), axis=-1), ops.softmax(ctx("head2", rt), axis=-1))
    loss = ce1 + ce2 + h["gamma"] * ent - s["eta"] * d
    return loss, {"loss": loss, "ce": 0.5 * (ce1 + ce2), "entropy": ent, "discrepancy": d}


class MCDGRL(Algorithm):
    def mcd_grl_step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        return mcd_grl_loss(self, ctx, b, s)
