"""Backbones and heads (Keras 3, NHWC) built from a :class:`~harness.spec.model.ModelSpec`.

``build_model(spec, dtype=None)`` returns a built :class:`DRTModel` (a ``keras.Model``) with ``.features`` and
``.head``; ``model(x, training=...) = head(features(x))``. ``model.to_neutral()`` gives exactly the torch
``state_dict`` names of :func:`impl_torch.backbones.build_model` (``features.<torchvision name>``,
``head.<name>``) and layouts; ``model.from_neutral(arrays, strict=True)`` loads them (strict check first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from harness.errors import WeightsError
from harness.spec.model import ModelSpec
from harness.spec.names import KERAS_DRT_VARIABLES, is_drt_tensor
from impl_keras.backbones.digits_cnn import DigitsCNN
from impl_keras.backbones.heads import LinearHead, MCDHead, build_head
from impl_keras.backbones.resnet import BasicBlock, Bottleneck, ResNetFeatures
from impl_keras.layers.basic import check_arrays, neutral_shapes
from impl_keras.weights import route_hint


def build_features(spec: ModelSpec, dtype: Any = None) -> keras.layers.Layer:
    """The feature extractor of ``spec``, a layer named ``features`` (:class:`DigitsCNN` or ResNet)."""
    if spec.arch == "digits_cnn":
        return DigitsCNN(spec, dtype=dtype, name="features")
    return ResNetFeatures(spec, dtype=dtype, name="features")


class DRTModel(keras.Model):
    """``features`` + ``head``; ``call(x, training) -> logits``.

    ``forward_stages(x, training)`` gives every stage's output."""

    def __init__(
        self,
        spec: ModelSpec,
        dtype: Any = None,
        features: keras.layers.Layer | None = None,
        head: keras.layers.Layer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dtype=dtype, **kwargs)
        self.spec = spec
        self.features = build_features(spec, dtype) if features is None else features
        self.head = build_head(spec, dtype=dtype) if head is None else head
        self.built = True

    def forward_stages(self, x: Any, training: bool | None = None) -> dict[str, Any]:
        out = self.features.forward_stages(x, training=training)
        out["head"] = self.head(out[next(reversed(out))], training=training)
        return out

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.head(self.features(x, training=training), training=training)

    def named_children(self) -> list[tuple[str, keras.layers.Layer]]:
        return [("features", self.features), ("head", self.head)]

    def neutral_shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{n}.{k}": s for n, c in self.named_children() for k, s in neutral_shapes(c).items()}

    def to_neutral(self) -> dict[str, np.ndarray]:
        """Every tensor with its torch ``state_dict`` name and layout."""
        return {f"{n}.{k}": v for n, c in self.named_children() for k, v in c.to_neutral().items()}

    def from_neutral(self, arrays: Mapping[str, Any], strict: bool = True) -> None:
        """Load a neutral dict, checked as a whole first (every missing/unexpected/mis-shaped name listed)."""
        try:
            check_arrays(self.neutral_shapes(), arrays, strict=strict, where="model")
        except WeightsError as e:
            raise route_hint(e) from None
        for n, c in self.named_children():
            pre = n + "."
            c.from_neutral({k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)}, strict=strict)


def build_model(spec: ModelSpec, dtype: Any = None) -> DRTModel:
    """Build the full (already built) Keras model of ``spec``.

    ``dtype``: e.g. ``"float64"``; ``None`` = Keras' floatx."""
    return DRTModel(spec, dtype=dtype, name=f"drt_{spec.arch}")


def is_drt_variable(name: str) -> bool:
    """True for neutral names of DRT tensors (bases, coefficient branch): the "new" parameters.

    See :func:`harness.spec.names.is_drt_tensor`."""
    return is_drt_tensor(name)


def split_variables(model: keras.layers.Layer) -> tuple[list[keras.Variable], list[keras.Variable]]:
    """(static-part trainable variables, DRT trainable variables: bases and coefficient branches).

    The DRT ones are the "new" parameters that the methods train with 10× learning rate.
    """
    from impl_keras.layers.drt_conv import DRTConv2D

    drt_ids: set[int] = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, DRTConv2D):
            for v in (getattr(layer, n) for n in KERAS_DRT_VARIABLES):
                if v is not None:
                    drt_ids.add(id(v))
    static = [v for v in model.trainable_variables if id(v) not in drt_ids]
    drt = [v for v in model.trainable_variables if id(v) in drt_ids]
    return static, drt


__all__ = [
    "BasicBlock",
    "Bottleneck",
    "DRTModel",
    "DigitsCNN",
    "LinearHead",
    "MCDHead",
    "ResNetFeatures",
    "build_features",
    "build_head",
    "build_model",
    "is_drt_variable",
    "split_variables",
]
