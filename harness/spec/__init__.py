"""Typed, immutable, JSON-round-trippable specs shared by both framework implementations."""

from harness.spec.layer import BASIS_KERNELS, FORMULATIONS, VARIANTS, DRTConvSpec

__all__ = ["DRTConvSpec", "VARIANTS", "FORMULATIONS", "BASIS_KERNELS"]
