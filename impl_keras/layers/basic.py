"""Keras 3 primitives with PyTorch semantics and the neutral weight protocol (NHWC, ``keras.ops`` only).

Every weight-holding layer here implements ``to_neutral() -> dict[str, np.ndarray]`` and
``from_neutral(arrays, strict=True)`` with torch ``state_dict`` names and layouts relative to itself:

* :class:`BatchNorm2d` / :class:`BatchNorm1d` — torch's BatchNorm: eps 1e-5, momentum 0.1
  (``running = 0.9·running + 0.1·batch``), normalisation with the *biased* batch variance but the running
  variance updated with the *unbiased* one (``var·n/(n−1)``), ``num_batches_tracked`` counted. Names
  ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked`` (int64 scalar).
* :class:`Linear` — ``y = x Wᵀ + b``; Keras kernel ``(in, out)``, neutral ``weight`` ``(out, in)``, ``bias``.
* :class:`ZeroPadding2d`, :class:`MaxPool2d` — explicit symmetric padding, then ``valid``. ``MaxPool2d`` pads
  with ``-inf`` (torch's ``MaxPool2d(3, 2, 1)``), never with zeros and never ``"same"``.
* :class:`GlobalAvgPool2d`, :class:`ReLU`, :class:`Dropout` (inverted dropout, identity for ``p = 0`` or
  eval).
* :class:`NeutralContainer` — a layer made of named children; composes their neutral dicts with dotted
  prefixes equal to the torch module paths, and checks a whole dict strictly before loading any of it.

``check_arrays`` is the shared strict check: a :class:`WeightsError` lists every missing, unexpected and
mis-shaped tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from harness.weights.neutral import validate
from impl_keras.numerics import mean


# ---- strict checks -----------------------------------------------------------------------------------------
def check_arrays(
    expected: Mapping[str, tuple[int, ...]],
    arrays: Mapping[str, Any],
    *,
    strict: bool = True,
    where: str = "",
) -> set[str]:
    """Return the names to load, or raise one :class:`WeightsError` naming every bad tensor.

    Mis-shaped tensors are always an error; missing and unexpected ones only when ``strict``
    (:func:`harness.weights.neutral.validate`).
    """
    return validate(expected, arrays, strict=strict, context=where)


def neutral_shapes(layer: Any) -> dict[str, tuple[int, ...]]:
    """Expected neutral names and shapes of ``layer`` (``layer.neutral_shapes()`` if defined, else from
    ``layer.to_neutral()``)."""
    fn = getattr(layer, "neutral_shapes", None)
    if callable(fn):
        return dict(fn())
    return {k: tuple(np.shape(v)) for k, v in layer.to_neutral().items()}


def _assign(variable: keras.Variable, value: Any) -> None:
    # a copy: on JAX-CPU an array may alias the numpy buffer, which a torch in-place update would change
    variable.assign(np.array(value, dtype=keras.backend.standardize_dtype(variable.dtype), copy=True))


# ---- leaves with weights -----------------------------------------------------------------------------------
class Linear(keras.layers.Layer):
    """``y = x Wᵀ + b`` (torch ``nn.Linear``). ``weight_std``/``bias_std``: normal init std (bias 0 if 0)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        weight_std: float = 0.01,
        bias_std: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.in_features, self.out_features, self.use_bias = int(in_features), int(out_features), bool(bias)
        self.kernel = self.add_weight(
            shape=(self.in_features, self.out_features),
            initializer=keras.initializers.RandomNormal(0.0, weight_std),
            name="kernel",
        )
        self.bias = None
        if self.use_bias:
            init = keras.initializers.RandomNormal(0.0, bias_std) if bias_std > 0 else "zeros"
            self.bias = self.add_weight(shape=(self.out_features,), initializer=init, name="bias")
        self.built = True

    def call(self, x: Any) -> Any:
        y = ops.matmul(x, self.kernel)
        return y if self.bias is None else y + self.bias

    def neutral_shapes(self) -> dict[str, tuple[int, ...]]:
        s = {"weight": (self.out_features, self.in_features)}
        if self.use_bias:
            s["bias"] = (self.out_features,)
        return s

    def to_neutral(self) -> dict[str, np.ndarray]:
        # the backend's tiled transpose (numpy's .T copy of a 8192×3072 matrix is ~10× slower)
        out = {"weight": ops.convert_to_numpy(ops.transpose(self.kernel))}
        if self.bias is not None:
            out["bias"] = ops.convert_to_numpy(self.bias)
        return out

    def from_neutral(self, arrays: Mapping[str, Any], strict: bool = True) -> None:
        check_arrays(self.neutral_shapes(), arrays, strict=strict, where=self.name)
        if "weight" in arrays:
            dt = keras.backend.standardize_dtype(self.kernel.dtype)
            w = np.array(arrays["weight"], dtype=dt, copy=True)
            self.kernel.assign(ops.transpose(ops.convert_to_tensor(w)))
        if self.bias is not None and "bias" in arrays:
            _assign(self.bias, arrays["bias"])


