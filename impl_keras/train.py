"""The Keras 3 training loop (backend-agnostic): ``run_job(job, job_dir, *, on_epoch=None, on_step=None)``.

Same contract, job keys and record keys as :mod:`impl_torch.train` (see its docstring): one loop for every
method; per epoch the schedule's learning-rate factor, ``steps_per_epoch`` updates on a source batch (balanced
over sources for M3SDA-β) and a target batch, evaluation, an atomic checkpoint
``job_dir/checkpoint/state.pkl``
(neutral arrays + optimiser slots + progress; resumed from when present) and ``on_epoch(record)``. Each
optimisation step is one compiled pure function (``tf.function`` without XLA on TensorFlow, ``jax.jit`` on
JAX; see :mod:`impl_keras.grad`). ``device``: ``cpu`` runs under ``keras.device("cpu:0")``, ``cuda``/``gpu``
under ``keras.device("gpu:0")``, ``auto`` leaves the backend's default (JAX uses the GPU when it has one).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from harness import coefficients
from harness.data import get_suite
from harness.data.iterate import Cursor
from harness.data.iterate import rewind as _epoch0
from harness.jobs import save_final_weights
from harness.spec.method import final_record, job_specs, job_suite_options
from impl_keras.coefficients import write as write_coefficients
from impl_keras.methods import build_algorithm

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


def versions() -> dict[str, str]:
    out = {
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        mod = __import__(
            {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[keras.backend.backend()]
        )
        out[keras.backend.backend() + "_version"] = mod.__version__
    except Exception:  # pragma: no cover - informational only
        pass
    return out


def _atomic_pickle(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def evaluate(algo: Any, loader: Any, limit: int | None = None) -> float:
    """Accuracy (fraction) of ``algo.predict`` over ``loader`` (at most ``limit`` samples)."""
    correct = total = 0
    for x, y, _ in loader:
        p = keras.ops.convert_to_numpy(algo.predict(np.asarray(x, dtype=algo.dtype)))
        correct += int((p.argmax(-1) == np.asarray(y)).sum())
        total += len(y)
        if limit is not None and total >= limit:
            break
    return correct / max(total, 1)


def run_job(
    job: dict[str, Any],
    job_dir: Path | str,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train one job (see the module docstring); returns the final record."""
    with device_scope(job.get("device")):
        return _run(job, Path(job_dir), on_epoch, on_step)


def _run(
    job: dict[str, Any],
    job_dir: Path,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    on_step: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    from impl_keras.data import make_loader

    t_start = time.time()
    ckpt = job_dir / "checkpoint" / "state.pkl"
    seed = int(job.get("seed", 0))
    keras.utils.set_random_seed(seed)
    suite = get_suite(job["suite"], job.get("root"), **job_suite_options(job))
    proto = suite.protocol(job["target"], seed=seed)
    model_spec, spec = job_specs(job, len(proto.sources), proto.num_classes)
    algo = build_algorithm(spec, model_spec, dtype=job.get("dtype"))
    if job.get("pretrained"):
        _load_pretrained(algo, job["pretrained"])
    bs = int(job.get("batch_size", 32))
    sampler = "balanced" if spec.name == "m3sda" else "pooled"
    src = make_loader(proto.source_train, proto.transform_train, bs, train=True, seed=seed, sampler=sampler)
    tgt = make_loader(proto.target_train, proto.transform_train, bs, train=True, seed=seed + 7919)
    ebs = int(job.get("eval_batch_size", 256))
    test = make_loader(proto.target_test, proto.transform_test, ebs, train=False)
    # a fixed random subset of every source (eval transform): shuffled once (epoch 0), never advanced
    src_eval = make_loader(proto.source_train, proto.transform_test, ebs, train=True, seed=seed)
    epochs = int(job.get("epochs", 1))
    steps = int(job.get("steps_per_epoch") or len(src))
    total = epochs * steps
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if ckpt.exists():
        with open(ckpt, "rb") as fh:
            state = pickle.load(fh)
        algo.load_checkpoint_state(state["algorithm"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        np.random.set_state(state["rng"]["numpy"])
    src_it, tgt_it = Cursor(src), Cursor(tgt)
    if start_epoch:
        positions = state.get("loader_cursors") or state["loader_epochs"]
        src_it.restore(positions[0])
        tgt_it.restore(positions[1])
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        algo.set_lr_factor(spec.lr_factor(epoch))
        sums: dict[str, float] = {}
        for i in range(steps):
            xs, ys, ds = next(src_it)
            xt, _, _ = next(tgt_it)
            g = epoch * steps + i
            algo.set_progress(g, total)
            batch = {
                "xs": np.asarray(xs, dtype=algo.dtype),
                "ys": np.asarray(ys, dtype=np.int64),
                "ds": np.asarray(ds, dtype=np.int64),
                "xt": np.asarray(xt, dtype=algo.dtype),
            }
            for k, v in algo.update(batch).items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if on_step is not None:
                on_step(g + 1, total)
        record = {
            "epoch": epoch + 1,
            "stage": spec.stages()[algo.stage].name,
            "losses": {k: v / steps for k, v in sums.items()},
            "source_acc": evaluate(algo, _epoch0(src_eval), int(job.get("source_eval_max", 500))),
            "target_acc": evaluate(algo, test),
            "lr": algo.current_lrs(),
            "steps": steps,
            "seconds": round(time.time() - t0, 3),
        }
        history.append(record)
        _atomic_pickle(
            {
                "algorithm": algo.checkpoint_state(),
                "epoch": epoch + 1,
                "history": history,
                "loader_cursors": [src_it.state(), tgt_it.state()],
                "rng": {"numpy": np.random.get_state()},
            },
            ckpt,
        )
        if on_epoch is not None:
            on_epoch(record)
    if model_spec.variant != "static" and not (job_dir / coefficients.FILENAME).exists():
        write_coefficients(algo, suite, job["target"], job_dir / coefficients.FILENAME, seed)
    save_final_weights(job_dir, algo.to_neutral(), model_spec, spec.name, "keras")
    n_params = sum(
        int(np.prod(v.shape))
        for n, net in algo.nets.items()
        if not n.startswith("teacher_")
        for v in net.trainable_variables
    )
    return final_record(
        history, epochs, time.time() - t_start, device_name(job.get("device")), versions(), "keras", n_params
    )


def _load_pretrained(algo: Any, path: str) -> None:
    """Load static backbone weights (``harness.weights.convert.backbone_arrays``: a neutral file, or a
    torchvision ``.pth`` when torch is installed) into every ``*features`` network, non-strictly."""
    from harness.weights.convert import backbone_arrays

    arrays = backbone_arrays(path)
    for name, net in algo.nets.items():
        if name.endswith("features"):
            own = net.to_neutral()
            net.from_neutral({k: v for k, v in arrays.items() if k in own}, strict=False)
