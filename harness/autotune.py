r"""``formulation="auto"``: the fastest DRT formulation per layer shape and device, measured and cached.

The three formulations of a DRT layer (:mod:`harness.spec.layer`) compute the same function; which one is
fastest depends on the shape and the device (a grouped per-sample convolution is cheap in FLOPs but often slow
on CPU; the authors' ``output_mix`` costs ``K`` extra convolutions but runs dense kernels).
:func:`resolve_formulation` answers with a short **calibration**:

1. build the layer once per **candidate** formulation (:func:`candidates`: the formulations that are distinct
   computations for the spec; same spec, ``formulation`` replaced) and one random input
   ``(B_cal, C_in, H, W)`` (NHWC for Keras), ``B_cal = min(B, 16)`` (``B`` = the caller's batch, default 8);
2. time **forward + backward** (``sum(y)`` back-propagated to the input and every weight) — warm-up
   ``WARMUP`` calls each, then ``REPEATS`` rounds, the formulations **interleaved** within each round so that
   machine load hits all of them alike (each round stops early once ``MAX_SECONDS`` are spent);
3. pick the smallest **median** among the candidates. Ties within ``TIE_TOLERANCE`` (3 %) go to the cheaper
   formulation in FLOPs (``kernel_merge`` < ``residual_agg`` < ``output_mix``) so the choice is stable under
   noise.

**Candidates** (:func:`candidates`): a layer with bases (``sr``, ``comb``, ``sr_uniform``; 1×1 or full) has
all three formulations; a ``ca`` layer (no bases) only ``kernel_merge`` (one per-sample conv with the kernel
``(1+Λ)W_0``) and ``residual_agg`` (``(1+Λ)⊙(W_0*x)``: ``output_mix`` runs exactly the same code there, so it
is not measured twice); a ``static`` layer is a plain conv in every formulation (``kernel_merge`` by name,
never measured). With 1×1 bases ``residual_agg`` *is* the "static conv + per-sample matmul" form: the static
``k×k`` conv plus one per-sample ``(C_out, C_in)`` matmul ``ΔW(x)`` on the input sampled at the centre tap
(strided, padding-consistent; exact for every stride and padding a spec accepts), so it is the candidate that
keeps a ResNet's DRT step near the static conv's cost where the grouped per-sample conv of ``kernel_merge`` is
slow.

This module is framework-neutral: it owns the cache, the key, the timing protocol
(:func:`time_interleaved`) and the choice rule, and imports no framework. The framework side is supplied by
the caller — each implementation's ``layers/drt_conv.py`` (``impl_torch``, ``impl_keras``) passes

* ``measure(spec, device, batch, height, width) -> {formulation: median seconds}`` — builds its own layers
  (step 1) and times them with :func:`time_interleaved` (step 2);
* ``describe(device) -> (device description, library versions)`` — the device and version part of the key,

so the dependency runs one way only: the implementations import this module, never the reverse.

Results are cached in a JSON file keyed by framework (+ Keras backend), device (CPU model and thread count, or
the GPU name), library versions, layer geometry (with the routing input's channels under block routing), input
size and calibration batch (:func:`shape_key`), and :data:`REVISION` (bumped when the candidates or the
formulations' code change, so older measurements are not reused): ``~/.cache/drt-bench/autotune.json`` or the
path in ``DRT_AUTOTUNE_CACHE``. Writes are atomic (temporary file + ``os.replace``, merged with what other
processes wrote) and guarded by a process-wide lock. ``DRT_AUTOTUNE=off`` skips measurement and returns
``kernel_merge`` (the paper's form); ``DRT_AUTOTUNE=<formulation>`` forces one.

When the input shape is unknown (the layers resolve before they see data), ``H = W`` is a representative size
derived from the channel count, ``clip(round(56·64 / C_in), 7, 56)`` — 56, 28, 14, 7 for ResNet stages 1–4.

Which formulation each layer of a model got: ``impl_torch.layers.formulation_choices(model)`` /
``impl_keras.layers.formulation_choices(model)`` → ``[(layer path, shape key, formulation)]`` (the shape key
is :func:`shape_key`, the cache key's layer part); :func:`format_choices` renders such a list as a table.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from harness import atomic, provenance
from harness.errors import DrtBenchError
from harness.spec.layer import FORMULATIONS, DRTConvSpec

#: ``measure(spec, device, batch, height, width) -> {formulation: median seconds of forward+backward}``,
#: supplied by the framework (it builds the layers and times them with :func:`time_interleaved`).
Measure = Callable[[DRTConvSpec, str, int, int, int], dict[str, float]]
#: ``describe(device) -> (device description, library versions)`` for the cache key (from the framework).
Describe = Callable[[str], tuple[str, str]]

WARMUP = 1
REPEATS = 5
MAX_SECONDS = 3.0
TIE_TOLERANCE = 0.03
#: Preference order under ties (cheapest in FLOPs first).
PREFERENCE: tuple[str, ...] = ("kernel_merge", "residual_agg", "output_mix")
#: Part of every cache key: bump it when the candidate set or a formulation's implementation changes, so that
#: choices measured with older code are measured again. 2: per-spec candidates, block routing in the key, the
#: 1×1-basis product reads the unpadded input where the centre tap never reaches the padding.
REVISION = 2

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
    data = _read(path)
    data[key] = entry
    atomic.write_json(path, data, indent=1)


def clear_memory_cache() -> None:
    """Forget in-process results (the file cache stays)."""
    with _lock:
        _memo.clear()


# ---------------------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU model name, for the device part of a cache key (:func:`harness.provenance.cpu_model`)."""
    return provenance.cpu_model()


