r"""The DRT (dynamic residual transfer) convolution in Keras 3, NHWC, built only from a :class:`DRTConvSpec`.

For an input ``x`` (B, H, W, C_in) the layer computes, per sample,

.. math::

    W(x) = (1 + \Lambda(x))\,W_0 + \sum_{k=1}^{K} \pi_k(x)\,\Phi_k ,\qquad y = W(x) * x

with ``Λ(x) = diag(sigmoid(a(x)))`` over output channels (``ca``, ``comb``), ``π(x) = softmax(r(x))`` over the
``K`` bases (``sr``, ``comb``) and ``[r, a] = relu(GAP(z)·F1)·F2`` (no biases) on the routing input ``z``:
``x`` itself (``spec.route == "layer"``) or the tensor passed as ``layer(x, route_input=z)``
(``spec.route == "block"``: the residual block's input, NHWC, ``spec.route_channels`` channels).
``static`` is the plain convolution ``y = W_0 * x``. ``sr_uniform`` (the capacity control of ``sr``) has
``sr``'s variables but ``π_k = 1/K`` for every sample: the router is not run (its variables get no gradient:
``None`` on TensorFlow/torch), the layer computes ``(W_0 + mean_k Φ_k) * x`` through the same formulations
and reports no coefficients. Padding is explicit and symmetric (``keras.ops.pad``)
followed by a 'VALID' convolution, so stride 2 matches PyTorch exactly. With ``basis_kernel=1`` each
``Φ_k`` is the centre tap of a ``k×k`` kernel (tap ``c = k // 2``, also for even ``k``): a 1×1 map applied to
``x_pad[:, s·i + c, s·j + c, :]``, exact for every stride and padding a spec accepts. Where the centre tap
never reaches the padding (``padding <= min(c, k − 1 − c)``: every "same" odd conv, every ``padding=0``
conv) the samples are a strided slice of the *unpadded* input (``x`` itself at stride 1), so their gradient
does not run through the pad: on TensorFlow/CPU this took the 1×1-basis ``residual_agg`` step of the
ResNet-50 layer3 conv2 shape from ≈ 1.45× to ≈ 1.25× the static conv (a few-second check, not a benchmark).

Formulations (the same function; see :mod:`impl_torch.layers.drt_conv`): ``output_mix`` (one conv with the K
bases stacked to K·C_out outputs, then a per-sample weighted sum), ``residual_agg`` (``ΔW = Σ π_k Φ_k``,
then a batched matmul for 1×1 bases — "static conv + per-sample matmul" — or a per-sample conv for full
bases) and ``kernel_merge`` (one per-sample conv with the folded kernel). :func:`formulation_choices` lists
what each layer of a model runs (``auto``: what :mod:`harness.autotune` picked). Every convolution goes
through :mod:`impl_keras.conv_backend` (never a grouped
``keras.ops.conv`` on TensorFlow: XLA makes its gradient ~343× slower on CPU).

Variables (Keras layouts) and their neutral (torch ``state_dict``) names:

================  ==========================  =====================  ==========================
Keras variable    Keras shape                 neutral name           neutral shape
================  ==========================  =====================  ==========================
``kernel``        (k, k, C_in, C_out) HWIO    ``weight``             (C_out, C_in, k, k) OIHW
``bases``         (K, b, b, C_in, C_out)      ``bases``              (K, C_out, C_in, b, b)
``router_fc1``    (C_r, hidden)               ``router.fc1.weight``  (hidden, C_r)
``router_fc2``    (hidden, branch_out)        ``router.fc2.weight``  (branch_out, hidden)
================  ==========================  =====================  ==========================

``C_r = spec.router_in``: ``C_in``, or the block input's channels with block routing.

Backends: the tox/CI backend is TensorFlow. On the Keras torch and JAX backends ``keras.ops`` computes 64-bit
``matmul``/``einsum`` in 32-bit (Keras follows JAX's x64-off rule); the layer casts back to the input dtype,
so float64 runs there but carries float32 rounding in the coefficient branch and the 1×1-basis products.

Initialisation (algorithms.md §1): W0 and every Φ_k ``N(0, 2/(C_out·b·b))`` (kaiming-normal, fan_out, relu);
both Linear kernels ``N(0, 0.01²)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from harness import autotune
from harness.spec.layer import DRTConvSpec
from impl_keras import conv_backend
from impl_keras.numerics import mean
from impl_keras.weights import (
    assign,
    bases_to_keras,
    bases_to_neutral,
    hwio_to_oihw,
    linear_to_keras,
    linear_to_neutral,
    oihw_to_hwio,
)

Tensor = Any


def resolve_formulation(spec: DRTConvSpec, input_shape: tuple[int | None, ...] | None = None) -> str:
    """The concrete formulation; ``auto`` is resolved by :func:`harness.autotune.resolve_formulation` with
    this module's calibration (:func:`measure_formulations`, :func:`describe_device`)."""
    return autotune.resolve_formulation(
        spec,
        "keras",
        _device(),
        _known_shape(input_shape),
        measure=measure_formulations,
        describe=describe_device,
    )


