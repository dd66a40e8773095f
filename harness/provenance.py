"""Where a number came from: the machine (:func:`cpu_model`, :func:`gpu_name`, :func:`hardware`) and the
installed library versions (:func:`library_versions`).

Imports no framework: versions come from package metadata, and the GPU name from an already imported torch
(never imported here) or ``nvidia-smi``.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["VERSION_PACKAGES", "cpu_model", "gpu_name", "hardware", "library_versions"]

#: Distributions whose installed versions go into run records (those not installed are left out).
VERSION_PACKAGES: tuple[str, ...] = (
    "numpy",
    "torch",
    "torchvision",
    "keras",
    "tensorflow",
    "tensorflow-cpu",
    "jax",
    "jaxlib",
    "scikit-learn",
    "submitit",
)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model name (``model name`` in ``/proc/cpuinfo``; ``platform.processor()`` or the machine type
    where that file does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(index: int = 0) -> str | None:
    """Name of GPU ``index``: from torch when the process has already imported it, else from ``nvidia-smi``;
    ``None`` when neither knows one."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return str(torch.cuda.get_device_name(index))
        except Exception:  # noqa: BLE001 - best effort only
            pass
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
        return names[index].strip() or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def hardware(device: str | None = None) -> str:
    """One line describing the machine: ``"<CPU model> (<n> logical cores)"``, prefixed by ``"<GPU name>; "``
    when ``device`` is a CUDA device (``"unknown GPU"`` if its name cannot be found)."""
    desc = f"{cpu_model()} ({os.cpu_count()} logical cores)"
    if device and str(device).startswith("cuda"):
        index = int(str(device).split(":", 1)[1]) if ":" in str(device) else 0
        desc = f"{gpu_name(index) or 'unknown GPU'}; {desc}"
    return desc


def library_versions(framework: str | None = None) -> dict[str, str]:
    """Installed versions of the libraries that matter, from package metadata (nothing is imported).

    Always ``python``, ``drt-bench`` and every installed distribution of :data:`VERSION_PACKAGES`. With
    ``framework="keras"`` also ``keras_backend`` (``$KERAS_BACKEND``, else the backend of an already
    imported Keras, else ``tensorflow``, Keras' default).
    """
    out = {"python": platform.python_version()}
    for pkg in VERSION_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    try:
        from harness import __version__

        out["drt-bench"] = str(__version__)
    except ImportError:  # pragma: no cover
        pass
    if framework == "keras":
        backend = os.environ.get("KERAS_BACKEND")
        keras = sys.modules.get("keras")
        if not backend and keras is not None:
            try:
                backend = str(keras.backend.backend())
            except Exception:  # noqa: BLE001 - best effort only
                backend = None
        out["keras_backend"] = backend or "tensorflow"
    return out
