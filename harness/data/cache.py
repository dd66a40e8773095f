"""Data roots and cache files: atomic writes through :mod:`harness.atomic` (never half-written), checksums."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import write_bytes, write_json
from harness.errors import DataError

ENV_DATA_ROOT = "DRT_DATA_ROOT"


def repo_root() -> Path:
    """The checkout this package lives in."""
    return Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    """``$DRT_DATA_ROOT`` or ``<repo>/datasets/cache`` (git-ignored): where generated suites are cached."""
    env = os.environ.get(ENV_DATA_ROOT)
    return Path(env).expanduser() if env else repo_root() / "datasets" / "cache"


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> str:
    """Save arrays as ``.npz`` atomically; returns the sha256 of the file bytes."""
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    data = buf.getvalue()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def save_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys, atomically."""
    write_json(path, obj)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load ``keys`` from an ``.npz``; :class:`DataError` naming the file if unreadable or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(
                    f"{path}: cache file lacks arrays {missing} (expected {list(keys)}); "
                    f"delete it and run `python -m harness.data prepare`"
                )
            return {k: z[k] for k in keys}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(
            f"{path}: unreadable cache file ({e}); delete it and run `python -m harness.data prepare`"
        ) from None


def key_hash(obj: Any, n: int = 10) -> str:
    """Short stable hash of a JSON-able object (for cache folder names)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]
