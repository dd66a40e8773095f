"""Adaptation methods (Keras 3): per-step loss code only, one small module per method.

The module and class of a method come from its row of :mod:`harness.method_table` (``module``, ``cls``); a
new method needs no line here. ``build_algorithm(method_spec, model_spec, dtype=None, compiled=True)``.
"""

from __future__ import annotations

import importlib

from harness.errors import NonFiniteLoss
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_keras.methods.base import Algorithm


def algorithm_class(spec: MethodSpec) -> type[Algorithm]:
    """The class named by the method's table row, from ``impl_keras.methods.<module>``."""
    module = importlib.import_module(f"impl_keras.methods.{spec.row.module}")
    return getattr(module, spec.row.cls)


def build_algorithm(
    spec: MethodSpec, model_spec: ModelSpec, *, dtype: str | None = None, compiled: bool = True
) -> Algorithm:
    """The algorithm of ``spec.name`` with networks built from ``model_spec`` in ``dtype`` (default
    floatx)."""
    return algorithm_class(spec)(spec, model_spec, dtype=dtype, compiled=compiled)


__all__ = ["Algorithm", "NonFiniteLoss", "algorithm_class", "build_algorithm"]
