"""The Keras 3 backend of the neutral training loop (:mod:`harness.loop`), backend-agnostic.

``run_job(job, job_dir, *, on_epoch=None, on_step=None, on_start=None)`` trains one job with
:class:`KerasBackend`; the loop, the job keys and the records are documented in :mod:`harness.loop`. Each
optimisation step is one compiled pure function (``tf.function`` without XLA on TensorFlow, ``jax.jit`` on
JAX; see :mod:`impl_keras.grad`). ``device``: ``cpu`` runs under ``keras.device("cpu:0")``, ``cuda``/``gpu``
under ``keras.device("gpu:0")``, ``auto`` leaves the backend's default (JAX uses the GPU when it has one).

Loaders: ``num_workers`` loading threads (:mod:`impl_keras.data`). Precision (``job["precision"]``): the
training steps run under the Keras mixed policy of :data:`impl_keras.methods.base.PRECISION_POLICIES`
(:meth:`impl_keras.methods.base.Algorithm.set_precision`: applied to the job's networks for each step and
restored after it; Keras' global policy is never changed); predictions stay float32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import keras
import numpy as np

from harness import loop
from harness.provenance import library_versions
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_keras.methods import Algorithm, build_algorithm

Tensor = Any


def device_scope(name: str | None) -> contextlib.AbstractContextManager[Any]:
    """A ``keras.device`` scope for ``cpu``/``cuda``/``gpu``; ``auto`` → the backend's default placement."""
    name = (name or "auto").lower()
    if name == "auto":
        return contextlib.nullcontext()
    if name == "cpu":
        return keras.device("cpu:0")
    if name.startswith("cuda") or name.startswith("gpu"):
        return keras.device("gpu:0")
    raise ValueError(f"device {name!r}: expected auto, cpu or cuda")


def device_name(name: str | None) -> str:
    b = keras.backend.backend()
    if b == "jax":
        import jax

        return f"jax:{jax.devices()[0].platform}" if (name or "auto") == "auto" else f"jax:{name}"
    if b == "tensorflow":
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
        return f"tensorflow:{'gpu' if gpu and (name or 'auto') != 'cpu' else 'cpu'}"
    return f"{b}:{name or 'auto'}"


class KerasBackend:
    """Keras half of :class:`harness.loop.Backend` (any Keras backend)."""

    framework = "keras"

    def __init__(self) -> None:
        self.dtype: str | None = None
        self.precision = "fp32"

    def scope(self, job: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
        self.dtype = job.get("dtype")
        self.precision = loop.job_precision(job)
        return device_scope(job.get("device"))

    def seed(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)

    def build(self, spec: MethodSpec, model_spec: ModelSpec, job: dict[str, Any]) -> Algorithm:
        if self.precision == "fp16" and (job.get("device") or "auto").lower() == "cpu":
            raise ValueError(
                "job field 'precision' = 'fp16' on device 'cpu': float16 training is for GPUs (on "
                "TensorFlow's CPU kernels a smoke job ran ~4x slower than float32, torch's CPU float16 "
                "convolutions ~200x); use bf16 on a CPU"
            )
        algo = build_algorithm(spec, model_spec, dtype=self.dtype)
        algo.set_precision(self.precision)
        return algo

    def net_shapes(self, algo: Algorithm, net: str) -> dict[str, tuple[int, ...]]:
        return {k: tuple(np.shape(v)) for k, v in algo.nets[net].to_neutral().items()}

    def load_net(self, algo: Algorithm, net: str, arrays: dict[str, np.ndarray]) -> None:
        algo.nets[net].from_neutral(arrays, strict=False)

    def make_loader(self, split: Any, transform: Any, batch_size: int, **kw: Any) -> Any:
        from impl_keras.data import make_loader

        return make_loader(split, transform, batch_size, **kw)

    def batch(self, algo: Algorithm, xs: Any, ys: Any, ds: Any, xt: Any) -> dict[str, np.ndarray]:
        return {
            "xs": np.asarray(xs, dtype=algo.dtype),
            "ys": np.asarray(ys, dtype=np.int64),
            "ds": np.asarray(ds, dtype=np.int64),
            "xt": np.asarray(xt, dtype=algo.dtype),
        }

    def train_mode(self, algo: Algorithm) -> None:
        """Keras steps choose training mode per call; nothing to switch."""

    def predict(self, algo: Algorithm, x: Any) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(algo.predict(np.asarray(x, dtype=algo.dtype))))

    def state(self, algo: Algorithm) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return algo.checkpoint_state()

    def load_state(self, algo: Algorithm, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        algo.load_checkpoint_state(arrays, meta)

    def neutral_weights(self, algo: Algorithm) -> dict[str, np.ndarray]:
        return algo.to_neutral()

    def copy_shared(self, algo: Algorithm, twin: Algorithm) -> None:
        algo.from_neutral(twin.to_neutral(), strict=False)
        for name, net in twin.nets.items():  # dropout seed states: same layers, same creation order
            seeds = [v for v in net.non_trainable_variables if "seed_generator_state" in v.path]
            own = [v for v in algo.nets[name].non_trainable_variables if "seed_generator_state" in v.path]
            if len(seeds) != len(own):
                raise RuntimeError(f"{name}: {len(own)} dropout seed states, its static twin {len(seeds)}")
            for mine, theirs in zip(own, seeds):
                mine.assign(theirs.value)

    def write_coefficients(self, algo: Algorithm, suite: Any, target: str, path: Path, seed: int) -> Any:
        from impl_keras.coefficients import write

        return write(algo, suite, target, path, seed)

    def num_parameters(self, algo: Algorithm) -> int:
        return sum(
            int(np.prod(v.shape))
            for n, net in algo.nets.items()
            if not n.startswith("teacher_")
            for v in net.trainable_variables
        )

    def device_name(self, job: dict[str, Any]) -> str:
        return device_name(job.get("device"))

    def versions(self) -> dict[str, str]:
        return library_versions("keras")


#: ``run_job(job, job_dir, *, on_epoch=None, on_step=None, on_start=None)``: the trainer entry point
run_job = loop.trainer(KerasBackend)


def _load_pretrained(algo: Any, path: str) -> None:
    """:func:`harness.loop.load_pretrained` with this framework's backend."""
    loop.load_pretrained(KerasBackend(), algo, path)
