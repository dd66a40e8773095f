"""Adaptation methods (PyTorch): one small module per method, all on
:class:`~impl_torch.methods.base.Algorithm`.

``build_algorithm(method_spec, model_spec, dtype=None, device=None)`` returns the method's algorithm object.
"""

from __future__ import annotations

import torch

from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_torch.methods.adda import ADDA
from impl_torch.methods.base import Algorithm, NonFiniteLoss
from impl_torch.methods.dann import DANN
from impl_torch.methods.drt_st import DRTST
from impl_torch.methods.m3sda import M3SDA
from impl_torch.methods.mcd import MCD
from impl_torch.methods.mcd_grl import MCDGRL
from impl_torch.methods.source_only import SourceOnly

ALGORITHMS: dict[str, type[Algorithm]] = {
    "source_only": SourceOnly,
    "dann": DANN,
    "adda": ADDA,
    "mcd": MCD,
    "mcd_grl": MCDGRL,
    "m3sda": M3SDA,
    "drt_st": DRTST,
}


def build_algorithm(
    spec: MethodSpec,
    model_spec: ModelSpec,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Algorithm:
    """The algorithm of ``spec.name`` with its networks built from ``model_spec`` (then cast/moved)."""
    algo = ALGORITHMS[spec.name](spec, model_spec)
    if dtype is not None or device is not None:
        algo.to(device=device, dtype=dtype)
        algo._make_optimizers()  # optimisers must reference the moved parameters
    return algo


__all__ = ["ALGORITHMS", "Algorithm", "NonFiniteLoss", "build_algorithm"]
