r"""``formulation="auto"``: the fastest DRT formulation per layer shape and device, measured and cached.

The three formulations of a DRT layer (:mod:`harness.spec.layer`) compute the same function; which one is
fastest depends on the shape and the device (a grouped per-sample convolution is cheap in FLOPs but often slow
on CPU; the authors' ``output_mix`` costs ``K`` extra convolutions but runs dense kernels).
:func:`resolve_formulation` answers with a short **calibration**:

1. build the layer once per formulation (same spec, ``formulation`` replaced) and one random input
   ``(B_cal, C_in, H, W)`` (NHWC for Keras), ``B_cal = min(B, 16)`` (``B`` = the caller's batch, default 8);
2. time **forward + backward** (``sum(y)`` back-propagated to the input and every weight) — warm-up
   ``WARMUP`` calls each, then ``REPEATS`` rounds, the formulations **interleaved** within each round so that
   machine load hits all of them alike (each round stops early once ``MAX_SECONDS`` are spent);
3. pick the smallest **median**. Ties within ``TIE_TOLERANCE`` (3 %) go to the cheaper formulation in FLOPs
   (``kernel_merge`` < ``residual_agg`` < ``output_mix``) so the choice is stable under noise.

Results are cached in a JSON file keyed by framework (+ Keras backend), device (CPU model and thread count, or
the GPU name), library versions, layer geometry and input size: ``~/.cache/drt-bench/autotune.json`` or the
path in ``DRT_AUTOTUNE_CACHE``. Writes are atomic (temporary file + ``os.replace``, merged with what other
processes wrote) and guarded by a process-wide lock. ``DRT_AUTOTUNE=off`` skips measurement and returns
``kernel_merge`` (the paper's form); ``DRT_AUTOTUNE=<formulation>`` forces one.

When the input shape is unknown (the layers resolve before they see data), ``H = W`` is a representative size
derived from the channel count, ``clip(round(56·64 / C_in), 7, 56)`` — 56, 28, 14, 7 for ResNet stages 1–4.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from harness.spec.layer import FORMULATIONS, DRTConvSpec

WARMUP = 1
REPEATS = 5
MAX_SECONDS = 3.0
TIE_TOLERANCE = 0.03
#: Preference order under ties (cheapest in FLOPs first).
PREFERENCE: tuple[str, ...] = ("kernel_merge", "residual_agg", "output_mix")

_lock = threading.RLock()
_memo: dict[str, dict[str, Any]] = {}


# ---------------------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------------------
def cache_path() -> pathlib.Path:
    """``$DRT_AUTOTUNE_CACHE`` or ``~/.cache/drt-bench/autotune.json``."""
    env = os.environ.get("DRT_AUTOTUNE_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "drt-bench" / "autotune.json"


def _read(path: pathlib.Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: pathlib.Path, key: str, entry: dict[str, Any]) -> None:
    """Merge ``{key: entry}`` into the cache file atomically (temp file in its folder + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _read(path)
    data[key] = entry
    fd, tmp = tempfile.mkstemp(prefix=".autotune-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def clear_memory_cache() -> None:
    """Forget in-process results (the file cache stays)."""
    with _lock:
        _memo.clear()


# ---------------------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_size(spec: DRTConvSpec) -> int:
    """Representative input size when unknown: ``clip(round(56·64 / C_in), 7, 56)``."""
    return int(min(56, max(7, round(56 * 64 / spec.in_channels))))


def _device_and_versions(framework: str, device: str) -> tuple[str, str]:
    if framework == "torch":
        import torch

        dev = str(device)
        if dev.startswith("cuda") and torch.cuda.is_available():
            desc = f"cuda:{torch.cuda.get_device_name(torch.device(dev))}"
        else:
            desc = f"cpu:{_cpu_model()}:{torch.get_num_threads()}t"
        return desc, f"torch {torch.__version__}"
    import keras

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
    desc = f"{'gpu' if ('gpu' in dev or 'cuda' in dev) else 'cpu'}:{_cpu_model()}:{os.cpu_count()}c"
    return desc, vers


def cache_key(spec: DRTConvSpec, framework: str, device: str, input_shape: tuple[int, ...] | None) -> str:
    """Key: framework | device | versions | geometry | input ``HxW`` | calibration batch."""
    desc, vers = _device_and_versions(framework, device)
    b, h, w = _shape(spec, framework, input_shape)
    s = spec
    geom = (
        f"{s.in_channels}>{s.out_channels} k{s.kernel_size} s{s.stride} p{s.padding} {s.variant} K{s.K} "
        f"b{s.basis_kernel} r{s.reduction} m{s.min_hidden}"
    )
    return f"{framework}|{desc}|{vers}|{geom}|{h}x{w}|B{b}"


def _shape(spec: DRTConvSpec, framework: str, input_shape: tuple[int, ...] | None) -> tuple[int, int, int]:
    """(calibration batch, H, W) from the caller's input shape (NCHW torch / NHWC keras) or defaults."""
    if input_shape is None or len(input_shape) != 4:
        n = default_size(spec)
        return 8, n, n
    b = int(input_shape[0]) if input_shape[0] else 8
    if framework == "torch":
        h, w = int(input_shape[2]), int(input_shape[3])
    else:
        h, w = int(input_shape[1]), int(input_shape[2])
    return max(1, min(b, 16)), h, w


# ---------------------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------------------
def _choose(medians: dict[str, float]) -> str:
    best = min(medians.values())
    for f in PREFERENCE:
        if f in medians and medians[f] <= best * (1.0 + TIE_TOLERANCE):
            return f
    return min(medians, key=medians.__getitem__)  # pragma: no cover


def _interleaved(steps: dict[str, Callable[[], None]], sync: Callable[[], None]) -> dict[str, float]:
    """Median seconds per step, formulations interleaved round by round (after ``WARMUP`` calls each)."""
    for fn in steps.values():
        for _ in range(WARMUP):
            fn()
        sync()
    times: dict[str, list[float]] = {f: [] for f in steps}
    t_start = time.perf_counter()
    for _ in range(REPEATS):
        for f, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[f].append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > MAX_SECONDS and all(len(v) >= 3 for v in times.values()):
            break
    return {f: statistics.median(v) for f, v in times.items()}


@contextlib.contextmanager
def _outside_torch_modes() -> Iterator[None]:
    """Run the calibration outside any active torch dispatch mode (e.g. a FlopCounterMode being used)."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:  # pragma: no cover
        yield
        return
    with _disable_current_modes():
        yield


def _measure_torch(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
    import torch

    from impl_torch.layers import DRTConv2d

    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, spec.in_channels, h, w, generator=gen).to(dev).requires_grad_(True)
    steps: dict[str, Callable[[], None]] = {}
    with _outside_torch_modes(), torch.enable_grad():
        for f in FORMULATIONS:
            layer = DRTConv2d(spec.replace(formulation=f)).to(dev)

            def step(layer: Any = layer) -> None:
                layer.zero_grad(set_to_none=True)
                x.grad = None
                layer(x).sum().backward()

            steps[f] = step
        return _interleaved(steps, sync)


def _measure_keras(spec: DRTConvSpec, b: int, h: int, w: int) -> dict[str, float]:
    import keras
    import numpy as np

    from impl_keras.layers import DRTConv2D

    backend = keras.backend.backend()
    x_np = np.random.default_rng(0).standard_normal((b, h, w, spec.in_channels)).astype("float32")
    steps: dict[str, Callable[[], None]] = {}
    for f in FORMULATIONS:
        layer = DRTConv2D(spec.replace(formulation=f))
        layer.build((None, h, w, spec.in_channels))
        steps[f] = _keras_step(layer, x_np, backend)
    return _interleaved(steps, lambda: None)


def _keras_step(layer: Any, x_np: Any, backend: str) -> Callable[[], None]:
    """A forward+backward callable for one Keras layer on the active backend."""
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x_np)

        @tf.function(jit_compile=False, reduce_retracing=True)
        def tf_step(xx: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(xx)
                loss = tf.reduce_sum(layer(xx))
            return tape.gradient(loss, [xx] + list(layer.trainable_variables))

        return lambda: [g.numpy() for g in tf_step(x)] and None
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(x_np)
        tv = [v.value for v in layer.trainable_variables]
        ntv = [v.value for v in layer.non_trainable_variables]

        def loss(tv: Any, xx: Any) -> Any:
            y, _ = layer.stateless_call(tv, ntv, xx)
            return jnp.sum(y)

        g = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return lambda: jax.block_until_ready(g(tv, x)) and None
    if backend == "torch":
        import torch

        x = torch.as_tensor(x_np)

        def torch_step() -> None:
            xx = x.clone().requires_grad_(True)
            layer(xx).sum().backward()

        return torch_step
    import keras  # pragma: no cover - numpy/openvino backends: forward only

    return lambda: keras.ops.convert_to_numpy(layer(x_np)) and None


def calibrate(
    spec: DRTConvSpec, framework: str, device: str = "cpu", input_shape: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """Measure the three formulations now (no cache). Returns ``{choice, medians_ms, batch, size, ...}``."""
    b, h, w = _shape(spec, framework, input_shape)
    t0 = time.perf_counter()
    if framework == "torch":
        med = _measure_torch(spec, device, b, h, w)
    elif framework == "keras":
        med = _measure_keras(spec, b, h, w)
    else:
        raise ValueError(f"unknown framework {framework!r}: expected 'torch' or 'keras'")
    return {
        "choice": _choose(med),
        "medians_ms": {f: 1e3 * v for f, v in med.items()},
        "batch": b,
        "size": [h, w],
        "calibration_s": round(time.perf_counter() - t0, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def resolve_formulation(
    spec: DRTConvSpec, framework: str, device: str = "cpu", input_shape: tuple[int, ...] | None = None
) -> str:
    """The concrete formulation for ``spec`` (``auto`` resolved by a cached measured calibration).

    ``framework`` is ``"torch"`` or ``"keras"``; ``device`` e.g. ``"cpu"``, ``"cuda:0"``, ``"gpu"``;
    ``input_shape`` the caller's input shape (NCHW torch, NHWC Keras) if known.
    """
    if spec.formulation in FORMULATIONS:
        return spec.formulation
    if spec.formulation != "auto":
        raise ValueError(f"formulation {spec.formulation!r}: expected one of {FORMULATIONS} or 'auto'")
    forced = os.environ.get("DRT_AUTOTUNE", "").strip().lower()
    if forced in ("off", "0", "false", "no"):
        return "kernel_merge"
    if forced in FORMULATIONS:
        return forced
    if not spec.dynamic:
        return "kernel_merge"  # a static layer is a plain conv in every formulation
    if str(device).startswith("meta"):
        device = "cpu"  # shape-only runs (FLOP counting): use the CPU's choice
    key = cache_key(spec, framework, device, input_shape)
    with _lock:
        if key in _memo:
            return str(_memo[key]["choice"])
        path = cache_path()
        hit = _read(path).get(key)
        if isinstance(hit, dict) and hit.get("choice") in FORMULATIONS:
            _memo[key] = hit
            return str(hit["choice"])
        entry = calibrate(spec, framework, device, input_shape)
        _memo[key] = entry
        try:
            _write(path, key, entry)
        except OSError:  # read-only home: keep the in-process result
            pass
        return str(entry["choice"])