class BatchNorm(keras.layers.Layer):
    """torch ``BatchNorm1d/2d`` over the last axis (NHWC or (B, C)); see the module docstring."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        weight_std: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        c = (self.num_features,)
        w_init = keras.initializers.RandomNormal(1.0, weight_std) if weight_std > 0 else "ones"
        self.weight = self.add_weight(shape=c, initializer=w_init, name="weight")
        self.bias = self.add_weight(shape=c, initializer="zeros", name="bias")
        self.running_mean = self.add_weight(
            shape=c, initializer="zeros", trainable=False, name="running_mean"
        )
        self.running_var = self.add_weight(shape=c, initializer="ones", trainable=False, name="running_var")
        self.num_batches_tracked = self.add_weight(
            shape=(), initializer="zeros", dtype="int64", trainable=False, name="num_batches_tracked"
        )
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        axes = tuple(range(len(x.shape) - 1))
        if training:
            mu = mean(x, axis=axes)
            centred = x - mu
            var = mean(ops.square(centred), axis=axes)
            n = 1
            for a in axes:
                n *= int(x.shape[a]) if x.shape[a] is not None else ops.shape(x)[a]
            m = self.momentum
            unbiased = var * (n / max(n - 1, 1))
            self.running_mean.assign(
                (1.0 - m) * self.running_mean + m * ops.stop_gradient(ops.cast(mu, self.running_mean.dtype))
            )
            self.running_var.assign(
                (1.0 - m) * self.running_var
                + m * ops.stop_gradient(ops.cast(unbiased, self.running_var.dtype))
            )
            self.num_batches_tracked.assign(self.num_batches_tracked + 1)
            return centred * ops.rsqrt(var + self.eps) * self.weight + self.bias
        scale = self.weight * ops.rsqrt(ops.cast(self.running_var, x.dtype) + self.eps)
        return (x - ops.cast(self.running_mean, x.dtype)) * scale + self.bias

    def neutral_shapes(self) -> dict[str, tuple[int, ...]]:
        c = (self.num_features,)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c, "num_batches_tracked": ()}

    def to_neutral(self) -> dict[str, np.ndarray]:
        out = {
            k: ops.convert_to_numpy(getattr(self, k))
            for k in ("weight", "bias", "running_mean", "running_var")
        }
        out["num_batches_tracked"] = np.asarray(
            ops.convert_to_numpy(self.num_batches_tracked), dtype=np.int64
        )
        return out

    def from_neutral(self, arrays: Mapping[str, Any], strict: bool = True) -> None:
        check_arrays(self.neutral_shapes(), arrays, strict=strict, where=self.name)
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if k in arrays:
                _assign(getattr(self, k), arrays[k])


class BatchNorm2d(BatchNorm):
    """torch ``BatchNorm2d`` on NHWC input (statistics over N, H, W)."""


class BatchNorm1d(BatchNorm):
    """torch ``BatchNorm1d`` on (B, C) input."""


# ---- stateless leaves --------------------------------------------------------------------------------------
class _Stateless(keras.layers.Layer):
    """A layer without weights (empty neutral dict)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.built = True

    def neutral_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def to_neutral(self) -> dict[str, np.ndarray]:
        return {}

    def from_neutral(self, arrays: Mapping[str, Any], strict: bool = True) -> None:
        check_arrays({}, arrays, strict=strict, where=self.name)


def _pad_hw(x: Any, p: int, value: float) -> Any:
    return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=value) if p else x


class ZeroPadding2d(_Stateless):
    """Symmetric zero padding of H and W by ``padding`` on each side (NHWC)."""

    def __init__(self, padding: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x: Any) -> Any:
        return _pad_hw(x, self.padding, 0.0)


