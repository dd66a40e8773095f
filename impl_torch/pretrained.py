"""Load a torchvision-format ResNet checkpoint (a local ``.pth`` state dict) into the static part of a model.

:func:`load_torchvision` checks the file strictly against the feature extractor
(:func:`harness.weights.checkpoints.match_pretrained`): every static tensor (convs' ``weight`` = W0, BatchNorm
parameters and running statistics) must be present with its exact shape; the DRT tensors (``bases``,
``router.*``) are reported as *new* and keep their fresh initialisation (the methods give them 10× learning
rate); ``fc.*`` is ignored (the head is task-specific). Any missing, mis-shaped or unexpected tensor raises a
:class:`~harness.errors.WeightsError` listing all of them. Nothing is downloaded, and nothing is silently
left at its random initialisation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.weights.checkpoints import PretrainedReport, match_pretrained, pretrained_arrays, read_arrays


def _features(model: nn.Module) -> nn.Module:
    return model.features if hasattr(model, "features") else model


def load_torchvision(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    ignore_prefixes: tuple[str, ...] = ("fc.",),
) -> PretrainedReport:
    """Load ``source`` (a ``.pth``/``.pt``/``.safetensors``/``.npz`` path or a state dict) into the static
    part of
    ``model`` (a ``DRTModel`` — its ``features`` — or a feature extractor); returns what was
    loaded/new/ignored."""
    if isinstance(source, Mapping):
        arrays = {
            k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
            for k, v in source.items()
        }
        where = "state dict"
    else:
        arrays = read_arrays(source)
        where = str(source)
    feats = _features(model)
    state = feats.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    report = match_pretrained(expected, arrays, ignore_prefixes=ignore_prefixes, source=where)
    with torch.no_grad():
        for name, value in pretrained_arrays(expected, arrays, report).items():
            t = state[name]
            t.copy_(torch.as_tensor(np.asarray(value)).to(dtype=t.dtype, device=t.device))
    return report
