"""Base class of every method (Keras 3, backend-agnostic): networks by name, torch-semantics optimisers, one
pure compiled function per optimisation step.

A method writes each step's loss as ``loss_fn(ctx, batch, scalars) -> (loss, metrics)`` where ``ctx(net, x,
training=True)`` runs ``self.nets[net].stateless_call`` on explicit variable values (BatchNorm statistics are
threaded through ``ctx`` in call order, exactly like torch's in-place updates). :meth:`Algorithm.run_step`
differentiates it with respect to the trainable values of the networks being trained
(:func:`impl_keras.grad.value_and_grad`), applies their optimisers (:mod:`impl_keras.optim`) and assigns the
new
values — all inside one compiled function (:func:`impl_keras.grad.compile_step`: ``tf.function`` on TF,
``jax.jit`` on JAX). Networks not being trained still run (and update their BatchNorm statistics) but get no
step. Mirrors :class:`impl_torch.methods.base.Algorithm`: the networks, the steps of each stage, the copies at
a stage switch and the prediction rule all come from the method's row of :mod:`harness.method_table`; a
method subclass holds only its per-step loss code (one ``loss_fn`` per :class:`~harness.method_table.StepDef`,
named by ``step.loss``).

Mixed precision (:meth:`Algorithm.set_precision`, ``bf16`` → Keras policy ``mixed_bfloat16``, ``fp16`` →
``mixed_float16``): the networks are built and kept in float32 (variables, optimiser state, predictions,
checkpoints and neutral weights are those of an fp32 job). While a training step runs (and is traced), every
layer of every network takes the mixed policy (:func:`mixed_policy`; restored right after, so nothing leaks
to evaluation, to other jobs of the process or to Keras' global policy) — except the BatchNorm layers, which
stay float32 as ``keras.layers.BatchNormalization`` and torch's kernels keep their statistics: their input is
cast to float32 and their running statistics are never rounded to 16 bits. :class:`StepContext` casts a
network's input to the compute dtype and its outputs to float32, so every loss is computed in float32.
``fp16`` adds dynamic loss scaling inside the compiled step, with torch ``GradScaler``'s rule: the loss is
multiplied by ``S`` (initially 2**16), the gradients divided by it; a step with a non-finite gradient changes
no weight and no optimiser slot and halves ``S``; 2000 finite steps in a row double it (``S`` and that count
are checkpointed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from harness.algorithm import AlgorithmCore
from harness.errors import NonFiniteLoss
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from harness.spec.names import KERAS_DRT_VARIABLES
from impl_keras.grad import compile_step, value_and_grad
from impl_keras.numerics import mean
from impl_keras.optim import KOptimizer

Tensor = Any
LossFn = Callable[["StepContext", dict[str, Tensor], dict[str, Tensor]], tuple[Tensor, dict[str, Tensor]]]

#: the Keras dtype policy of each training precision (``fp32``: the networks' own dtype)
PRECISION_POLICIES: dict[str, str | None] = {"fp32": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
#: dynamic loss scaling (``fp16``), torch ``GradScaler``'s defaults: initial scale, growth, backoff, interval
LOSS_SCALE_INIT, LOSS_SCALE_GROWTH, LOSS_SCALE_BACKOFF, LOSS_SCALE_INTERVAL = 2.0**16, 2.0, 0.5, 2000


@contextlib.contextmanager
def floatx(dtype: str | None) -> Iterator[None]:
    """Temporarily set ``keras.config.floatx`` (layers take their dtype from it when built)."""
    old = keras.config.floatx()
    if dtype:
        keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old)


def build_critic(in_features: int, hidden: int, depth: int, dtype: str | None = None) -> keras.layers.Layer:
    """Domain critic (Linear-ReLU) × depth - Linear(·, 1); Linear N(0, 0.01²), bias 0 (names as torch).

    ``dtype`` is passed explicitly: Keras caches its global dtype policy, so ``set_floatx`` alone does not
    reach layers created after some other layer was built in float32 (found by test order).
    """
    from impl_keras.layers.basic import Linear, ReLU, Sequential

    layers: list[keras.layers.Layer] = []
    d = in_features
    for _ in range(depth):
        layers += [Linear(d, hidden, dtype=dtype), ReLU(dtype=dtype)]
        d = hidden
    layers.append(Linear(d, 1, dtype=dtype))
    return Sequential(layers, dtype=dtype)


@contextlib.contextmanager
def mixed_policy(nets: dict[str, keras.layers.Layer], policy: str | None) -> Iterator[None]:
    """Within the block every layer of ``nets`` (recursively) has the dtype policy ``policy`` except the
    BatchNorm layers (kept float32: see the module docstring); every layer's own policy is restored after.
    ``policy`` None: nothing changes."""
    if policy is None:
        yield
        return
    from impl_keras.layers.basic import BatchNorm

    layers = {
        id(la): la for net in nets.values() for la in net._flatten_layers(include_self=True, recursive=True)
    }
    saved: list[tuple[keras.layers.Layer, Any]] = []
    try:
        for layer in layers.values():  # a layer shared by two networks is switched (and restored) once
            if not isinstance(layer, BatchNorm):
                saved.append((layer, layer.dtype_policy))
                layer.dtype_policy = policy
        yield
    finally:
        for layer, old in saved:
            layer.dtype_policy = old


def _autocast_scope(dtype: str) -> contextlib.AbstractContextManager[Any]:
    """Keras' variable autocast scope (what ``Layer.__call__`` enters for a mixed policy).
    ``stateless_call`` runs the network's own ``call`` without it, so the variables a top-level network
    reads itself (``CDANMap``'s ``rf``/``rg``) would stay float32 and ``keras.ops`` type promotion would
    compute that network in float32."""
    from keras.src.backend import AutocastScope  # not exported by keras.backend

    return AutocastScope(dtype)


def _cast_floats(tree: Any, dtype: str) -> Any:
    """Every floating tensor of ``tree`` (a tensor, tuple, list or dict) cast to ``dtype``."""
    if isinstance(tree, dict):
        return {k: _cast_floats(v, dtype) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return type(tree)(_cast_floats(v, dtype) for v in tree)
    if tree is None or not keras.backend.is_float_dtype(keras.backend.standardize_dtype(tree.dtype)):
        return tree
    return ops.cast(tree, dtype)


class StepContext:
    """Explicit variable values of every network during one step; ``ctx(net, x, training)`` runs a network.

    ``compute_dtype`` (mixed precision): a network's floating inputs are cast to it and its outputs to
    ``output_dtype`` (float32), so the loss code around the networks computes in float32."""

    def __init__(
        self,
        nets: dict[str, keras.layers.Layer],
        tv: dict[str, list],
        ntv: dict[str, list],
        compute_dtype: str | None = None,
        output_dtype: str = "float32",
    ) -> None:
        self.nets, self.tv, self.ntv = nets, tv, ntv
        self.compute_dtype, self.output_dtype = compute_dtype, output_dtype

    def __call__(self, net: str, x: Tensor, training: bool = True) -> Tensor:
        scope: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.compute_dtype is not None:
            x = _cast_floats(x, self.compute_dtype)
            scope = _autocast_scope(self.compute_dtype)
        with scope:
            out, new_ntv = self.nets[net].stateless_call(self.tv[net], self.ntv[net], x, training=training)
        if training:
            self.ntv[net] = list(new_ntv)
        if self.compute_dtype is not None:
            out = _cast_floats(out, self.output_dtype)
        return out


class Algorithm(AlgorithmCore):
    """Networks (``self.nets``), optimisers, progress and stages; subclasses implement :meth:`update`."""

    def __init__(
        self, spec: MethodSpec, model_spec: ModelSpec, *, dtype: str | None = None, compiled: bool = True
    ) -> None:
        self.spec = spec
        self.model_spec = model_spec
        self.dtype = dtype or keras.config.floatx()
        self.compiled = compiled
        with floatx(self.dtype):
            self.nets: dict[str, keras.layers.Layer] = self.build_nets()
        self.init_progress()
        self.optimizers: dict[str, KOptimizer] = {}
        self._fns: dict[Any, Callable[..., Any]] = {}
        self.make_optimizers()
        self.precision = "fp32"
        self.loss_scale: list[keras.Variable] = []  # fp16: [scale, finite steps in a row]

    # ---- precision ----------------------------------------------------------------------------------------
    def set_precision(self, precision: str) -> None:
        """Train in ``precision`` (``fp32``, ``bf16``, ``fp16``; see the module docstring). Mixed precision
        needs float32 networks (``dtype`` float32); compiled steps are rebuilt."""
        if precision not in PRECISION_POLICIES:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISION_POLICIES)}")
        if precision != "fp32" and self.dtype != "float32":
            raise ValueError(
                f"precision {precision!r} is mixed precision (float32 variables): the job's dtype is "
                f"{self.dtype!r}; use dtype float32 (or precision fp32)"
            )
        self.precision = precision
        self.loss_scale = []
        if precision == "fp16":
            self.loss_scale = [
                keras.Variable(LOSS_SCALE_INIT, dtype="float32", trainable=False, name="loss_scale"),
                keras.Variable(0.0, dtype="float32", trainable=False, name="loss_scale_good_steps"),
            ]
        self._fns.clear()

    @property
    def policy(self) -> str | None:
        """The Keras dtype policy of the training steps (None: the networks' own)."""
        return PRECISION_POLICIES[self.precision]

    @property
    def compute_dtype(self) -> str | None:
        """The dtype the networks compute in during training steps (None: their own)."""
        return None if self.policy is None else keras.DTypePolicy(self.policy).compute_dtype

    # ---- construction ------------------------------------------------------------------------------------
    def build_nets(self) -> dict[str, keras.layers.Layer]:
        """``features``, the classifier heads and the extra networks of the method's table row."""
        from impl_keras.backbones import build_features, build_head

        ms, dt, C = self.model_spec, self.dtype, self.spec.num_classes
        nets: dict[str, keras.layers.Layer] = {"features": build_features(ms, dtype=dt)}
        for name in self.spec.classifier_names():
            nets[name] = build_head(ms, num_classes=C, dtype=dt, name=name)
        for net in self.spec.row.nets:
            if net.kind == "features":
                nets[net.name] = build_features(ms, dtype=dt)
            elif net.kind == "classifier":
                nets[net.name] = build_head(ms, num_classes=C, dtype=dt, name=net.name)
            elif net.kind == "critic":
                nets[net.name] = build_critic(
                    self.spec.critic_in(ms.feature_dim),
                    int(self.spec["critic_hidden"]),
                    int(self.spec["critic_depth"]),
                    dtype=dt,
                )
            else:
                nets[net.name] = self.build_fixed(net.name)
        return nets

    def build_fixed(self, name: str) -> keras.layers.Layer:
        """A ``fixed`` network of the row (non-trainable tensors); methods that have one override this."""
        raise NotImplementedError(f"{type(self).__name__} must build its fixed network {name!r}")

    def _is_new(self, net: str, var: keras.Variable) -> bool:
        if not self.spec.pretrained or not net.endswith("features"):
            return True
        return any(var.path.endswith(s) or f"/{s}" in var.path for s in KERAS_DRT_VARIABLES)

    def make_optimizers(self) -> None:
        """One optimiser per network the current stage trains; compiled steps are rebuilt."""
        for net in self.spec.trained_nets(self.stage):
            tv = self.nets[net].trainable_variables
            with floatx(self.dtype):
                self.optimizers[net] = KOptimizer(
                    self.spec.optimizer(net, self.stage), tv, [self._is_new(net, v) for v in tv], name=net
                )
        self._fns.clear()

    def copy_net(self, src: str, dst: str) -> None:
        copy_net(self.nets[src], self.nets[dst])

    def current_lrs(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for n, o in self.optimizers.items():
            for is_new in sorted(set(o.is_new)):
                out[f"{n}/{'new' if is_new else 'pretrained'}"] = (
                    o.spec.lr_new if is_new else o.spec.lr
                ) * self.lr_factor
        return out

    def scalar(self, value: float) -> Tensor:
        """A float scalar tensor of the model dtype (compiled steps take scalars as tensors: no retracing)."""
        return ops.convert_to_tensor(np.asarray(value, dtype=self.dtype))

    # ---- the step machinery ----------------------------------------------------------------------------
    def _pure_step(self, loss_fn: LossFn, train: list[str]) -> Callable[..., Any]:
        nets = self.nets
        optimizers = self.optimizers
        sizes = [len(nets[n].trainable_variables) for n in train]
        compute_dtype, scaled = self.compute_dtype, bool(self.loss_scale)

        def objective(
            params: list, tv: dict, ntv: dict, batch: dict, scalars: dict, scale: list
        ) -> tuple[Tensor, Any]:
            tv = dict(tv)
            i = 0
            for n, k in zip(train, sizes):
                tv[n] = list(params[i : i + k])
                i += k
            ctx = StepContext(nets, tv, dict(ntv), compute_dtype)
            loss, metrics = loss_fn(ctx, batch, scalars)
            return (loss * scale[0] if scaled else loss), (loss, metrics, ctx.ntv)

        vg = value_and_grad(objective)

        def step(tv: dict, ntv: dict, opt_state: dict, batch: dict, scalars: dict, scale: list) -> tuple:
            params = [p for n in train for p in tv[n]]
            (_, (loss, metrics, new_ntv)), grads = vg(params, tv, ntv, batch, scalars, scale)
            if scaled:
                grads = [None if g is None else g / scale[0] for g in grads]
            new_tv, new_opt = {}, {}
            i = 0
            for n, k in zip(train, sizes):
                new_tv[n], new_opt[n] = optimizers[n].apply(
                    list(tv[n]), list(grads[i : i + k]), opt_state[n], scalars["lr_factor"]
                )
                i += k
            if scaled:
                new_tv, new_opt, scale = _skip_unless_finite(grads, tv, new_tv, opt_state, new_opt, scale)
            return new_tv, new_ntv, new_opt, loss, metrics, scale

        return step

    def run_step(
        self,
        key: str,
        loss_fn: LossFn,
        train: list[str],
        batch: dict[str, Tensor],
        scalars: dict[str, float] | None = None,
    ) -> tuple[float, dict[str, float]]:
        """One optimisation step of ``train``'s networks on ``loss_fn`` (compiled once per ``key``)."""
        fn = self._fns.get(key)
        if fn is None:
            fn = self._fns[key] = compile_step(self._pure_step(loss_fn, train), self.compiled)
        sc = {"lr_factor": self.scalar(self.lr_factor)}
        sc.update({k: self.scalar(v) for k, v in (scalars or {}).items()})
        tv = {n: [v.value for v in net.trainable_variables] for n, net in self.nets.items()}
        ntv = {n: [v.value for v in net.non_trainable_variables] for n, net in self.nets.items()}
        opt_state = {n: [v.value for v in self.optimizers[n].variables] for n in train}
        scale = [v.value for v in self.loss_scale]
        with mixed_policy(self.nets, self.policy):  # traced (first call) and run under the step's policy
            new_tv, new_ntv, new_opt, loss, metrics, new_scale = fn(tv, ntv, opt_state, batch, sc, scale)
        for var, val in zip(self.loss_scale, new_scale):
            var.assign(val)
        loss_f = float(ops.convert_to_numpy(loss))
        if not np.isfinite(loss_f):
            raise NonFiniteLoss.from_value(self.spec.name, loss_f)
        for n in train:
            for var, val in zip(self.nets[n].trainable_variables, new_tv[n]):
                var.assign(val)
            for var, val in zip(self.optimizers[n].variables, new_opt[n]):
                var.assign(val)
        for n, net in self.nets.items():
            for var, val in zip(net.non_trainable_variables, new_ntv[n]):
                var.assign(val)
        return loss_f, {k: float(ops.convert_to_numpy(v)) for k, v in metrics.items()}

    # ---- inference ---------------------------------------------------------------------------------------
    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities (B, C) in inference mode (a compiled pure function of the current values)."""
        key = ("predict", self.stage)
        fn = self._fns.get(key)
        if fn is None:
            nets = self.nets

            def pure(tv: dict, ntv: dict, x: Tensor) -> Tensor:
                return self._predict(StepContext(nets, dict(tv), dict(ntv)), x)

            fn = self._fns[key] = compile_step(pure, self.compiled)
        tv = {n: [v.value for v in net.trainable_variables] for n, net in self.nets.items()}
        ntv = {n: [v.value for v in net.non_trainable_variables] for n, net in self.nets.items()}
        return fn(tv, ntv, x)

    def _predict(self, ctx: StepContext, x: Tensor) -> Tensor:
        """The table row's rule: ``head`` (softmax of the head), ``pair`` (:func:`two_head_predict` with
        ``mcd_predict``) or ``all_heads`` (mean of every head's softmax), on the stage's features."""
        fx = ctx(self.spec.predict_features(self.stage), x, False)
        heads = self.spec.classifier_names()
        rule = self.spec.row.predict
        if rule == "pair":
            z1, z2 = ctx(heads[0], fx, False), ctx(heads[1], fx, False)
            return two_head_predict(z1, z2, self.spec["mcd_predict"])
        if rule == "all_heads":
            return mean(ops.stack([ops.softmax(ctx(h, fx, False), axis=-1) for h in heads]), axis=0)
        return ops.softmax(ctx(heads[0], fx, False), axis=-1)

    # ---- weights and checkpoints -------------------------------------------------------------------------
    def to_neutral(self) -> dict[str, np.ndarray]:
        """Every network's neutral arrays with the prefix ``<net>.`` (the torch ``nets.state_dict`` names)."""
        return {f"{n}.{k}": v for n, net in self.nets.items() for k, v in net.to_neutral().items()}

    def from_neutral(self, arrays: dict[str, np.ndarray], strict: bool = True) -> None:
        for n, net in self.nets.items():
            pre = n + "."
            net.from_neutral(
                {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)}, strict=strict
            )

    def checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Networks, optimiser slots, every non-trainable variable (the dropout SeedGenerator states the
        neutral format leaves out, so a resumed job draws the same dropout masks) and progress, as
        ``(arrays, JSON-able meta)``."""
        arrays = {f"nets/{k}": v for k, v in self.to_neutral().items()}
        for n, o in self.optimizers.items():
            for i, v in enumerate(o.variables):
                arrays[f"optim/{n}/{i}"] = np.asarray(ops.convert_to_numpy(v))
        for n, net in self.nets.items():
            for i, v in enumerate(net.non_trainable_variables):
                arrays[f"non_trainable/{n}/{i}"] = np.asarray(ops.convert_to_numpy(v))
        for i, v in enumerate(self.loss_scale):
            arrays[f"loss_scale/{i}"] = np.asarray(ops.convert_to_numpy(v))
        return arrays, self.progress_meta()

    def load_checkpoint_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.restore_progress(meta)
        self.from_neutral({k[5:]: v for k, v in arrays.items() if k.startswith("nets/")})
        for n, o in self.optimizers.items():
            for i, var in enumerate(o.variables):
                var.assign(arrays[f"optim/{n}/{i}"])
        for n, net in self.nets.items():
            for i, var in enumerate(net.non_trainable_variables):
                key = f"non_trainable/{n}/{i}"
                if key in arrays:
                    var.assign(arrays[key])
        for i, var in enumerate(self.loss_scale):
            if f"loss_scale/{i}" in arrays:
                var.assign(arrays[f"loss_scale/{i}"])


def _skip_unless_finite(
    grads: list, tv: dict, new_tv: dict, opt: dict, new_opt: dict, scale: list
) -> tuple[dict, dict, list]:
    """Dynamic loss scaling (``fp16``): keep the update only when every gradient is finite, and the new
    ``[scale, finite steps in a row]`` (GradScaler's rule: halve on overflow, double after
    :data:`LOSS_SCALE_INTERVAL` finite steps)."""
    checks = [ops.all(ops.isfinite(g)) for g in grads if g is not None]
    finite = ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)

    def pick(new: dict, old: dict) -> dict:
        return {n: [ops.where(finite, a, b) for a, b in zip(new[n], old[n])] for n in new}

    good = ops.where(finite, scale[1] + 1.0, ops.zeros_like(scale[1]))
    grow = ops.greater_equal(good, LOSS_SCALE_INTERVAL)
    s = ops.where(
        finite, ops.where(grow, scale[0] * LOSS_SCALE_GROWTH, scale[0]), scale[0] * LOSS_SCALE_BACKOFF
    )
    return pick(new_tv, tv), pick(new_opt, opt), [s, ops.where(grow, ops.zeros_like(good), good)]


def two_head_predict(z1: Tensor, z2: Tensor, how: str) -> Tensor:
    """``mean_softmax`` or ``max_logit`` (softmax of the classifier with the larger max logit per sample)."""
    p1, p2 = ops.softmax(z1, axis=-1), ops.softmax(z2, axis=-1)
    if how == "mean_softmax":
        return 0.5 * (p1 + p2)
    use2 = ops.less(ops.max(z1, axis=-1), ops.max(z2, axis=-1))[:, None]
    return ops.where(use2, p2, p1)


def copy_net(src: keras.layers.Layer, dst: keras.layers.Layer) -> None:
    """Copy every variable of ``src`` into ``dst`` (same architecture) through the neutral format."""
    dst.from_neutral(src.to_neutral())
