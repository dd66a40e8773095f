"""Neutral weight format: framework-free arrays named and laid out exactly as the torch ``state_dict``.

See :mod:`harness.weights.neutral` (save/load/validate), :mod:`harness.weights.checkpoints` (reading torch /
neutral files, matching torchvision checkpoints) and docs/architecture.md ("Neutral weight format"). The
conversion between the frameworks (``python -m harness.weights``) builds models and lives in
:mod:`harness.drivers.convert`.
"""

from harness.weights.neutral import load, load_metadata, save, validate

__all__ = ["save", "load", "load_metadata", "validate"]
