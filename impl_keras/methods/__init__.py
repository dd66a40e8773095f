"""Adaptation methods (Keras 3): one small module per method on :class:`~impl_keras.methods.base.Algorithm`.

``build_algorithm(method_spec, model_spec, dtype=None, compiled=True)``.
"""

from __future__ import annotations

from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_keras.methods.adda import ADDA
from impl_keras.methods.base import Algorithm, NonFiniteLoss
from impl_keras.methods.dann import DANN
from impl_keras.methods.drt_st import DRTST
from impl_keras.methods.m3sda import M3SDA
from impl_keras.methods.mcd import MCD
from impl_keras.methods.mcd_grl import MCDGRL
from impl_keras.methods.source_only import SourceOnly

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
    spec: MethodSpec, model_spec: ModelSpec, *, dtype: str | None = None, compiled: bool = True
) -> Algorithm:
    """The algorithm of ``spec.name`` with networks built from ``model_spec`` in ``dtype`` (default
    floatx)."""
    return ALGORITHMS[spec.name](spec, model_spec, dtype=dtype, compiled=compiled)


__all__ = ["ALGORITHMS", "Algorithm", "NonFiniteLoss", "build_algorithm"]
