"""PyTorch layers. :class:`DRTConv2d` is used for *every* convolution (``static`` spec = plain conv)."""

from impl_torch.layers.drt_conv import DRTConv2d, DRTRouter, formulation_choices, resolve_formulation

__all__ = ["DRTConv2d", "DRTRouter", "formulation_choices", "resolve_formulation"]
