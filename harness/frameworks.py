"""Lazy, order-safe access to the two frameworks.

In one process, importing TensorFlow *before* anything that loads triton (torchvision, torch._dynamo,
torch.utils.flop_counter, torch.compile) segfaults. Every entry point that may need both frameworks
calls :func:`prepare_process` first: it imports torch and its triton-loading modules (when torch is
installed) before Keras/TensorFlow is ever touched.
"""

from __future__ import annotations

import importlib.util
import os

from harness.errors import FrameworkMissing

_prepared = False


def available(framework: str) -> bool:
    """True if ``framework`` ('torch' or 'keras') can be imported here (without importing it)."""
    if framework == "torch":
        return importlib.util.find_spec("torch") is not None
    if framework == "keras":
        return importlib.util.find_spec("keras") is not None
    raise ValueError(f"unknown framework {framework!r}: expected 'torch' or 'keras'")


def prepare_process() -> None:
    """Import torch (+ torchvision, flop_counter) before any TensorFlow; quiet TF logging. Idempotent."""
    global _prepared
    if _prepared:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if available("torch"):
        import torch  # noqa: F401
        import torch.utils.flop_counter  # noqa: F401

        if importlib.util.find_spec("torchvision") is not None:
            import torchvision  # noqa: F401
    _prepared = True


def require(framework: str) -> None:
    """Raise :class:`FrameworkMissing` (with the install command) if ``framework`` is not installed."""
    if not available(framework):
        raise FrameworkMissing(framework)
    prepare_process()


def keras_backend() -> str:
    """The Keras backend in use (without importing keras when KERAS_BACKEND is set)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")
