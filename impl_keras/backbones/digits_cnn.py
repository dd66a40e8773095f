"""The M3SDA digit CNN (Keras 3, NHWC, input 32×32×3); same structure and neutral names as impl_torch.

The 128×8×8 map is transposed to NCHW before flattening, so ``fc1.weight`` (3072, 8192) is the torch layout.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from harness.spec.model import ModelSpec, conv_specs, digits_dims
from impl_keras.backbones.common import drt_conv
from impl_keras.layers.basic import (
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    Linear,
    MaxPool2d,
    NeutralContainer,
    call_layer,
)


class DigitsCNN(NeutralContainer):
    """Feature extractor of the digit CNN; ``call(x) -> (B, 2048)``."""

    def __init__(self, spec: ModelSpec, dtype: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", "features")
        super().__init__(dtype=dtype, **kwargs)
        if spec.arch != "digits_cnn":
            raise ValueError(f"DigitsCNN needs arch 'digits_cnn', got {spec.arch!r}")
        cs = conv_specs(spec)
        for i in (1, 2, 3):
            c = cs[f"conv{i}"]
            self.add_child(f"conv{i}", drt_conv(c, f"conv{i}", dtype))
            self.add_child(f"bn{i}", BatchNorm2d(c.out_channels, dtype=dtype, name=f"bn{i}"))
        (_, _, c3), (f1, f2) = digits_dims(spec.width)
        self.add_child("fc1", Linear(c3 * 8 * 8, f1, dtype=dtype, name="fc1"))
        self.add_child("bn1_fc", BatchNorm1d(f1, dtype=dtype, name="bn1_fc"))
        self.add_child("fc2", Linear(f1, f2, dtype=dtype, name="fc2"))
        self.add_child("bn2_fc", BatchNorm1d(f2, dtype=dtype, name="bn2_fc"))
        self.pool = MaxPool2d(3, 2, 1, dtype=dtype, name="pool")
        self.drop = Dropout(spec.dropout, dtype=dtype, name="drop")
        self.out_features = f2
        self.built = True

    def forward_stages(self, x: Any, training: bool | None = None) -> dict[str, Any]:
        """Outputs of every stage in forward order: block1, block2, block3 (NHWC), fc1, fc2."""
        out: dict[str, Any] = {}
        x = self.pool(ops.relu(self.bn1(call_layer(self.conv1, x, training), training=training)))
        out["block1"] = x
        x = self.pool(ops.relu(self.bn2(call_layer(self.conv2, x, training), training=training)))
        out["block2"] = x
        x = ops.relu(self.bn3(call_layer(self.conv3, x, training), training=training))
        out["block3"] = x
        flat = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (ops.shape(x)[0], -1))
        x = self.drop(ops.relu(self.bn1_fc(self.fc1(flat), training=training)), training=training)
        out["fc1"] = x
        x = ops.relu(self.bn2_fc(self.fc2(x), training=training))
        out["fc2"] = x
        return out

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.forward_stages(x, training=training)["fc2"]
