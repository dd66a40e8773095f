"""Helpers shared by the Keras backbones."""

from __future__ import annotations

from typing import Any

from harness.spec.layer import DRTConvSpec


def drt_conv(spec: DRTConvSpec, name: str, dtype: Any = None) -> Any:
    """A built :class:`impl_keras.layers.DRTConv2D` (NHWC) for ``spec`` (static spec = plain conv)."""
    from impl_keras.layers.drt_conv import DRTConv2D

    layer = DRTConv2D(spec, dtype=dtype, name=name)
    if not layer.built:
        layer.build((None, None, None, spec.in_channels))
    return layer
