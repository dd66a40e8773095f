"""Classifier heads (PyTorch): ``linear`` and the MCD head of ``docs/method-facts.md`` §2."""

from __future__ import annotations

import torch
from torch import nn

from harness.spec.model import ModelSpec


def init_linear(layer: nn.Linear, bias_std: float = 0.0) -> None:
    """Linear init of the harness: weight N(0, 0.01²); bias N(0, bias_std²) (0 → zeros)."""
    nn.init.normal_(layer.weight, 0.0, 0.01)
    if layer.bias is not None:
        if bias_std > 0:
            nn.init.normal_(layer.bias, 0.0, bias_std)
        else:
            nn.init.zeros_(layer.bias)


class LinearHead(nn.Module):
    """``fc: Linear(in_features → num_classes)``."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
        init_linear(self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class MCDHead(nn.Module):
    """Dropout-fc1-bn1-ReLU-Dropout-fc2-bn2-ReLU-fc3 (as released).

    Init: Linear weight and bias N(0, 0.01²), BN weight N(1, 0.01²), BN bias 0."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(in_features, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, num_classes)
        self.relu = nn.ReLU()
        for fc in (self.fc1, self.fc2, self.fc3):
            init_linear(fc, bias_std=0.01)
        for bn in (self.bn1, self.bn2):
            nn.init.normal_(bn.weight, 1.0, 0.01)
            nn.init.zeros_(bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.fc1(self.drop1(x))))
        x = self.relu(self.bn2(self.fc2(self.drop2(x))))
        return self.fc3(x)


def build_head(spec: ModelSpec, in_features: int | None = None, num_classes: int | None = None) -> nn.Module:
    """The head of ``spec``; ``in_features`` and ``num_classes`` default to the spec's."""
    f = spec.feature_dim if in_features is None else in_features
    c = spec.num_classes if num_classes is None else num_classes
    if spec.head == "linear":
        return LinearHead(f, c)
    return MCDHead(f, c, spec.head_hidden, spec.dropout)
