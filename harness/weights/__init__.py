"""Neutral weight format: framework-free arrays named and laid out exactly as the torch ``state_dict``.

See :mod:`harness.weights.neutral` (save/load/validate) and docs/architecture.md ("Neutral weight format").
"""

from harness.weights.neutral import load, load_metadata, save, validate

__all__ = ["save", "load", "load_metadata", "validate"]