def _known_shape(input_shape: tuple[int | None, ...] | None) -> tuple[int, ...] | None:
    """The input shape if fully known (else None: :mod:`harness.autotune` uses its default size and batch)."""
    if input_shape is None or None in input_shape:
        return None
    return tuple(int(d) for d in input_shape)


def formulation_choices(model: Any) -> list[tuple[str, str, str]]:
    """``[(layer path, shape key, formulation)]`` for every dynamic :class:`DRTConv2D` of ``model`` (a layer
    or model), in neutral-name (= torch module, forward) order, paths as the torch module paths
    (``features.layer3.0.conv2``). The formulation is what the layer runs (``auto``: the choice of
    :mod:`harness.autotune`), the key :func:`harness.autotune.shape_key` of the shape it was resolved for in
    ``build()``. The backbones build their layers with unknown spatial size, so there the key (and the
    calibration) uses autotune's default size for the layer's ``C_in`` (56, 28, 14, 7 for ResNet stages 1–4)
    and batch 8. An unbuilt ``auto`` layer is listed as :data:`harness.autotune.UNRESOLVED`; static layers
    are left out. ``harness.autotune.format_choices`` prints it."""
    from impl_keras.layers.basic import NeutralContainer
    from impl_keras.weights import _children

    rows: list[tuple[str, str, str]] = []

    def walk(layer: Any, path: str) -> None:
        if isinstance(layer, DRTConv2D):
            if layer.spec.dynamic:
                key = layer.formulation_key or autotune.shape_key(layer.spec, "keras", None)
                rows.append((path, key, layer.formulation or autotune.UNRESOLVED))
            return
        # torch module names: a NeutralContainer's registered names, else the neutral-weights recursion's
        children = layer.named_children() if isinstance(layer, NeutralContainer) else _children(layer).items()
        for name, child in children:
            walk(child, f"{path}.{name}" if path else name)

    walk(model, "")
    return rows


def _device() -> str:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    return "cpu"