class MaxPool2d(_Stateless):
    """torch ``MaxPool2d(kernel_size, stride, padding)`` on NHWC.

    Pads with ``-inf`` symmetrically, then pools ``valid``."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride if stride is not None else kernel_size)
        self.padding = int(padding)

    def call(self, x: Any) -> Any:
        x = _pad_hw(x, self.padding, float("-inf"))
        return ops.max_pool(x, self.kernel_size, self.stride, padding="valid")


class GlobalAvgPool2d(_Stateless):
    """Mean over H and W: (B, H, W, C) → (B, C)."""

    def call(self, x: Any) -> Any:
        return mean(x, axis=(1, 2))


class ReLU(_Stateless):
    """``max(x, 0)``."""

    def call(self, x: Any) -> Any:
        return ops.relu(x)


class Dropout(_Stateless):
    """Inverted dropout with probability ``p`` (scale ``1/(1−p)`` in training, as torch); identity when
    ``p = 0`` or not training."""

    def __init__(self, p: float = 0.5, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.p = float(p)
        self.seed_generator = keras.random.SeedGenerator(seed) if self.p > 0 else None

    def call(self, x: Any, training: bool | None = None) -> Any:
        if not training or self.p == 0.0:
            return x
        return keras.random.dropout(x, self.p, seed=self.seed_generator)


# ---- containers --------------------------------------------------------------------------------------------
def _attr_name(name: str) -> str:
    return name if name.isidentifier() else f"m{name}"


class NeutralContainer(keras.layers.Layer):
    """A layer with named children whose neutral names compose as ``<child name>.<child's name>``.

    Subclasses register children in forward order with :meth:`add_child` (the name is the torch module name,
    e.g. ``"conv1"`` or ``"0"``). ``from_neutral`` checks the whole dict first (every missing, unexpected and
    mis-shaped tensor is listed in one :class:`WeightsError`) and only then assigns.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._child_names: list[str] = []

    def add_child(self, name: str, layer: keras.layers.Layer) -> keras.layers.Layer:
        """Register ``layer`` under the torch module name ``name`` and return it."""
        setattr(self, _attr_name(name), layer)
        self._child_names.append(name)
        return layer

    def named_children(self) -> list[tuple[str, keras.layers.Layer]]:
        """The children in registration (forward) order with their torch module names."""
        return [(n, getattr(self, _attr_name(n))) for n in self._child_names]

    def named_layers(self, prefix: str = "") -> Iterable[tuple[str, keras.layers.Layer]]:
        """Every descendant layer with its dotted torch path (depth first)."""
        for n, child in self.named_children():
            path = f"{prefix}{n}"
            yield path, child
            if isinstance(child, NeutralContainer):
                yield from child.named_layers(path + ".")

    def neutral_shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for n, child in self.named_children():
            for k, s in neutral_shapes(child).items():
                out[f"{n}.{k}"] = s
        return out

    def to_neutral(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for n, child in self.named_children():
            for k, v in child.to_neutral().items():
                out[f"{n}.{k}"] = v
        return out

    def from_neutral(self, arrays: Mapping[str, Any], strict: bool = True) -> None:
        check_arrays(self.neutral_shapes(), arrays, strict=strict, where=self.name)
        for n, child in self.named_children():
            pre = n + "."
            sub = {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)}
            if sub or strict:
                child.from_neutral(sub, strict=strict)


class Sequential(NeutralContainer):
    """torch ``nn.Sequential``: children named ``"0"``, ``"1"`` …, called in order (``training`` passed on to
    layers whose ``call`` accepts it)."""

    def __init__(self, layers: Iterable[keras.layers.Layer], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for i, layer in enumerate(layers):
            self.add_child(str(i), layer)
        self.built = True

    def __len__(self) -> int:
        return len(self._child_names)

    def __getitem__(self, i: int) -> keras.layers.Layer:
        return getattr(self, _attr_name(self._child_names[i]))

    def call(self, x: Any, training: bool | None = None) -> Any:
        for _, layer in self.named_children():
            x = call_layer(layer, x, training)
        return x


def call_layer(layer: keras.layers.Layer, x: Any, training: bool | None) -> Any:
    """``layer(x, training=training)`` if its ``call`` takes ``training``, else ``layer(x)``."""
    if getattr(layer, "_call_has_training_arg", False):
        return layer(x, training=training)
    return layer(x)


__all__ = [
    "BatchNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout",
    "GlobalAvgPool2d",
    "Linear",
    "MaxPool2d",
    "NeutralContainer",
    "ReLU",
    "Sequential",
    "ZeroPadding2d",
    "call_layer",
    "check_arrays",
    "neutral_shapes",
]
