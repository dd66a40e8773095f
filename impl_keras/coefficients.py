"""Collect the dynamic coefficients of a trained Keras DRT model (see :mod:`harness.coefficients`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from harness import coefficients as C
from impl_keras.layers.drt_conv import DRTConv2D
from impl_keras.weights import _children


def dynamic_layers(net: Any) -> list[Any]:
    """The dynamic DRT layers of ``net`` in neutral-name (= torch module, forward) order."""
    if isinstance(net, DRTConv2D):
        return [net] if net.spec.dynamic else []
    out: list[Any] = []
    for child in _children(net).values():
        out += dynamic_layers(child)
    return out


def write(algo: Any, suite: Any, target: str, path: Path | str, seed: int = 0) -> Path | None:
    """Run ``algo``'s feature extractor in inference mode over the probe set and save the coefficients;
    ``None`` when the model has no dynamic layer."""
    from impl_keras.data import make_loader

    net = algo.nets[C.features_net_name(algo.spec.name, algo.stage)]
    layers = dynamic_layers(net)
    if not layers:
        return None
    probe = C.probe_split(suite, seed=seed)
    loader = make_loader(probe, suite.transform(False), 256, train=False)
    pis: list[list[np.ndarray]] = [[] for _ in layers]
    lams: list[list[np.ndarray]] = [[] for _ in layers]
    doms, labels = [], []
    for x, y, d in loader:
        net(np.asarray(x, dtype=algo.dtype), training=False)
        for i, m in enumerate(layers):
            coeffs = m.last_coefficients
            if "pi" in coeffs:
                pis[i].append(np.asarray(keras.ops.convert_to_numpy(coeffs["pi"]), dtype=np.float32))
            if "lam" in coeffs:
                lam = np.asarray(keras.ops.convert_to_numpy(coeffs["lam"]), dtype=np.float32)
                lams[i].append(lam.reshape(len(y), -1))
        doms.append(np.asarray(d))
        labels.append(np.asarray(y))
    return C.save(
        path,
        [np.concatenate(p) for p in pis if p],
        [np.concatenate(v) for v in lams if v],
        np.concatenate(doms),
        suite.domains,
        np.concatenate(labels),
        target,
    )
