r"""CDAN (Long et al., NeurIPS 2018), Keras loss code (table row ``cdan``); mirrors
:mod:`impl_torch.methods.cdan` operation by operation::

    L = CE_ε(z_s, y_s) + w · domain,    w = dann_weight

``f_s = G(x_s)``, ``f_t = G(x_t)`` (separate forwards), ``z = F(f)``, ``g = σ(z)`` detached
(``ops.stop_gradient``); the critic sees ``R T(f, g)``, ``R = GRL_{λ_p}`` (``s["lam"]``, the DANN schedule).

Conditioning map ``T`` (:class:`CDANMap`, the row's ``fixed`` network ``cdan_map``, run through ``ctx`` so
its matrices are explicit values of the compiled step):

* ``d·C ≤ 4096``: multilinear ``T(f, g) = flatten(g ⊗ f)``, ``T[b, c·d + j] = g[b, c] · f[b, j]``
  (class-major, as torch and the release); no tensors;
* ``d·C > 4096``: randomized ``T(f, g) = ((f R_f) / √r) ⊙ (g R_g)``, ``r = cdan_random_dim``, with two
  non-trainable weights ``rf`` (d × r), ``rg`` (C × r), N(0, 1) at build time; their neutral names are
  torch's buffer names (``rf``, ``rg``), so :func:`impl_torch.weights.to_neutral` output loads here.

Domain loss, ``ℓ(z, t) = max(z,0) − z·t + log(1 + e^{−|z|})`` per sample:

* plain: ``domain = ½[mean_{b∈s} ℓ(D_b, 1) + mean_{b∈t} ℓ(D_b, 0)]``;
* CDAN+E (``cdan_entropy``): ``H_b = −Σ_c g_bc log g_bc`` (via ``log_softmax``), ``w_b = 1 + exp(−H_b)``
  (detached), ``v_b = w_b / Σ_{b'∈s} w_b'`` on source, ``w_b / Σ_{b'∈t} w_b'`` on target, and
  ``domain = Σ_b v_b ℓ_b / Σ_b v_b`` over the concatenated 2B samples.

Metrics ``loss``, ``ce``, ``domain``, ``grl_lambda``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from harness.method_table import CDAN_MULTILINEAR_MAX
from impl_keras.grad import grad_reverse
from impl_keras.layers.basic import check_arrays
from impl_keras.losses import bce_with_logits, cross_entropy
from impl_keras.methods.base import Algorithm


class CDANMap(keras.layers.Layer):
    """``T(f, g)`` called as ``layer((f, g))``: multilinear (``random_dim=None``, no weights) or randomized
    with the non-trainable N(0, 1) weights ``rf`` (d × r), ``rg`` (C × r). Neutral protocol as
    :mod:`impl_keras.layers.basic` (names = the torch buffers of :class:`impl_torch.methods.cdan.CDANMap`)."""

    def __init__(self, feature_dim: int, num_classes: int, random_dim: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature_dim, self.num_classes, self.random_dim = feature_dim, num_classes, random_dim
        if random_dim is not None:
            init = keras.initializers.RandomNormal(0.0, 1.0)
            self.rf = self.add_weight(
                shape=(feature_dim, random_dim), initializer=init, trainable=False, name="rf"
            )
            self.rg = self.add_weight(
                shape=(num_classes, random_dim), initializer=init, trainable=False, name="rg"
            )
        self.built = True

    @property
    def randomized(self) -> bool:
        return self.random_dim is not None

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        f, g = inputs
        if self.random_dim is None:
            return ops.reshape(g[:, :, None] * f[:, None, :], (-1, self.num_classes * self.feature_dim))
        return ops.matmul(f, self.rf) / math.sqrt(self.random_dim) * ops.matmul(g, self.rg)

    def neutral_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.random_dim is None:
            return {}
        return {"rf": (self.feature_dim, self.random_dim), "rg": (self.num_classes, self.random_dim)}

    def to_neutral(self) -> dict[str, np.ndarray]:
        if self.random_dim is None:
            return {}
        return {"rf": ops.convert_to_numpy(self.rf), "rg": ops.convert_to_numpy(self.rg)}

    def from_neutral(self, arrays: Mapping[str, Any], strict: bool = True) -> None:
        check_arrays(self.neutral_shapes(), arrays, strict=strict, where=self.name)
        for k in self.neutral_shapes():
            if k in arrays:
                var = getattr(self, k)
                var.assign(np.array(arrays[k], dtype=keras.backend.standardize_dtype(var.dtype), copy=True))


def per_sample_bce(z: Any, target: float) -> Any:
    """``max(z,0) − z·t + log(1 + e^{−|z|})`` per logit (no reduction)."""
    return ops.maximum(z, 0.0) - z * target + ops.log1p(ops.exp(-ops.abs(z)))


def entropy_weights(z: Any) -> Any:
    """``w_b / Σ_b' w_b'`` with ``w_b = 1 + exp(−H(σ(z_b)))`` (detached)."""
    z = ops.stop_gradient(z)
    h = -ops.sum(ops.softmax(z, axis=-1) * ops.log_softmax(z, axis=-1), axis=-1)
    w = 1.0 + ops.exp(-h)
    return w / ops.sum(w)


class CDAN(Algorithm):
    def build_fixed(self, name: str) -> keras.layers.Layer:
        d, c = self.model_spec.feature_dim, self.spec.num_classes
        randomized = d * c > CDAN_MULTILINEAR_MAX
        r = int(self.spec["cdan_random_dim"]) if randomized else None
        return CDANMap(d, c, r, dtype=self.dtype, name=name)

    def step(self, ctx: Any, b: dict, s: dict) -> tuple[Any, dict]:
        lam = s["lam"]
        fs, ft = ctx("features", b["xs"]), ctx("features", b["xt"])
        zs, zt = ctx("head", fs), ctx("head", ft)
        ce = cross_entropy(zs, b["ys"], self.spec["label_smoothing"])
        gs = ops.stop_gradient(ops.softmax(zs, axis=-1))
        gt = ops.stop_gradient(ops.softmax(zt, axis=-1))
        ds = ops.reshape(ctx("critic", grad_reverse(ctx("cdan_map", (fs, gs)), lam)), (-1,))
        dt = ops.reshape(ctx("critic", grad_reverse(ctx("cdan_map", (ft, gt)), lam)), (-1,))
        if self.spec["cdan_entropy"]:
            vs, vt = entropy_weights(zs), entropy_weights(zt)
            num = ops.sum(vs * per_sample_bce(ds, 1.0)) + ops.sum(vt * per_sample_bce(dt, 0.0))
            dom = num / (ops.sum(vs) + ops.sum(vt))
        else:
            dom = 0.5 * (bce_with_logits(ds, 1.0) + bce_with_logits(dt, 0.0))
        loss = ce + self.spec["dann_weight"] * dom
        return loss, {"loss": loss, "ce": ce, "domain": dom, "grl_lambda": lam}
