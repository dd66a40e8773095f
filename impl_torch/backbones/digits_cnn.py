"""The M3SDA digit CNN (Digit-Five), PyTorch, NCHW, input 3×32×32; every conv is a :class:`DRTConv2d`.

conv1 5×5(3→64)-bn1-ReLU-maxpool(3, 2, 1) → conv2 5×5(64→64)-bn2-ReLU-maxpool(3, 2, 1) →
conv3 5×5(64→128)-bn3-ReLU → flatten (8192, NCHW order) → fc1 (8192→3072)-bn1_fc-ReLU-Dropout →
fc2 (3072→2048)-bn2_fc-ReLU. Output 2048. ``spec.width`` scales every channel count and FC width
(``harness.spec.model.digits_dims``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.spec.model import ModelSpec, conv_specs, digits_dims
from impl_torch.backbones.heads import init_linear
from impl_torch.layers import DRTConv2d


class DigitsCNN(nn.Module):
    """Feature extractor of the digit CNN; ``forward(x) -> (B, f2)`` (2048 at width 1)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.arch != "digits_cnn":
            raise ValueError(f"DigitsCNN needs arch 'digits_cnn', got {spec.arch!r}")
        cs = conv_specs(spec)
        self.conv1 = DRTConv2d(cs["conv1"])
        (c1, c2, c3), (f1, f2) = digits_dims(spec.width)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = DRTConv2d(cs["conv2"])
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = DRTConv2d(cs["conv3"])
        self.bn3 = nn.BatchNorm2d(c3)
        self.fc1 = nn.Linear(c3 * 8 * 8, f1)
        self.bn1_fc = nn.BatchNorm1d(f1)
        self.drop = nn.Dropout(spec.dropout)
        self.fc2 = nn.Linear(f1, f2)
        self.bn2_fc = nn.BatchNorm1d(f2)
        init_linear(self.fc1)
        init_linear(self.fc2)
        self.out_features = f2

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of every stage in forward order: block1, block2, block3, fc1, fc2."""
        out: dict[str, torch.Tensor] = {}
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        out["block1"] = x
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 3, 2, 1)
        out["block2"] = x
        x = F.relu(self.bn3(self.conv3(x)))
        out["block3"] = x
        x = self.drop(F.relu(self.bn1_fc(self.fc1(torch.flatten(x, 1)))))
        out["fc1"] = x
        x = F.relu(self.bn2_fc(self.fc2(x)))
        out["fc2"] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)["fc2"]
