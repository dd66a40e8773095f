"""Neutral weights for the PyTorch implementation: the ``state_dict`` *is* the neutral format.

``to_neutral(module)`` copies every ``state_dict`` tensor to numpy (names and layouts unchanged: OIHW convs,
``(out, in)`` Linear weights, BatchNorm buffers). ``from_neutral(module, arrays, strict=True)`` validates
names and shapes first (a :class:`~harness.errors.WeightsError` lists every missing, unexpected and mis-shaped
tensor) and then copies the values in, converting to each parameter's dtype and device.

DRT routing: ``*.router.fc1.weight`` is ``(hidden, C_r)`` with ``C_r`` the routing input's channels (the layer
input, or the residual block's input with block routing, ``ModelSpec.route``); weights of a model built with
the other routing fail the shape check, and the error says so (:func:`harness.weights.neutral.route_hint`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from harness.errors import WeightsError
from harness.weights.neutral import route_hint, validate


def to_neutral(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's ``state_dict`` as numpy arrays (bfloat16/half are widened to float32)."""
    out: dict[str, np.ndarray] = {}
    for name, t in module.state_dict().items():
        t = t.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        out[name] = t.numpy().copy()
    return out


def from_neutral(module: nn.Module, arrays: Mapping[str, np.ndarray], strict: bool = True) -> None:
    """Load neutral arrays into ``module`` (strict by default; values cast to the module's dtypes)."""
    state = module.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        present = validate(shapes, arrays, strict=strict, context=type(module).__name__)
    except WeightsError as e:
        raise route_hint(e) from None
    with torch.no_grad():
        for name in present:
            target = state[name]
            target.copy_(
                torch.as_tensor(np.asarray(arrays[name])).to(dtype=target.dtype, device=target.device)
            )
