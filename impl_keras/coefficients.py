"""Collect the dynamic coefficients of a trained Keras DRT model (see :mod:`harness.coefficients`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from harness import coefficients as C
from impl_keras.layers.drt_conv import DRTConv2D
from impl_keras.weights import _children


def dynamic_layers(net: Any) -> list[Any]:
    """The DRT layers of ``net`` with input-dependent coefficients (``spec.has_coefficients``: not
    ``static``, not ``sr_uniform``) in neutral-name (= torch module, forward) order."""
    if isinstance(net, DRTConv2D):
        return [net] if net.spec.has_coefficients else []
    out: list[Any] = []
    for child in _children(net).values():
        out += dynamic_layers(child)
    return out


def write(algo: Any, suite: Any, target: str, path: Path | str, seed: int = 0) -> Path | None:
    """Run ``algo``'s feature extractor in inference mode over the probe set and save the coefficients;
    ``None`` when the model has no layer with input-dependent coefficients (static, sr_uniform)."""
    from impl_keras.data import make_loader

    net = algo.nets[C.features_net_name(algo.spec.name, algo.stage)]
    layers = dynamic_layers(net)
    if not layers:
        return None
    loader = make_loader(C.probe_split(suite, seed=seed), suite.transform(False), 256, train=False)

    def batches() -> Iterator[tuple[list[dict[str, np.ndarray]], np.ndarray, np.ndarray]]:
        for x, y, d in loader:
            net(np.asarray(x, dtype=algo.dtype), training=False)
            coeffs = [
                {k: keras.ops.convert_to_numpy(v) for k, v in m.last_coefficients.items()} for m in layers
            ]
            yield coeffs, np.asarray(y), np.asarray(d)

    return C.save_batches(path, batches(), suite.domains, target)
