"""Backbones and heads (PyTorch, NCHW) built from a :class:`~harness.spec.model.ModelSpec`.

``build_model(spec)`` returns a :class:`DRTModel` with ``.features`` (the backbone, ``forward(x) -> (B, F)``)
and ``.head`` (``forward(f) -> logits``); ``model(x) = head(features(x))``. Its ``state_dict`` names are the
neutral names: ``features.<torchvision name>`` and ``head.<name>``.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.spec.model import ModelSpec
from harness.spec.names import is_drt_tensor
from impl_torch.backbones.digits_cnn import DigitsCNN
from impl_torch.backbones.heads import LinearHead, MCDHead, build_head
from impl_torch.backbones.resnet import BasicBlock, Bottleneck, ResNetFeatures


def build_features(spec: ModelSpec) -> nn.Module:
    """The feature extractor of ``spec`` (:class:`DigitsCNN` or :class:`ResNetFeatures`)."""
    return DigitsCNN(spec) if spec.arch == "digits_cnn" else ResNetFeatures(spec)


class DRTModel(nn.Module):
    """``features`` + ``head``; ``forward(x) -> logits``; ``forward_stages(x)`` gives every stage's output."""

    def __init__(
        self, spec: ModelSpec, features: nn.Module | None = None, head: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.spec = spec
        self.features = build_features(spec) if features is None else features
        self.head = build_head(spec) if head is None else head

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.features.forward_stages(x)
        out["head"] = self.head(out[next(reversed(out))])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(spec: ModelSpec, dtype: torch.dtype | None = None) -> DRTModel:
    """Build the full model of ``spec`` (optionally cast to ``dtype``, e.g. ``torch.float64``)."""
    model = DRTModel(spec)
    return model if dtype is None else model.to(dtype)


def is_drt_parameter(name: str) -> bool:
    """True for the DRT layer tensors (bases, coefficient branch): the "new" parameters (10× lr).

    ``name`` is a ``named_parameters()`` name; see :func:`harness.spec.names.is_drt_tensor`."""
    return is_drt_tensor(name)


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(static-part parameters, DRT parameters) of a model or feature extractor."""
    static, drt = [], []
    for n, p in model.named_parameters():
        (drt if is_drt_parameter(n) else static).append(p)
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
    "is_drt_parameter",
    "split_parameters",
]
