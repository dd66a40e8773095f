r"""CDAN (Long et al., NeurIPS 2018, "Conditional Adversarial Domain Adaptation"), PyTorch: one step on G, F
and D (table row ``cdan``) of::

    L = CE_ε(z_s, y_s) + w · domain,    w = dann_weight

with ``f_s = G(x_s)``, ``f_t = G(x_t)`` (separate forwards, as our DANN), ``z = F(f)`` and ``g = σ(z)``
*detached* (the release detaches the softmax in its CDAN loss). The critic ``D`` sees ``R T(f, g)``,
``R = GRL_{λ_p}``, ``λ_p = 2/(1+exp(-γp)) - 1`` (the row's ``grl = "dann"``, the release's ``calc_coeff``);
gradients reach G through ``f`` only.

Conditioning map ``T`` (:class:`CDANMap`, the row's ``fixed`` network ``cdan_map``), ``d`` = feature width,
``C`` = classes:

* ``d·C ≤ 4096`` (:data:`harness.method_table.CDAN_MULTILINEAR_MAX`): the multilinear map
  ``T(f, g) = flatten(g ⊗ f)`` of shape ``B × (C·d)``, ``T[b, c·d + j] = g[b, c] · f[b, j]`` (class-major,
  the release's ``bmm(g.unsqueeze(2), f.unsqueeze(1)).view(-1, C·d)``); ``cdan_map`` holds no tensors;
* ``d·C > 4096``: the randomized map ``T(f, g) = ((f R_f) / √r) ⊙ (g R_g)``, ``r = cdan_random_dim``, with
  the fixed buffers ``rf`` (d × r) and ``rg`` (C × r) drawn N(0, 1) from torch's global generator when the
  network is built (saved with the weights and checkpoints, never trained).

Domain loss, ``ℓ(z, t) = max(z,0) − z·t + log(1 + e^{−|z|})`` the per-sample BCE of a critic logit:

* plain CDAN: ``domain = ½[mean_{b∈s} ℓ(D_b, 1) + mean_{b∈t} ℓ(D_b, 0)]``;
* CDAN+E (``cdan_entropy``): ``H_b = −Σ_c g_bc log g_bc`` (exact, via ``log_softmax``; the release adds
  1e-5 inside the log), ``w_b = 1 + exp(−H_b)`` (detached), ``v_b = w_b / Σ_{b'∈s} w_b'`` for the B source
  samples and ``v_b = w_b / Σ_{b'∈t} w_b'`` for the B target samples, and over the concatenated 2B samples
  ``domain = Σ_b v_b ℓ_b / Σ_b v_b`` (= ½[Σ_s v ℓ + Σ_t v ℓ], since each half's ``v`` sums to 1).

Metrics ``loss``, ``ce``, ``domain``, ``grl_lambda``. Mirrors :mod:`impl_keras.methods.cdan`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.method_table import CDAN_MULTILINEAR_MAX
from impl_torch.losses import bce_with_logits, cross_entropy, grad_reverse
from impl_torch.methods.base import Algorithm


class CDANMap(nn.Module):
    """The conditioning map ``T(f, g)``: multilinear (``random_dim=None``, no tensors) or randomized with the
    fixed N(0, 1) buffers ``rf`` (d × r) and ``rg`` (C × r)."""

    def __init__(self, feature_dim: int, num_classes: int, random_dim: int | None) -> None:
        super().__init__()
        self.feature_dim, self.num_classes, self.random_dim = feature_dim, num_classes, random_dim
        if random_dim is not None:
            self.register_buffer("rf", torch.randn(feature_dim, random_dim))
            self.register_buffer("rg", torch.randn(num_classes, random_dim))

    @property
    def randomized(self) -> bool:
        return self.random_dim is not None

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.random_dim is None:
            return (g.unsqueeze(2) * f.unsqueeze(1)).reshape(f.shape[0], -1)
        return (f @ self.rf) / math.sqrt(self.random_dim) * (g @ self.rg)


def per_sample_bce(z: torch.Tensor, target: float) -> torch.Tensor:
    """``max(z,0) − z·t + log(1 + e^{−|z|})`` per logit (no reduction)."""
    return torch.clamp(z, min=0) - z * target + torch.log1p(torch.exp(-torch.abs(z)))


def entropy_weights(z: torch.Tensor) -> torch.Tensor:
    """``w_b / Σ_b' w_b'`` with ``w_b = 1 + exp(−H(σ(z_b)))`` (detached)."""
    z = z.detach()
    h = -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)
    w = 1.0 + torch.exp(-h)
    return w / w.sum()


class CDAN(Algorithm):
    def build_fixed(self, name: str) -> nn.Module:
        d, c = self.model_spec.feature_dim, self.spec.num_classes
        randomized = d * c > CDAN_MULTILINEAR_MAX
        return CDANMap(d, c, int(self.spec["cdan_random_dim"]) if randomized else None)

    def step(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        lam = s["lam"]
        G, F, D, T = self.nets["features"], self.nets["head"], self.nets["critic"], self.nets["cdan_map"]
        fs, ft = G(batch["xs"]), G(batch["xt"])
        zs, zt = F(fs), F(ft)
        ce = cross_entropy(zs, batch["ys"], self.spec["label_smoothing"])
        gs, gt = torch.softmax(zs, -1).detach(), torch.softmax(zt, -1).detach()
        ds = D(grad_reverse(T(fs, gs), lam)).reshape(-1)
        dt = D(grad_reverse(T(ft, gt), lam)).reshape(-1)
        if self.spec["cdan_entropy"]:
            vs, vt = entropy_weights(zs), entropy_weights(zt)
            num = (vs * per_sample_bce(ds, 1.0)).sum() + (vt * per_sample_bce(dt, 0.0)).sum()
            dom = num / (vs.sum() + vt.sum())
        else:
            dom = 0.5 * (bce_with_logits(ds, 1.0) + bce_with_logits(dt, 0.0))
        loss = ce + self.spec["dann_weight"] * dom
        return loss, {"loss": loss, "ce": ce, "domain": dom, "grl_lambda": lam}
