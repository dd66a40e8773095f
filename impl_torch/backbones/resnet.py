"""ResNet-18/50/101 feature extractors (PyTorch, NCHW), torchvision v1.5 layout and parameter names.

Every conv is a :class:`DRTConv2d` built from :func:`harness.spec.model.conv_specs` (static where no DRT), so
the static part's ``state_dict`` names equal torchvision's (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight`` …); ``fc`` is not part of the feature extractor.
Initialisation as torchvision (convs kaiming-normal fan_out/relu via the layer; BN weight 1, bias 0).

Routing (``ModelSpec.route``): every conv of a block is called as ``conv(out, route_input=x)`` with the block
input ``x``; a conv whose spec routes on its own input (``route="layer"``) or is static ignores it, so the
spec alone decides (ResNet default ``"block"``, as released: the branch pools the block input).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.spec.layer import DRTConvSpec
from harness.spec.model import RESNET_LAYERS, RESNET_WIDTHS, ModelSpec, conv_specs
from impl_torch.layers import DRTConv2d


class BasicBlock(nn.Module):
    """conv1 3×3 (stride) - bn1 - relu - conv2 3×3 - bn2 (+ downsample) - relu."""

    expansion = 1

    def __init__(self, specs: dict[str, DRTConvSpec], prefix: str) -> None:
        super().__init__()
        c1, c2 = specs[f"{prefix}.conv1"], specs[f"{prefix}.conv2"]
        self.conv1 = DRTConv2d(c1)
        self.bn1 = nn.BatchNorm2d(c1.out_channels)
        self.conv2 = DRTConv2d(c2)
        self.bn2 = nn.BatchNorm2d(c2.out_channels)
        self.relu = nn.ReLU(inplace=False)
        ds = specs.get(f"{prefix}.downsample.0")
        self.downsample = nn.Sequential(DRTConv2d(ds), nn.BatchNorm2d(ds.out_channels)) if ds else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x, route_input=x))
        out = self.relu(self.bn1(self.conv1(x, route_input=x)))
        out = self.bn2(self.conv2(out, route_input=x))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """Bottleneck block, torchvision v1.5 (the stride is on the 3×3).

    conv1 1×1 - bn1 - relu - conv2 3×3 (stride) - bn2 - relu - conv3 1×1 - bn3 (+ downsample) - relu."""

    expansion = 4

    def __init__(self, specs: dict[str, DRTConvSpec], prefix: str) -> None:
        super().__init__()
        c1, c2, c3 = (specs[f"{prefix}.conv{i}"] for i in (1, 2, 3))
        self.conv1 = DRTConv2d(c1)
        self.bn1 = nn.BatchNorm2d(c1.out_channels)
        self.conv2 = DRTConv2d(c2)
        self.bn2 = nn.BatchNorm2d(c2.out_channels)
        self.conv3 = DRTConv2d(c3)
        self.bn3 = nn.BatchNorm2d(c3.out_channels)
        self.relu = nn.ReLU(inplace=False)
        ds = specs.get(f"{prefix}.downsample.0")
        self.downsample = nn.Sequential(DRTConv2d(ds), nn.BatchNorm2d(ds.out_channels)) if ds else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x, route_input=x))
        out = self.relu(self.bn1(self.conv1(x, route_input=x)))
        out = self.relu(self.bn2(self.conv2(out, route_input=x)))
        out = self.bn3(self.conv3(out, route_input=x))
        return self.relu(out + identity)


class ResNetFeatures(nn.Module):
    """torchvision-compatible ResNet without ``fc``; ``forward(x) -> (B, 512 | 2048)`` (globally pooled)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.arch not in RESNET_LAYERS:
            raise ValueError(f"ResNetFeatures needs a ResNet arch, got {spec.arch!r}")
        kind, depths = RESNET_LAYERS[spec.arch]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        specs = conv_specs(spec)
        self.conv1 = DRTConv2d(specs["conv1"])
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for li, depth in enumerate(depths, start=1):
            blocks = [block(specs, f"layer{li}.{bi}") for bi in range(depth)]
            setattr(self, f"layer{li}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.out_features = RESNET_WIDTHS[-1] * block.expansion

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of every stage in forward order: stem, layer1 … layer4, pool."""
        out: dict[str, torch.Tensor] = {}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out["stem"] = x
        for li in range(1, 5):
            x = getattr(self, f"layer{li}")(x)
            out[f"layer{li}"] = x
        out["pool"] = torch.flatten(self.avgpool(x), 1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)["pool"]
