"""Framework-free neutral weights: a flat ``dict[str, numpy.ndarray]``, torch ``state_dict`` names/layouts.

Conv kernels are OIHW, Linear weights ``(out, in)``, BatchNorm ``weight``/``bias``/``running_mean``/
``running_var``/``num_batches_tracked``; a DRT layer adds ``bases`` (K, C_out, C_in, b, b) and
``router.fc1.weight`` / ``router.fc2.weight``. Files are ``.safetensors`` (preferred, via
``safetensors.numpy``) or ``.npz``; metadata is a ``dict[str, str]`` (non-string values are stored as JSON).
This module imports neither torch nor TensorFlow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from harness.errors import WeightsError

_NPZ_META = "__metadata__"
SUFFIXES = (".safetensors", ".npz")


def _suffix(path: Path) -> str:
    if path.suffix not in SUFFIXES:
        raise WeightsError(
            f"{path}: unknown weight file type {path.suffix!r}: expected one of {', '.join(SUFFIXES)}"
        )
    return path.suffix


def _meta_to_str(metadata: Mapping[str, object] | None) -> dict[str, str]:
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k, v in (metadata or {}).items()
    }


def save(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, object] | None = None,
    *,
    atomic: bool = False,
) -> Path:
    """Write ``arrays`` (+ metadata) to ``path`` (``.safetensors`` or ``.npz``); returns the path.

    ``atomic``: write a temporary file in the same directory, then rename it over ``path`` (a reader never
    sees a half-written file)."""
    path = Path(path)
    kind = _suffix(path)
    if atomic:
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        try:
            save(tmp, arrays, metadata)
            with open(tmp, "rb") as fh:  # the same guarantee as harness.atomic: on disk before the rename
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
    clean: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        if not isinstance(name, str) or not name or name == _NPZ_META:
            raise WeightsError(f"{path}: invalid tensor name {name!r}")
        a = np.asarray(arr)
        if a.dtype == object:
            raise WeightsError(f"{path}: tensor {name!r} is not numeric (dtype object)")
        # not np.ascontiguousarray: it turns 0-d arrays (e.g. num_batches_tracked) into 1-d ones
        clean[name] = a if a.flags.c_contiguous else a.copy(order="C")
    meta = _meta_to_str(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".safetensors":
        from safetensors.numpy import save_file

        save_file(clean, str(path), metadata=meta or None)
    else:
        with open(path, "wb") as f:
            np.savez(f, **clean, **{_NPZ_META: np.array(json.dumps(meta, sort_keys=True))})
    return path


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the arrays of a neutral weight file (``.safetensors`` or ``.npz``)."""
    path = Path(path)
    kind = _suffix(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    if kind == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != _NPZ_META}


def load_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Read only the metadata (``dict[str, str]``) of a neutral weight file."""
    path = Path(path)
    kind = _suffix(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    if kind == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    with np.load(path, allow_pickle=False) as z:
        return dict(json.loads(str(z[_NPZ_META]))) if _NPZ_META in z.files else {}


def validate(
    expected: Mapping[str, tuple[int, ...]],
    arrays: Mapping[str, np.ndarray],
    *,
    strict: bool = True,
    context: str = "",
) -> set[str]:
    """Check ``arrays`` against ``expected`` names → shapes; return the names to load.

    Raises :class:`WeightsError` listing *every* mis-shaped tensor, and (when ``strict``) every missing and
    unexpected one. With ``strict=False`` missing/unexpected names are skipped (shapes are still checked).
    """
    missing = sorted(n for n in expected if n not in arrays)
    unexpected = sorted(n for n in arrays if n not in expected)
    misshaped = sorted(
        f"{n}: expected {tuple(expected[n])}, got {tuple(np.shape(arrays[n]))}"
        for n in expected
        if n in arrays and tuple(np.shape(arrays[n])) != tuple(expected[n])
    )
    problems = []
    if misshaped:
        problems.append("mis-shaped: " + "; ".join(misshaped))
    if strict and missing:
        problems.append("missing: " + ", ".join(missing))
    if strict and unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    if problems:
        where = f" ({context})" if context else ""
        raise WeightsError(f"cannot load neutral weights{where}: " + " | ".join(problems))
    return {n for n in expected if n in arrays}


def prefixed(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """``{prefix + "." + name: a}`` (no dot for an empty prefix): compose a child's arrays into a parent's."""
    return {(f"{prefix}.{k}" if prefix else k): v for k, v in arrays.items()}


def sub(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under ``prefix.`` with the prefix stripped (inverse of :func:`prefixed`)."""
    if not prefix:
        return dict(arrays)
    p = prefix + "."
    return {k[len(p) :]: v for k, v in arrays.items() if k.startswith(p)}


ROUTE_HINT = (
    " [router.fc1.weight is (hidden, routing-input channels): block routing (ModelSpec.route='block', the "
    "ResNet default) pools the residual block's input, layer routing the conv's own input; build the model "
    "with the routing the weights were made with]"
)


def route_hint(err: WeightsError) -> WeightsError:
    """``err`` with :data:`ROUTE_HINT` appended when a router's first Linear is mis-shaped."""
    text = str(err)
    if "router.fc1.weight: expected" in text and ROUTE_HINT not in text:
        return WeightsError(text + ROUTE_HINT)
    return err
