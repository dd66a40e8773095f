"""ResNet-18/50/101 feature extractors (Keras 3, NHWC), torchvision v1.5 layout.

Same structure and neutral names as :mod:`impl_torch.backbones.resnet` (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.downsample.0`` …): ``to_neutral()`` returns torchvision ``state_dict`` names
exactly (without ``fc``). Every conv is a ``DRTConv2D`` (explicit symmetric padding inside the layer); the
stem max-pool pads with -inf.

Routing (``ModelSpec.route``): every conv of a block is called as ``conv(out, route_input=x)`` with the block
input ``x``; a conv whose spec routes on its own input (``route="layer"``) or is static ignores it, so the
spec alone decides (ResNet default ``"block"``, as released: the branch pools the block input).
"""

from __future__ import annotations

from typing import Any

from keras import ops

from harness.spec.layer import DRTConvSpec
from harness.spec.model import RESNET_LAYERS, RESNET_WIDTHS, ModelSpec, conv_specs
from impl_keras.backbones.common import drt_conv
from impl_keras.layers.basic import (
    BatchNorm2d,
    GlobalAvgPool2d,
    MaxPool2d,
    NeutralContainer,
    Sequential,
    call_layer,
)


def _downsample(specs: dict[str, DRTConvSpec], prefix: str, dtype: Any) -> Sequential | None:
    ds = specs.get(f"{prefix}.downsample.0")
    if ds is None:
        return None
    return Sequential(
        [drt_conv(ds, "0", dtype), BatchNorm2d(ds.out_channels, dtype=dtype, name="1")],
        dtype=dtype,
        name="downsample",
    )


def _identity(block: Any, x: Any, training: bool | None) -> Any:
    """The shortcut: ``x``, or downsample conv (routed on the block input, which is its input) + BN."""
    if not block.has_downsample:
        return x
    ds = block.downsample
    return ds[1](ds[0](x, route_input=x), training=training)


class BasicBlock(NeutralContainer):
    """conv1 3×3 (stride) - bn1 - relu - conv2 3×3 - bn2 (+ downsample) - relu."""

    def __init__(self, specs: dict[str, DRTConvSpec], prefix: str, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(dtype=dtype, **kwargs)
        for i in (1, 2):
            c = specs[f"{prefix}.conv{i}"]
            self.add_child(f"conv{i}", drt_conv(c, f"conv{i}", dtype))
            self.add_child(f"bn{i}", BatchNorm2d(c.out_channels, dtype=dtype, name=f"bn{i}"))
        ds = _downsample(specs, prefix, dtype)
        if ds is not None:
            self.add_child("downsample", ds)
        self.has_downsample = ds is not None
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        identity = _identity(self, x, training)
        out = ops.relu(self.bn1(self.conv1(x, route_input=x), training=training))
        out = self.bn2(self.conv2(out, route_input=x), training=training)
        return ops.relu(out + ops.cast(identity, out.dtype))  # mixed precision: BN keeps float32


class Bottleneck(NeutralContainer):
    """conv1 1×1 - bn1 - relu - conv2 3×3 (stride) - bn2 - relu - conv3 1×1 - bn3 (+ downsample) - relu."""

    def __init__(self, specs: dict[str, DRTConvSpec], prefix: str, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(dtype=dtype, **kwargs)
        for i in (1, 2, 3):
            c = specs[f"{prefix}.conv{i}"]
            self.add_child(f"conv{i}", drt_conv(c, f"conv{i}", dtype))
            self.add_child(f"bn{i}", BatchNorm2d(c.out_channels, dtype=dtype, name=f"bn{i}"))
        ds = _downsample(specs, prefix, dtype)
        if ds is not None:
            self.add_child("downsample", ds)
        self.has_downsample = ds is not None
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        identity = _identity(self, x, training)
        out = ops.relu(self.bn1(self.conv1(x, route_input=x), training=training))
        out = ops.relu(self.bn2(self.conv2(out, route_input=x), training=training))
        out = self.bn3(self.conv3(out, route_input=x), training=training)
        return ops.relu(out + ops.cast(identity, out.dtype))  # mixed precision: BN keeps float32


class ResNetFeatures(NeutralContainer):
    """torchvision-compatible ResNet without ``fc`` (NHWC); ``call(x) -> (B, 512 | 2048)``."""

    def __init__(self, spec: ModelSpec, dtype: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", "features")
        super().__init__(dtype=dtype, **kwargs)
        if spec.arch not in RESNET_LAYERS:
            raise ValueError(f"ResNetFeatures needs a ResNet arch, got {spec.arch!r}")
        kind, depths = RESNET_LAYERS[spec.arch]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        specs = conv_specs(spec)
        self.add_child("conv1", drt_conv(specs["conv1"], "conv1", dtype))
        self.add_child("bn1", BatchNorm2d(64, dtype=dtype, name="bn1"))
        self.maxpool = MaxPool2d(3, 2, 1, dtype=dtype, name="maxpool")
        for li, depth in enumerate(depths, start=1):
            blocks = [block(specs, f"layer{li}.{bi}", dtype=dtype, name=str(bi)) for bi in range(depth)]
            self.add_child(f"layer{li}", Sequential(blocks, dtype=dtype, name=f"layer{li}"))
        self.avgpool = GlobalAvgPool2d(dtype=dtype, name="avgpool")
        self.out_features = RESNET_WIDTHS[-1] * (4 if kind == "bottleneck" else 1)
        self.built = True

    def forward_stages(self, x: Any, training: bool | None = None) -> dict[str, Any]:
        """Outputs of every stage in forward order: stem, layer1 … layer4 (NHWC), pool."""
        out: dict[str, Any] = {}
        x = self.maxpool(ops.relu(self.bn1(call_layer(self.conv1, x, training), training=training)))
        out["stem"] = x
        for li in range(1, 5):
            x = getattr(self, f"layer{li}")(x, training=training)
            out[f"layer{li}"] = x
        out["pool"] = self.avgpool(x)
        return out

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.forward_stages(x, training=training)["pool"]
