"""Neutral weights for the Keras implementation: layout helpers and the generic recursion.

The neutral format has torch ``state_dict`` names and layouts (docs/architecture.md). Every weight-holding
layer of ``impl_keras`` implements ``to_neutral(self) -> dict`` and
``from_neutral(self, arrays, strict=True)`` with names relative to itself. :func:`to_neutral` /
:func:`from_neutral` here recurse over composite layers that do not implement them, prefixing child names
with the attribute name (``"layer1"``, ``"layer1.0"`` for list items) or, for a ``Sequential``/functional
model, with the position in ``model.layers`` (as ``nn.Sequential``).
A composite may define ``neutral_children() -> dict[str, Layer]`` to choose its prefixes explicitly.

DRT routing: ``*.router.fc1.weight`` is ``(hidden, C_r)`` with ``C_r`` the routing input's channels (the layer
input, or the residual block's input with block routing, ``ModelSpec.route``); loading weights of the other
routing fails the shape check with a hint (:func:`harness.weights.neutral.route_hint`).

Layout helpers: ``OIHW ↔ HWIO`` (conv kernels), ``(out, in) ↔ (in, out)`` (Linear), and the DRT bases
``(K, O, I, b, b) ↔ (K, b, b, I, O)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from harness.errors import WeightsError
from harness.weights.neutral import prefixed, route_hint, sub


def to_numpy(v: Any) -> np.ndarray:
    """A Keras variable or tensor as a numpy array (a copy)."""
    return np.array(keras.ops.convert_to_numpy(v))


def oihw_to_hwio(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(a), (2, 3, 1, 0)))


def hwio_to_oihw(v: Any) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(to_numpy(v), (3, 2, 0, 1)))


def linear_to_keras(a: np.ndarray) -> np.ndarray:
    """torch Linear weight (out, in) → Keras Dense kernel (in, out)."""
    return np.ascontiguousarray(np.asarray(a).T)


def linear_to_neutral(v: Any) -> np.ndarray:
    """Keras Dense kernel (in, out) → torch Linear weight (out, in)."""
    return np.ascontiguousarray(to_numpy(v).T)


def bases_to_keras(a: np.ndarray) -> np.ndarray:
    """DRT bases (K, O, I, b, b) → (K, b, b, I, O)."""
    return np.ascontiguousarray(np.transpose(np.asarray(a), (0, 3, 4, 2, 1)))


def bases_to_neutral(v: Any) -> np.ndarray:
    """DRT bases (K, b, b, I, O) → (K, O, I, b, b)."""
    return np.ascontiguousarray(np.transpose(to_numpy(v), (0, 4, 3, 1, 2)))


def assign(variable: Any, value: np.ndarray) -> None:
    """Assign a numpy value to a Keras variable (cast to the variable's dtype; shapes must match)."""
    value = np.asarray(value)
    if tuple(value.shape) != tuple(variable.shape):
        raise WeightsError(
            f"{variable.path}: expected shape {tuple(variable.shape)}, got {tuple(value.shape)}"
        )
    variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))


def _children(layer: Any) -> dict[str, Any]:
    if hasattr(layer, "neutral_children"):
        return dict(layer.neutral_children())
    found: dict[str, Any] = {}
    for name, value in vars(layer).items():
        if name.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            found[name] = value
        elif (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(v, keras.layers.Layer) for v in value)
        ):
            for i, v in enumerate(value):
                found[f"{name}.{i}"] = v
    if not found and isinstance(layer, keras.Model | keras.Sequential) and hasattr(layer, "layers"):
        found = {str(i): v for i, v in enumerate(layer.layers)}
    return found


def to_neutral(layer: Any) -> dict[str, np.ndarray]:
    """All neutral arrays of ``layer`` (a layer or model), with dotted prefixes for children."""
    if hasattr(layer, "to_neutral"):
        return dict(layer.to_neutral())
    out: dict[str, np.ndarray] = {}
    for name, child in _children(layer).items():
        out.update(prefixed(to_neutral(child), name))
    return out


def neutral_names(layer: Any) -> set[str]:
    return set(to_neutral(layer))


def from_neutral(layer: Any, arrays: Mapping[str, np.ndarray], strict: bool = True) -> None:
    """Load neutral arrays into ``layer``; strict: a :class:`WeightsError` lists every name at fault."""
    if hasattr(layer, "from_neutral"):
        try:
            layer.from_neutral(dict(arrays), strict=strict)
        except WeightsError as e:
            raise route_hint(e) from None
        return
    children = _children(layer)
    problems: list[str] = []
    claimed: set[str] = set()
    for name, child in children.items():
        part = sub(arrays, name)
        claimed.update(f"{name}.{k}" for k in part)
        try:
            from_neutral(child, part, strict=strict)
        except WeightsError as e:
            problems.append(f"[{name}] {e}")
    unexpected = sorted(set(arrays) - claimed)
    if strict and unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    if problems:
        raise route_hint(WeightsError("cannot load neutral weights: " + " || ".join(problems)))
