"""Keras layers. :class:`DRTConv2D` is used for *every* convolution (``static`` spec = plain conv)."""

from impl_keras.layers.drt_conv import DRTConv2D, formulation_choices

__all__ = ["DRTConv2D", "formulation_choices"]
