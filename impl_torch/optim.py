"""Optimisers and learning-rate groups (PyTorch) from :class:`harness.spec.method.OptimSpec`.

torch's own ``SGD``/``Adam`` are the reference semantics (weight decay added to the gradient; SGD
``buf = m·buf + g``, ``w -= lr·buf``); :mod:`impl_keras.optim` reimplements exactly these. Each network gets
its own optimiser with up to two parameter groups: ``pretrained`` (lr) and ``new`` (lr_new); the base rates
are kept in ``group["base_lr"]`` and the schedule multiplies them (:func:`set_lr_factor`).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.spec.method import OptimSpec


def is_new_parameter(net: str, name: str, pretrained: bool) -> bool:
    """A parameter trains at ``lr_new`` unless it is a static backbone tensor of a pretrained model."""
    if not pretrained or not net.endswith("features"):
        return True
    from impl_torch.backbones import is_drt_parameter

    return is_drt_parameter(name)


def make_optimizer(net: str, module: nn.Module, spec: OptimSpec, pretrained: bool) -> torch.optim.Optimizer:
    """One optimiser for ``module`` with ``pretrained``/``new`` groups (empty groups dropped)."""
    old, new = [], []
    for n, p in module.named_parameters():
        if p.requires_grad:
            (new if is_new_parameter(net, n, pretrained) else old).append(p)
    groups = [
        g
        for g in (
            {"params": old, "lr": spec.lr, "base_lr": spec.lr, "group": "pretrained"},
            {"params": new, "lr": spec.lr_new, "base_lr": spec.lr_new, "group": "new"},
        )
        if g["params"]
    ]
    if spec.kind == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.kind == "adam":
        return torch.optim.Adam(
            groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay
        )
    raise ValueError(f"unknown optimiser kind {spec.kind!r}")


def set_lr_factor(opt: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's ``lr`` to ``base_lr · factor``."""
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor
