"""Collect the dynamic coefficients of a trained PyTorch DRT model (see :mod:`harness.coefficients`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import coefficients as C
from impl_torch.layers import DRTConv2d


def dynamic_layers(net: nn.Module) -> list[DRTConv2d]:
    """The DRT layers of ``net`` with input-dependent coefficients (``spec.has_coefficients``: not
    ``static``, not the capacity control ``sr_uniform`` whose π is the constant 1/K) in module (= forward)
    order."""
    return [m for m in net.modules() if isinstance(m, DRTConv2d) and m.spec.has_coefficients]


def write(
    algo: Any, suite: Any, target: str, path: Path | str, device: torch.device, seed: int = 0
) -> Path | None:
    """Run ``algo``'s feature extractor in eval mode over the probe set and save the coefficients; ``None``
    when the model has no layer with input-dependent coefficients (static, sr_uniform)."""
    from impl_torch.data import make_loader

    net = algo.nets[C.features_net_name(algo.spec.name, algo.stage)]
    layers = dynamic_layers(net)
    if not layers:
        return None
    loader = make_loader(C.probe_split(suite, seed=seed), suite.transform(False), 256, train=False)
    dtype = next(net.parameters()).dtype

    @torch.no_grad()
    def batches() -> Iterator[tuple[list[dict[str, np.ndarray]], np.ndarray, np.ndarray]]:
        for x, y, d in loader:
            net(x.to(device=device, dtype=dtype))
            coeffs = [{k: v.float().cpu().numpy() for k, v in m.last_coefficients.items()} for m in layers]
            yield coeffs, y.numpy(), d.numpy()

    was = net.training
    net.eval()
    try:
        return C.save_batches(path, batches(), suite.domains, target)
    finally:
        net.train(was)
