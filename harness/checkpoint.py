"""Job checkpoints that hold tensors and plain data only: nothing read back can run code.

One file, ``job_dir/checkpoint/state.safetensors``: every array (network tensors, optimiser slots, random
generator states) as a safetensors tensor, and everything else (epoch, history, loader cursors, progress,
optimiser hyperparameters) as one JSON document in the safetensors metadata under the key ``drt_state``.
Written atomically (temporary file, fsync, rename), so a crash leaves the previous checkpoint or the new one.

Reading never unpickles: safetensors parses a JSON header and raw buffers. A file that cannot be read
raises :class:`CheckpointError` naming the file and why; the training loop then restarts the job from
scratch (or fails, with ``job["on_bad_checkpoint"] = "fail"``). Older checkpoint formats (``state.pt``,
``state.pkl``: pickles) are never opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness import atomic
from harness.errors import DrtBenchError

FILENAME = "state.safetensors"
META_KEY = "drt_state"
#: checkpoint files of earlier versions: pickles, never read (they could run code)
LEGACY_FILENAMES = ("state.pt", "state.pkl")


class CheckpointError(DrtBenchError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, or not ours)."""


def path_in(job_dir: Path | str) -> Path:
    return Path(job_dir) / "checkpoint" / FILENAME


def save(path: Path | str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and the JSON-serialisable ``meta`` atomically to ``path``."""
    from safetensors.numpy import save as to_bytes

    clean = {k: np.array(v, order="C", copy=True) for k, v in arrays.items()}  # keeps 0-d shapes
    atomic.write_bytes(path, to_bytes(clean, metadata={META_KEY: json.dumps(meta, allow_nan=True)}))


def load(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` of a checkpoint; :class:`CheckpointError` naming the file when unreadable."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # noqa: BLE001 - any parse failure is "unreadable"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if META_KEY not in header:
        raise CheckpointError(f"{path}: no {META_KEY!r} metadata (not a drt-bench checkpoint)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: its {META_KEY!r} metadata is not JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("epoch"), int):
        raise CheckpointError(f"{path}: its metadata has no integer 'epoch'")
    return arrays, meta


def numpy_rng_state() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """NumPy's global generator state as ``(arrays, plain data)``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"rng/numpy/keys": np.asarray(keys)}, {
        "name": name,
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def set_numpy_rng_state(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    np.random.set_state(
        (meta["name"], arrays["rng/numpy/keys"], meta["pos"], meta["has_gauss"], meta["cached_gaussian"])
    )


def split_prefix(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose name starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