@keras.saving.register_keras_serializable(package="drt_bench")
class DRTConv2D(keras.layers.Layer):
    """DRT convolution (NHWC); see the module docstring for the maths. ``DRTConv2D(spec)(x) -> y``, or
    ``DRTConv2D(spec)(x, route_input=block_x) -> y`` for ``spec.route == "block"``.

    After each call ``last_coefficients`` holds the coefficients (``stop_gradient``): ``pi`` (B, K) for
    ``sr``/``comb`` and ``lam`` (B, C_out) for ``ca``/``comb`` (empty for ``static`` and ``sr_uniform``,
    whose π is the constant ``1/K``). Read them after an
    eager call; inside a traced function they are symbolic.
    """

    def __init__(self, spec: DRTConvSpec | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(spec, dict):
            spec = DRTConvSpec.from_dict(spec)
        if not isinstance(spec, DRTConvSpec):
            raise TypeError(f"DRTConv2D expects a DRTConvSpec (or its dict), got {type(spec).__name__}")
        self.spec = spec
        self.formulation: str | None = "static"
        #: :func:`harness.autotune.shape_key` of the shape the formulation was resolved for (set in build()).
        self.formulation_key: str | None = None
        if spec.dynamic and spec.formulation == "auto":
            self.formulation = None  # resolved in build(), with the input shape
        elif spec.dynamic:
            self.formulation = spec.formulation
        self._set_jit_support()
        object.__setattr__(self, "_last_coefficients", {})

    def _set_jit_support(self) -> None:
        """A per-sample (grouped) conv must not be compiled by XLA on TF CPU (``fit(jit_compile="auto")``)."""
        s = self.spec
        grouped = self.formulation == "kernel_merge" or (
            self.formulation == "residual_agg" and s.has_routing and s.basis_kernel == "full"
        )
        if grouped and conv_backend.uses_grouped_conv_fast_path():
            self.supports_jit = False

    @property
    def last_coefficients(self) -> dict[str, Tensor]:
        return self._last_coefficients

    # ---- build ---------------------------------------------------------------------------------------
    def build(self, input_shape: tuple[int | None, ...]) -> None:
        s = self.spec
        if input_shape[-1] is not None and input_shape[-1] != s.in_channels:
            raise ValueError(
                f"DRTConv2D expects {s.in_channels} input channels (NHWC, last axis), got shape {input_shape}"
            )
        if self.formulation is None:
            self.formulation = resolve_formulation(s, tuple(input_shape))
            self._set_jit_support()
        if s.dynamic:
            self.formulation_key = autotune.shape_key(s, "keras", _known_shape(tuple(input_shape)))
        k = s.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(k, k, s.in_channels, s.out_channels),
            initializer=keras.initializers.RandomNormal(0.0, math.sqrt(2.0 / (s.out_channels * k * k))),
        )
        self.bases = None
        self.router_fc1 = self.router_fc2 = None
        if s.has_routing:
            b = s.basis_size
            self.bases = self.add_weight(
                name="bases",
                shape=(s.K, b, b, s.in_channels, s.out_channels),
                initializer=keras.initializers.RandomNormal(0.0, math.sqrt(2.0 / (s.out_channels * b * b))),
            )
        if s.dynamic:
            lin = keras.initializers.RandomNormal(0.0, 0.01)
            self.router_fc1 = self.add_weight(
                name="router_fc1", shape=(s.router_in, s.hidden), initializer=lin
            )
            self.router_fc2 = self.add_weight(
                name="router_fc2", shape=(s.hidden, s.branch_out), initializer=lin
            )

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw every variable from its initialiser (algorithms.md §1); ``seed`` makes it reproducible."""
        s = self.spec
        gen = keras.random.SeedGenerator(seed) if seed is not None else None
        for var in [v for v in (self.kernel, self.bases) if v is not None]:
            fan_out = s.out_channels * var.shape[-4] * var.shape[-3]
            std = math.sqrt(2.0 / fan_out)
            var.assign(keras.random.normal(var.shape, stddev=std, dtype=var.dtype, seed=gen))
        for var in [v for v in (self.router_fc1, self.router_fc2) if v is not None]:
            var.assign(keras.random.normal(var.shape, stddev=0.01, dtype=var.dtype, seed=gen))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        h, w = input_shape[1], input_shape[2]
        out = self.spec.output_size
        return (
            input_shape[0],
            None if h is None else out(h),
            None if w is None else out(w),
            self.spec.out_channels,
        )

    # ---- call ----------------------------------------------------------------------------------------
    def routing_input(self, x: Tensor, route_input: Tensor | None) -> Tensor:
        """The tensor the branch pools: ``x`` (``route="layer"``; a ``route_input`` is then ignored, so a
        block may pass its input to every conv) or ``route_input`` (``route="block"``: required, NHWC with
        ``spec.route_channels`` channels)."""
        s = self.spec
        if s.route == "layer":
            return x
        if route_input is None:
            raise ValueError(
                f"DRTConv2D with route='block' needs the block input: layer(x, route_input=...) "
                f"({s.route_channels} channels, NHWC)"
            )
        shape = tuple(route_input.shape)
        if len(shape) != 4 or (shape[-1] is not None and shape[-1] != s.route_channels):
            raise ValueError(f"route_input: expected (B, H, W, {s.route_channels}) (NHWC), got {shape}")
        return route_input

    def coefficients(
        self, x: Tensor, route_input: Tensor | None = None
    ) -> tuple[Tensor | None, Tensor | None]:
        """``(π, Λ)`` from the branch ``relu(GAP(z)·F1)·F2`` on :meth:`routing_input`: softmax of the first
        K, sigmoid of the rest. ``sr_uniform``: ``π = 1/K`` (B, K) without running the branch (the routing
        input is still validated)."""
        s = self.spec
        dt = x.dtype
        if s.uniform_routing:
            self.routing_input(x, route_input)
            return ops.full((ops.shape(x)[0], s.K), 1.0 / s.K, dtype=dt), None
        z = ops.cast(self.routing_input(x, route_input), dt)
        h = ops.relu(ops.cast(ops.matmul(mean(z, axis=(1, 2)), self.router_fc1), dt))
        logits = ops.cast(ops.matmul(h, self.router_fc2), dt)
        pi = None
        if s.has_routing:  # softmax over one logit is exactly 1 (with zero gradient), as in torch
            pi = ops.softmax(logits[:, : s.K], axis=-1) if s.K > 1 else ops.ones_like(logits[:, :1])
        off = s.K if s.has_routing else 0
        lam = ops.sigmoid(logits[:, off:]) if s.has_attention else None
        return pi, lam

    def call(self, x: Tensor, route_input: Tensor | None = None) -> Tensor:
        """``y = W(z) * x``; ``route_input`` = ``z`` for ``route="block"`` (ignored otherwise)."""
        s = self.spec
        p = s.padding
        xp = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]) if p else x
        if not s.dynamic:
            return conv_backend.conv2d(xp, self.kernel, s.stride)
        pi, lam = self.coefficients(x, route_input)
        coeffs = {}
        if pi is not None and s.has_coefficients:
            coeffs["pi"] = ops.stop_gradient(pi)
        if lam is not None:
            coeffs["lam"] = ops.stop_gradient(lam)
        object.__setattr__(self, "_last_coefficients", coeffs)
        if self.formulation == "output_mix":
            return self._output_mix(xp, pi, lam, x)
        if self.formulation == "residual_agg":
            return self._residual_agg(xp, pi, lam, x)
        return self._kernel_merge(xp, pi, lam)

    def _centre_taps(self, xp: Tensor, x: Tensor) -> Tensor:
        """``x_pad[:, c + s·i, c + s·j, :]`` for every output position (c = k // 2; ``xp`` = ``x`` padded).

        In ``x``'s coordinates the samples are ``x[:, s·i + c − p, s·j + c − p, :]``; when
        ``p <= min(c, k − 1 − c)`` none falls in the padding, so they are read from ``x`` (``x`` itself for a
        stride-1 "same" odd kernel) and the gradient skips the pad and the padded slice (same values, fewer
        ops: the slice of the padded tensor cost ≈ 0.25× a static conv step on TF/CPU)."""
        k, st, p = self.spec.kernel_size, self.spec.stride, int(self.spec.padding)
        c = k // 2
        t = k - 1 - c
        if p <= min(c, t):
            a, e = c - p, t - p
            if a == 0 and e == 0 and st == 1:
                return x
            end = -e if e > 0 else None
            return x[:, a:end:st, a:end:st, :]
        end = -t if t > 0 else None
        return xp[:, c:end:st, c:end:st, :]

    def _static_scaled(self, xp: Tensor, lam: Tensor | None) -> Tensor:
        y = conv_backend.conv2d(xp, self.kernel, self.spec.stride)
        return y if lam is None else y * (1.0 + lam)[:, None, None, :]

    def _output_mix(self, xp: Tensor, pi: Tensor | None, lam: Tensor | None, x: Tensor) -> Tensor:
        s = self.spec
        y = self._static_scaled(xp, lam)
        if pi is None:
            return y
        b = s.basis_size
        wb = ops.reshape(
            ops.transpose(self.bases, (1, 2, 3, 0, 4)), (b, b, s.in_channels, s.K * s.out_channels)
        )
        if s.basis_kernel == "full":
            yb = conv_backend.conv2d(xp, wb, s.stride)
        else:
            yb = ops.cast(ops.matmul(self._centre_taps(xp, x), wb[0, 0]), xp.dtype)
        shp = ops.shape(yb)
        yb = ops.reshape(yb, (-1, shp[1], shp[2], s.K, s.out_channels))
        return y + ops.cast(ops.einsum("bk,bhwko->bhwo", pi, yb), y.dtype)

    def _delta(self, pi: Tensor) -> Tensor:
        """``ΔW = Σ_k π_k Φ_k`` per sample: (B, b, b, C_in, C_out)."""
        return ops.cast(ops.einsum("bk,kxyio->bxyio", pi, self.bases), pi.dtype)

    def _residual_agg(self, xp: Tensor, pi: Tensor | None, lam: Tensor | None, x: Tensor) -> Tensor:
        s = self.spec
        y = self._static_scaled(xp, lam)
        if pi is None:
            return y
        dw = self._delta(pi)
        if s.basis_kernel == "full":
            return y + conv_backend.per_sample_conv2d(xp, dw, s.stride)
        u = self._centre_taps(xp, x)
        return y + ops.cast(ops.einsum("bhwi,bio->bhwo", u, dw[:, 0, 0]), y.dtype)

    def _kernel_merge(self, xp: Tensor, pi: Tensor | None, lam: Tensor | None) -> Tensor:
        s = self.spec
        k = s.kernel_size
        w0 = self.kernel[None]
        if lam is not None:
            w0 = w0 * (1.0 + lam)[:, None, None, None, :]
        w = w0
        if pi is not None:
            dw = self._delta(pi)
            if s.basis_kernel != "full" and k > 1:
                c = k // 2
                dw = ops.pad(dw, [[0, 0], [c, k - 1 - c], [c, k - 1 - c], [0, 0], [0, 0]])
            w = w0 + dw
        return conv_backend.per_sample_conv2d(xp, w, s.stride)

    # ---- config & neutral weights ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "spec": self.spec.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DRTConv2D:
        return cls(**config)

    def neutral_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of this layer's tensors in the neutral format (torch names/layouts)."""
        s = self.spec
        k, b = s.kernel_size, s.basis_size
        shapes = {"weight": (s.out_channels, s.in_channels, k, k)}
        if s.has_routing:
            shapes["bases"] = (s.K, s.out_channels, s.in_channels, b, b)
        if s.dynamic:
            shapes["router.fc1.weight"] = (s.hidden, s.router_in)
            shapes["router.fc2.weight"] = (s.branch_out, s.hidden)
        return shapes

    def neutral_variables(self) -> dict[str, tuple[Any, Any, Any]]:
        """``{neutral name: (variable, keras→neutral array converter, neutral→keras converter)}``."""
        out: dict[str, tuple[Any, Any, Any]] = {"weight": (self.kernel, hwio_to_oihw, oihw_to_hwio)}
        if self.bases is not None:
            out["bases"] = (self.bases, bases_to_neutral, bases_to_keras)
        if self.router_fc1 is not None:
            out["router.fc1.weight"] = (self.router_fc1, linear_to_neutral, linear_to_keras)
            out["router.fc2.weight"] = (self.router_fc2, linear_to_neutral, linear_to_keras)
        return out

    def to_neutral(self) -> dict[str, np.ndarray]:
        """This layer's weights as neutral arrays (names relative to the layer)."""
        return {name: to_neutral(var) for name, (var, to_neutral, _) in self.neutral_variables().items()}

    def from_neutral(self, arrays: dict[str, np.ndarray], strict: bool = True) -> None:
        """Load neutral arrays (names relative to the layer); strict: every name, exact shapes."""
        from harness.weights.neutral import validate

        if not self.built:
            self.build((None, None, None, self.spec.in_channels))
        present = validate(self.neutral_shapes(), arrays, strict=strict, context=self.name)
        for name, (var, _, to_keras) in self.neutral_variables().items():
            if name in present:
                assign(var, to_keras(arrays[name]))


# ---------------------------------------------------------------------------------------------------------
# formulation="auto": the framework side of harness.autotune
# ---------------------------------------------------------------------------------------------------------
def describe_device(device: str) -> tuple[str, str]:
    """The device and library-version parts of an autotune cache key (Keras backend and its version)."""
    backend = keras.backend.backend()
    vers = f"keras {keras.__version__}/{backend}"
    if backend == "tensorflow":
        import tensorflow as tf

        vers += f" tf {tf.__version__}"
    elif backend == "jax":
        import jax

        vers += f" jax {jax.__version__}"
    elif backend == "torch":
        import torch

        vers += f" torch {torch.__version__}"
    dev = str(device).lower()
    desc = f"{'gpu' if ('gpu' in dev or 'cuda' in dev) else 'cpu'}:{autotune.cpu_model()}:{os.cpu_count()}c"
    return desc, vers


def measure_formulations(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
    """Median seconds of forward+backward of one :class:`DRTConv2D` per formulation on a random
    ``(b, h, w, C_in)`` input on the active backend, one per candidate formulation
    (:func:`harness.autotune.candidates`), timed by :func:`harness.autotune.time_interleaved` (the
    ``measure`` of ``formulation="auto"``; ``device`` is the backend's default placement)."""
    backend = keras.backend.backend()
    gen = np.random.default_rng(0)
    x_np = gen.standard_normal((b, h, w, spec.in_channels)).astype("float32")
    r_np = gen.standard_normal((b, h, w, spec.router_in)).astype("float32") if spec.route == "block" else None
    steps: dict[str, Callable[[], None]] = {}
    for f in autotune.candidates(spec):
        layer = DRTConv2D(spec.replace(formulation=f))
        layer.build((None, h, w, spec.in_channels))
        steps[f] = _train_step(layer, x_np, backend, r_np)
    return autotune.time_interleaved(steps, lambda: None)


def _train_step(layer: Any, x_np: Any, backend: str, r_np: Any = None) -> Callable[[], None]:
    """A forward+backward callable for one Keras layer on the active backend (``r_np``: the routing input of
    a block-routed layer, else None)."""
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x_np)
        r = None if r_np is None else tf.constant(r_np)

        @tf.function(jit_compile=False, reduce_retracing=True)
        def tf_step(xx: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(xx)
                loss = tf.reduce_sum(layer(xx, route_input=r))
            return tape.gradient(loss, [xx] + list(layer.trainable_variables))

        return lambda: [g.numpy() for g in tf_step(x)] and None
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(x_np)
        r = None if r_np is None else jnp.asarray(r_np)
        tv = [v.value for v in layer.trainable_variables]
        ntv = [v.value for v in layer.non_trainable_variables]

        def loss(tv: Any, xx: Any) -> Any:
            y, _ = layer.stateless_call(tv, ntv, xx, route_input=r)
            return jnp.sum(y)

        g = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return lambda: jax.block_until_ready(g(tv, x)) and None
    if backend == "torch":
        import torch

        x = torch.as_tensor(x_np)
        r = None if r_np is None else torch.as_tensor(r_np)

        def torch_step() -> None:
            xx = x.clone().requires_grad_(True)
            layer(xx, route_input=r).sum().backward()

        return torch_step
    # numpy/openvino backends: forward only
    return lambda: ops.convert_to_numpy(layer(x_np, route_input=r_np)) and None  # pragma: no cover
