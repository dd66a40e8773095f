"""Classifier heads (Keras 3): ``linear`` and the MCD head of ``docs/method-facts.md`` §2 (same names as
impl_torch)."""

from __future__ import annotations

from typing import Any

from harness.spec.model import ModelSpec
from impl_keras.layers.basic import BatchNorm1d, Dropout, Linear, NeutralContainer


class LinearHead(NeutralContainer):
    """``fc: Linear(in_features → num_classes)`` (weight N(0, 0.01²), bias 0)."""

    def __init__(self, in_features: int, num_classes: int, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(dtype=dtype, **kwargs)
        self.add_child("fc", Linear(in_features, num_classes, dtype=dtype, name="fc"))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.fc(x)


class MCDHead(NeutralContainer):
    """Dropout-fc1-bn1-ReLU-Dropout-fc2-bn2-ReLU-fc3 (as released).

    Init: Linear weight and bias N(0, 0.01²), BN weight N(1, 0.01²), BN bias 0."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: int = 1000,
        dropout: float = 0.5,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dtype=dtype, **kwargs)
        self.drop1 = Dropout(dropout, dtype=dtype, name="drop1")
        self.add_child("fc1", Linear(in_features, hidden, bias_std=0.01, dtype=dtype, name="fc1"))
        self.add_child("bn1", BatchNorm1d(hidden, weight_std=0.01, dtype=dtype, name="bn1"))
        self.drop2 = Dropout(dropout, dtype=dtype, name="drop2")
        self.add_child("fc2", Linear(hidden, hidden, bias_std=0.01, dtype=dtype, name="fc2"))
        self.add_child("bn2", BatchNorm1d(hidden, weight_std=0.01, dtype=dtype, name="bn2"))
        self.add_child("fc3", Linear(hidden, num_classes, bias_std=0.01, dtype=dtype, name="fc3"))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        from keras import ops

        x = ops.relu(self.bn1(self.fc1(self.drop1(x, training=training)), training=training))
        x = ops.relu(self.bn2(self.fc2(self.drop2(x, training=training)), training=training))
        return self.fc3(x)


def build_head(
    spec: ModelSpec,
    in_features: int | None = None,
    num_classes: int | None = None,
    dtype: Any = None,
    name: str = "head",
) -> NeutralContainer:
    """The head of ``spec``; ``in_features`` and ``num_classes`` default to the spec's."""
    f = spec.feature_dim if in_features is None else in_features
    c = spec.num_classes if num_classes is None else num_classes
    if spec.head == "linear":
        return LinearHead(f, c, dtype=dtype, name=name)
    return MCDHead(f, c, spec.head_hidden, spec.dropout, dtype=dtype, name=name)
