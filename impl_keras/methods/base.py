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
step. Mirrors :class:`impl_torch.methods.base.Algorithm`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from harness.errors import DrtBenchError
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_keras.grad import compile_step, value_and_grad
from impl_keras.optim import KOptimizer

Tensor = Any
LossFn = Callable[["StepContext", dict[str, Tensor], dict[str, Tensor]], tuple[Tensor, dict[str, Tensor]]]

DRT_PARAM_SUFFIXES: tuple[str, ...] = ("bases", "router_fc1", "router_fc2")


class NonFiniteLoss(DrtBenchError):
    """A loss became NaN or infinite."""


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


class StepContext:
    """Explicit variable values of every network during one step; ``ctx(net, x, training)`` runs a network."""

    def __init__(
        self, nets: dict[str, keras.layers.Layer], tv: dict[str, list], ntv: dict[str, list]
    ) -> None:
        self.nets, self.tv, self.ntv = nets, tv, ntv

    def __call__(self, net: str, x: Tensor, training: bool = True) -> Tensor:
        out, new_ntv = self.nets[net].stateless_call(self.tv[net], self.ntv[net], x, training=training)
        if training:
            self.ntv[net] = list(new_ntv)
        return out


class Algorithm:
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
        self.step_count = 0
        self.total_steps = 1
        self.stage = 0
        self.lr_factor = 1.0
        self.optimizers: dict[str, KOptimizer] = {}
        self._fns: dict[Any, Callable[..., Any]] = {}
        self._make_optimizers()

    # ---- construction ------------------------------------------------------------------------------------
    def build_nets(self) -> dict[str, keras.layers.Layer]:
        from impl_keras.backbones import build_features, build_head

        nets: dict[str, keras.layers.Layer] = {"features": build_features(self.model_spec, dtype=self.dtype)}
        for name in self.spec.classifier_names():
            nets[name] = build_head(
                self.model_spec, num_classes=self.spec.num_classes, dtype=self.dtype, name=name
            )
        if self.spec.name in ("dann", "adda"):
            nets["critic"] = build_critic(
                self.model_spec.feature_dim,
                int(self.spec["critic_hidden"]),
                int(self.spec["critic_depth"]),
                dtype=self.dtype,
            )
        return nets

    def _is_new(self, net: str, var: keras.Variable) -> bool:
        if not self.spec.pretrained or not net.endswith("features"):
            return True
        return any(var.path.endswith(s) or f"/{s}" in var.path for s in DRT_PARAM_SUFFIXES)

    def _make_optimizers(self) -> None:
        for net in self.spec.trained_nets(self.stage):
            tv = self.nets[net].trainable_variables
            with floatx(self.dtype):
                self.optimizers[net] = KOptimizer(
                    self.spec.optimizer(net, self.stage), tv, [self._is_new(net, v) for v in tv], name=net
                )

    def enter_stage(self, stage: int) -> None:
        """Called once when training reaches ``stage`` (> 0); subclasses copy networks first."""
        self._make_optimizers()
        self._fns.clear()

    # ---- schedule ----------------------------------------------------------------------------------------
    def set_progress(self, step: int, total_steps: int) -> None:
        self.step_count, self.total_steps = int(step), max(1, int(total_steps))
        target = self.spec.stage_at(self.step_count, self.total_steps)
        while self.stage < target:
            self.stage += 1
            self.enter_stage(self.stage)

    def set_lr_factor(self, factor: float) -> None:
        self.lr_factor = float(factor)

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

        def objective(params: list, tv: dict, ntv: dict, batch: dict, scalars: dict) -> tuple[Tensor, Any]:
            tv = dict(tv)
            i = 0
            for n, k in zip(train, sizes):
                tv[n] = list(params[i : i + k])
                i += k
            ctx = StepContext(nets, tv, dict(ntv))
            loss, metrics = loss_fn(ctx, batch, scalars)
            return loss, (metrics, ctx.ntv)

        vg = value_and_grad(objective)

        def step(tv: dict, ntv: dict, opt_state: dict, batch: dict, scalars: dict) -> tuple:
            params = [p for n in train for p in tv[n]]
            (loss, (metrics, new_ntv)), grads = vg(params, tv, ntv, batch, scalars)
            new_tv, new_opt = {}, {}
            i = 0
            for n, k in zip(train, sizes):
                new_tv[n], new_opt[n] = optimizers[n].apply(
                    list(tv[n]), list(grads[i : i + k]), opt_state[n], scalars["lr_factor"]
                )
                i += k
            return new_tv, new_ntv, new_opt, loss, metrics

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
        new_tv, new_ntv, new_opt, loss, metrics = fn(tv, ntv, opt_state, batch, sc)
        loss_f = float(ops.convert_to_numpy(loss))
        if not np.isfinite(loss_f):
            raise NonFiniteLoss(
                f"{self.spec.name}: the training loss became {loss_f} (non-finite); lower the "
                "learning rate or the loss weights, or check the input data"
            )
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
    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

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
        return ops.softmax(ctx("head", ctx("features", x, False), False), axis=-1)

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

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "nets": self.to_neutral(),
            "optimizers": {
                n: [ops.convert_to_numpy(v) for v in o.variables] for n, o in self.optimizers.items()
            },
            "meta": {
                "step": self.step_count,
                "total": self.total_steps,
                "stage": self.stage,
                "lr_factor": self.lr_factor,
            },
            # every non-trainable variable, including the dropout SeedGenerator states the neutral format
            # leaves out, so a resumed job draws the same dropout masks
            "non_trainable": {
                n: [ops.convert_to_numpy(v) for v in net.non_trainable_variables]
                for n, net in self.nets.items()
            },
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        meta = state["meta"]
        while self.stage < int(meta["stage"]):
            self.stage += 1
            self.enter_stage(self.stage)
        self.step_count, self.total_steps = int(meta["step"]), int(meta["total"])
        self.lr_factor = float(meta["lr_factor"])
        self.from_neutral(state["nets"])
        for n, vals in state["optimizers"].items():
            for var, val in zip(self.optimizers[n].variables, vals):
                var.assign(val)
        for n, vals in (state.get("non_trainable") or {}).items():
            for var, val in zip(self.nets[n].non_trainable_variables, vals):
                var.assign(val)


def copy_net(src: keras.layers.Layer, dst: keras.layers.Layer) -> None:
    """Copy every variable of ``src`` into ``dst`` (same architecture) through the neutral format."""
    dst.from_neutral(src.to_neutral())
