"""Collect the dynamic coefficients of a trained PyTorch DRT model (see :mod:`harness.coefficients`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import coefficients as C
from impl_torch.layers import DRTConv2d


def dynamic_layers(net: nn.Module) -> list[DRTConv2d]:
    """The dynamic DRT layers of ``net`` in module (= forward) order."""
    return [m for m in net.modules() if isinstance(m, DRTConv2d) and m.spec.dynamic]


@torch.no_grad()
def write(
    algo: Any, suite: Any, target: str, path: Path | str, device: torch.device, seed: int = 0
) -> Path | None:
    """Run ``algo``'s feature extractor in eval mode over the probe set and save the coefficients; ``None``
    when the model has no dynamic layer."""
    from impl_torch.data import make_loader

    net = algo.nets[C.features_net_name(algo.spec.name, algo.stage)]
    layers = dynamic_layers(net)
    if not layers:
        return None
    probe = C.probe_split(suite, seed=seed)
    loader = make_loader(probe, suite.transform(False), 256, train=False)
    dtype = next(net.parameters()).dtype
    pis: list[list[np.ndarray]] = [[] for _ in layers]
    lams: list[list[np.ndarray]] = [[] for _ in layers]
    doms, labels = [], []
    was = net.training
    net.eval()
    try:
        for x, y, d in loader:
            net(x.to(device=device, dtype=dtype))
            for i, m in enumerate(layers):
                if "pi" in m.last_coefficients:
                    pis[i].append(m.last_coefficients["pi"].float().cpu().numpy())
                if "lam" in m.last_coefficients:
                    lams[i].append(m.last_coefficients["lam"].float().cpu().numpy().reshape(len(y), -1))
            doms.append(np.asarray(d))
            labels.append(np.asarray(y))
    finally:
        net.train(was)
    return C.save(
        path,
        [np.concatenate(p) for p in pis if p],
        [np.concatenate(v) for v in lams if v],
        np.concatenate(doms),
        suite.domains,
        np.concatenate(labels),
        target,
    )
