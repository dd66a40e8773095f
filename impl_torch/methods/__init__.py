"""Adaptation methods (PyTorch): per-step loss code only, one small module per method.

The module and class of a method come from its row of :mod:`harness.method_table` (``module``, ``cls``); a
new method needs no line here. ``build_algorithm(method_spec, model_spec, dtype=None, device=None)``.
"""

from __future__ import annotations

import importlib

import torch

from harness.errors import NonFiniteLoss
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_torch.methods.base import Algorithm


def algorithm_class(spec: MethodSpec) -> type[Algorithm]:
    """The class named by the method's table row, from ``impl_torch.methods.<module>``."""
    module = importlib.import_module(f"impl_torch.methods.{spec.row.module}")
    return getattr(module, spec.row.cls)


def build_algorithm(
    spec: MethodSpec,
    model_spec: ModelSpec,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Algorithm:
    """The algorithm of ``spec.name`` with its networks built from ``model_spec`` (then cast/moved)."""
    algo = algorithm_class(spec)(spec, model_spec)
    if dtype is not None or device is not None:
        algo.to(device=device, dtype=dtype)
        algo.make_optimizers()  # optimisers must reference the moved parameters
    return algo


__all__ = ["Algorithm", "NonFiniteLoss", "algorithm_class", "build_algorithm"]