def default_size(spec: DRTConvSpec) -> int:
    """Representative input size when unknown: ``clip(round(56·64 / C_in), 7, 56)``."""
    return int(min(56, max(7, round(56 * 64 / spec.in_channels))))


def candidates(spec: DRTConvSpec) -> tuple[str, ...]:
    """The formulations ``auto`` measures and may choose for ``spec``, in :data:`PREFERENCE` order.

    Every formulation computes the same function for every spec; the candidates are those that are *distinct
    computations*: all three with bases (``sr``, ``comb``, ``sr_uniform``, 1×1 or full); ``kernel_merge`` and
    ``residual_agg`` for ``ca`` (no bases: ``output_mix`` and ``residual_agg`` run the same code,
    ``(1+Λ)⊙(W_0*x)``); ``("kernel_merge",)`` for ``static`` (a plain conv, never measured).
    """
    if not spec.dynamic:
        return ("kernel_merge",)
    if not spec.has_routing:
        return ("kernel_merge", "residual_agg")
    return tuple(f for f in PREFERENCE if f in FORMULATIONS)


def shape_key(spec: DRTConvSpec, framework: str, input_shape: tuple[int, ...] | None) -> str:
    """The layer part of a cache key: geometry | input ``HxW`` | calibration batch, e.g.
    ``256>256 k3 s1 p1 sr K4 b1 r16 m4 route=block(1024)|14x14|B8`` (``route=...`` only with block routing).
    """
    b, h, w = calibration_shape(spec, framework, input_shape)
    s = spec
    geom = (
        f"{s.in_channels}>{s.out_channels} k{s.kernel_size} s{s.stride} p{s.padding} {s.variant} K{s.K} "
        f"b{s.basis_kernel} r{s.reduction} m{s.min_hidden}"
    )
    if s.route == "block":
        geom += f" route=block({s.route_channels})"
    return f"{geom}|{h}x{w}|B{b}"


def cache_key(
    spec: DRTConvSpec,
    framework: str,
    device: str,
    input_shape: tuple[int, ...] | None,
    *,
    describe: Describe,
) -> str:
    """Key: framework | device | versions | :func:`shape_key` (geometry | input ``HxW`` | calibration batch) |
    ``rev`` :data:`REVISION`.

    ``describe(device)`` gives the device description and the library versions (supplied by the framework).
    """
    desc, vers = describe(device)
    return f"{framework}|{desc}|{vers}|{shape_key(spec, framework, input_shape)}|rev{REVISION}"


def calibration_shape(
    spec: DRTConvSpec, framework: str, input_shape: tuple[int, ...] | None
) -> tuple[int, int, int]:
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
# choice and timing protocol (the layers themselves are built by the framework's ``measure``)
# ---------------------------------------------------------------------------------------------------------
def _choose(medians: dict[str, float], allowed: tuple[str, ...] | None = None) -> str:
    """The fastest formulation among ``allowed`` (default: every timed one); ties go to :data:`PREFERENCE`."""
    timed = {f: v for f, v in medians.items() if allowed is None or f in allowed}
    if not timed:
        raise ValueError(f"no timing for any candidate {allowed}: got {sorted(medians)}")
    best = min(timed.values())
    for f in PREFERENCE:
        if f in timed and timed[f] <= best * (1.0 + TIE_TOLERANCE):
            return f
    return min(timed, key=timed.__getitem__)  # pragma: no cover


