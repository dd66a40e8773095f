"""Load a torchvision-format ResNet checkpoint into the static part of a Keras model (NHWC).

Same contract as :mod:`impl_torch.pretrained`: strict check of every static tensor
(:func:`harness.weights.checkpoints.match_pretrained`), DRT tensors reported as *new* (fresh initialisation
kept), ``fc.*`` ignored, a :class:`~harness.errors.WeightsError` listing every missing / mis-shaped /
unexpected tensor. A ``.pth``/``.pt`` file is read with torch (``weights_only=True``; torch must be
installed); a neutral ``.safetensors``/``.npz`` with the same names (e.g. written by
``python -m harness.weights``) needs no torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.weights.checkpoints import PretrainedReport, match_pretrained, pretrained_arrays, read_arrays
from impl_keras.layers.basic import neutral_shapes


def load_torchvision(
    model: Any, source: str | os.PathLike | Mapping[str, Any], *, ignore_prefixes: tuple[str, ...] = ("fc.",)
) -> PretrainedReport:
    """Load ``source`` (a path or a dict of arrays) into the static part of ``model`` (a Keras ``DRTModel`` —
    its
    ``features`` — or a feature extractor); returns what was loaded/new/ignored."""
    if isinstance(source, Mapping):
        arrays = {k: np.asarray(v) for k, v in source.items()}
        where = "state dict"
    else:
        arrays = read_arrays(source)
        where = str(source)
    feats = model.features if hasattr(model, "features") else model
    expected = neutral_shapes(feats)
    report = match_pretrained(expected, arrays, ignore_prefixes=ignore_prefixes, source=where)
    feats.from_neutral(pretrained_arrays(expected, arrays, report), strict=False)
    return report