def time_interleaved(steps: dict[str, Callable[[], None]], sync: Callable[[], None]) -> dict[str, float]:
    """Median seconds per step, formulations interleaved round by round (after ``WARMUP`` calls each).

    ``steps`` maps each formulation to a forward+backward callable; ``sync`` waits for the device (a no-op on
    CPU). The framework ``measure`` functions build the steps and call this, so the protocol is the same in
    every framework.
    """
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


def calibrate(
    spec: DRTConvSpec,
    framework: str,
    device: str = "cpu",
    input_shape: tuple[int, ...] | None = None,
    *,
    measure: Measure,
) -> dict[str, Any]:
    """Measure the candidate formulations (:func:`candidates`) now (no cache) with the framework's
    ``measure``.

    ``measure`` must time every candidate; timings of other formulations are kept in ``medians_ms`` but never
    chosen. Returns ``{choice, candidates, medians_ms, batch, size, calibration_s, measured_at}``.
    """
    b, h, w = calibration_shape(spec, framework, input_shape)
    allowed = candidates(spec)
    t0 = time.perf_counter()
    med = measure(spec, device, b, h, w)
    missing = [f for f in allowed if f not in med]
    if missing:
        raise ValueError(f"measure() returned no timing for {missing}: expected every candidate of {allowed}")
    return {
        "choice": _choose(med, allowed),
        "candidates": list(allowed),
        "medians_ms": {f: 1e3 * v for f, v in med.items()},
        "batch": b,
        "size": [h, w],
        "calibration_s": round(time.perf_counter() - t0, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def resolve_formulation(
    spec: DRTConvSpec,
    framework: str,
    device: str = "cpu",
    input_shape: tuple[int, ...] | None = None,
    *,
    measure: Measure | None = None,
    describe: Describe | None = None,
) -> str:
    """The concrete formulation for ``spec`` (``auto`` resolved by a cached measured calibration).

    ``framework`` is ``"torch"`` or ``"keras"`` (the key's first field; it also says the layout of
    ``input_shape``: NCHW torch, NHWC Keras); ``device`` e.g. ``"cpu"``, ``"cuda:0"``, ``"gpu"``;
    ``input_shape`` the caller's input shape if known. ``measure`` and ``describe`` are the framework's
    calibration and key functions (see the module docstring); they are needed only when ``auto`` has to be
    resolved by measurement or from the cache — a fixed formulation, a static layer and ``DRT_AUTOTUNE``
    need neither. Layers call this through their own ``resolve_formulation``, which supplies both.
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
    if measure is None or describe is None:
        raise DrtBenchError(
            "formulation='auto' needs the framework's measure and describe functions: resolve it through "
            "the layer (impl_torch / impl_keras layers.resolve_formulation), or set DRT_AUTOTUNE to "
            f"one of {', '.join(FORMULATIONS)}"
        )
    if str(device).startswith("meta"):
        device = "cpu"  # shape-only runs (FLOP counting): use the CPU's choice
    key = cache_key(spec, framework, device, input_shape, describe=describe)
    with _lock:
        if key in _memo:
            return str(_memo[key]["choice"])
        path = cache_path()
        hit = _read(path).get(key)
        if isinstance(hit, dict) and hit.get("choice") in candidates(spec):
            _memo[key] = hit
            return str(hit["choice"])
        entry = calibrate(spec, framework, device, input_shape, measure=measure)
        _memo[key] = entry
        try:
            _write(path, key, entry)
        except OSError:  # read-only home: keep the in-process result
            pass
        return str(entry["choice"])


# ---------------------------------------------------------------------------------------------------------
# per-layer choices of a model (the lists come from impl_*.layers.formulation_choices)
# ---------------------------------------------------------------------------------------------------------
#: ``(layer path, shape key, formulation)``: one row of ``impl_*.layers.formulation_choices(model)``.
Choice = tuple[str, str, str]
#: The formulation a list reports for an ``auto`` layer that has not run yet (nothing resolved).
UNRESOLVED = "unresolved"


def format_choices(rows: list[Choice]) -> str:
    """A markdown table of per-layer choices, then one summary line (``residual_agg×16, kernel_merge×0``).

    ``rows`` is what ``impl_torch.layers.formulation_choices(model)`` or the Keras twin returns."""
    lines = ["| layer | shape key | formulation |", "|---|---|---|"]
    counts: dict[str, int] = {}
    for name, key, choice in rows:
        lines.append(f"| {name} | {key} | {choice} |")
        counts[choice] = counts.get(choice, 0) + 1
    lines.append("")
    lines.append(", ".join(f"{c}×{n}" for c, n in sorted(counts.items())) or "no DRT layer")
    return "\n".join(lines)
