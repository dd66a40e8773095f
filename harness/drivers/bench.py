r"""``python -m harness.bench``: wall-clock cost of DRT vs the static model, side by side, in torch and Keras.

Protocol (the harness's own timing; ``benchmarks/`` has the pytest-benchmark versions):

* one *group* = one framework × one workload (a single layer or a whole model) × one mode (``forward``: eval
  mode, no gradient; ``train``: a full training step = forward, cross-entropy, backward, SGD-momentum step);
* every candidate of a group (``static`` and each formulation, plus ``auto``) is built first, warmed up
  (``--warmup`` calls each, which also triggers the ``auto`` calibration), then timed for ``--rounds`` rounds
  in which the candidates run **interleaved** (static, output_mix, residual_agg, kernel_merge, auto, …)
  so that machine load drifts hit all of them alike;
* the figure is the **median** per candidate; the ratio is ``median(DRT) / median(static)`` of the same run.

Workloads: ``digits_cnn`` (batch 128, 32×32) and ``resnet50`` (batch 8, 224×224) whole models with the
default DRT placement (variant ``sr``, K=4; digits: full 5×5 bases; ResNet: 1×1 centre-tap bases), and two
single DRT layers (``digits.conv2``: 64→64 5×5 on 16×16, batch 128; ``resnet50.layer3.conv2``: 256→256 3×3 on
14×14, batch 8). ``--gpu`` instead runs ResNet-101, batch 64, 224×224 on the accelerator (a short run).

Writes ``results/perf/README.md`` (hardware named: CPU model, cores, threads, load average before/after,
library versions) and ``results/perf/bench.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import provenance
from harness.spec.layer import FORMULATIONS, DRTConvSpec
from harness.spec.model import ModelSpec

CANDIDATES: tuple[str, ...] = ("static",) + FORMULATIONS + ("auto",)
#: training-step DRT (sr, ``auto``) / static ratio targets on CPU, per (framework, model) (issue 14)
TARGETS = {
    ("torch", "resnet50"): 1.15,
    ("torch", "digits_cnn"): 1.30,
    ("keras", "resnet50"): 1.30,
    ("keras", "digits_cnn"): 1.30,
}


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: a whole model (``spec``) or a single layer (``layer`` + input size)."""

    name: str
    batch: int
    size: int
    spec: ModelSpec | None = None
    layer: DRTConvSpec | None = None


def default_workloads(quick: bool = False) -> list[Workload]:
    """The CPU matrix (``quick``: tiny shapes, for a dry run)."""
    if quick:
        return [
            Workload("digits_cnn", 4, 32, spec=ModelSpec(arch="digits_cnn", num_classes=10)),
            Workload("resnet18@32", 2, 32, spec=ModelSpec(arch="resnet18", num_classes=10)),
            Workload("layer 16→16 3×3 @8", 4, 8, layer=DRTConvSpec(16, 16, 3, basis_kernel=1)),
        ]
    return [
        Workload(
            "layer digits.conv2 64→64 5×5 @16", 128, 16, layer=DRTConvSpec(64, 64, 5, basis_kernel="full")
        ),
        Workload(
            "layer resnet50.layer3.conv2 256→256 3×3 @14",
            8,
            14,
            layer=DRTConvSpec(256, 256, 3, basis_kernel=1),
        ),
        Workload("digits_cnn", 128, 32, spec=ModelSpec(arch="digits_cnn", num_classes=10)),
        Workload("resnet50", 8, 224, spec=ModelSpec(arch="resnet50", num_classes=345)),
    ]


def gpu_workloads(quick: bool = False) -> list[Workload]:
    if quick:
        return [Workload("resnet18@32", 2, 32, spec=ModelSpec(arch="resnet18", num_classes=10))]
    return [Workload("resnet101", 64, 224, spec=ModelSpec(arch="resnet101", num_classes=345))]


@dataclass
class Result:
    framework: str
    workload: str
    mode: str
    candidate: str
    batch: int
    size: int
    median_ms: float
    min_ms: float
    max_ms: float
    rounds: int
    ratio: float | None = None
    note: str = ""
    samples_ms: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------------------
def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    *,
    warmup: int,
    rounds: int,
    sync: Callable[[], None] = lambda: None,
    budget_s: float | None = None,
) -> dict[str, list[float]]:
    """Seconds per call for each candidate: ``warmup`` calls each, then ``rounds`` interleaved rounds.

    Stops early (after at least 3 rounds) once ``budget_s`` seconds of timed rounds are spent.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
        sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    t_start = time.perf_counter()
    for r in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t0)
        if budget_s is not None and r >= 2 and time.perf_counter() - t_start > budget_s:
            break
    return times


def _results(
    fw: str, wl: Workload, mode: str, times: dict[str, list[float]], notes: dict[str, str]
) -> list[Result]:
    out = []
    base = statistics.median(times["static"]) if "static" in times else None
    for cand, ts in times.items():
        med = statistics.median(ts)
        out.append(
            Result(
                fw,
                wl.name,
                mode,
                cand,
                wl.batch,
                wl.size,
                1e3 * med,
                1e3 * min(ts),
                1e3 * max(ts),
                len(ts),
                None if base is None else med / base,
                notes.get(cand, ""),
                [round(1e3 * t, 3) for t in ts],
            )
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------------------------------------
def _torch_candidates(wl: Workload, mode: str, device: str, candidates: tuple[str, ...]) -> tuple[dict, Any]:
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    fns: dict[str, Callable[[], Any]] = {}
    notes: dict[str, str] = {}
    for cand in candidates:
        if wl.spec is not None:
            from impl_torch.backbones import build_model

            ms = wl.spec.replace(variant="static") if cand == "static" else wl.spec.replace(formulation=cand)
            model = build_model(ms).to(dev)
            x = torch.randn(wl.batch, 3, wl.size, wl.size, generator=gen).to(dev)
            y = torch.randint(0, ms.num_classes, (wl.batch,), generator=gen).to(dev)
        else:
            from impl_torch.layers import DRTConv2d

            assert wl.layer is not None
            ls = (
                wl.layer.replace(variant="static") if cand == "static" else wl.layer.replace(formulation=cand)
            )
            model = DRTConv2d(ls).to(dev)
            x = torch.randn(wl.batch, ls.in_channels, wl.size, wl.size, generator=gen).to(dev)
            y = None
        if mode == "train":
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

            def step(model: Any = model, opt: Any = opt, x: Any = x, y: Any = y) -> None:
                opt.zero_grad(set_to_none=True)
                out = model(x)
                loss = F.cross_entropy(out, y) if y is not None else out.square().mean()
                loss.backward()
                opt.step()
        else:
            model.eval()

            def step(model: Any = model, x: Any = x) -> None:
                with torch.no_grad():
                    model(x)

        fns[cand] = step
        if cand == "auto":
            notes[cand] = "auto: resolved on first call"
            fns[cand] = _with_auto_note(step, model, notes)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    return {"fns": fns, "notes": notes}, sync


def _with_auto_note(step: Callable[[], None], model: Any, notes: dict[str, str]) -> Callable[[], None]:
    state = {"done": False}

    def wrapped() -> None:
        step()
        if not state["done"]:
            state["done"] = True
            picks: dict[str, list[str]] = {}
            for name, m in model.named_modules() if hasattr(model, "named_modules") else []:
                f = getattr(m, "_formulation", None)
                spec = getattr(m, "spec", None)
                if f and isinstance(spec, DRTConvSpec) and spec.dynamic:
                    short = name.removeprefix("features.").removesuffix(".conv2")
                    picks.setdefault(f, []).append(short)
            # per layer: the layers listed for the rarer choices, a count for the commonest one
            common = max(picks, key=lambda k: len(picks[k])) if picks else None
            parts = [
                f"{k}×{len(v)}" + ("" if k == common else f" ({', '.join(v)})")
                for k, v in sorted(picks.items())
            ]
            notes["auto"] = "auto picked " + "; ".join(parts)

    return wrapped


# ---------------------------------------------------------------------------------------------------------
# keras
# ---------------------------------------------------------------------------------------------------------
def _keras_candidates(wl: Workload, mode: str, candidates: tuple[str, ...]) -> tuple[dict, Any]:
    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    fns: dict[str, Callable[[], Any]] = {}
    notes: dict[str, str] = {}
    for cand in candidates:
        if wl.spec is not None:
            from impl_keras.backbones import build_model

            ms = wl.spec.replace(variant="static") if cand == "static" else wl.spec.replace(formulation=cand)
            model = build_model(ms)
            x = rng.standard_normal((wl.batch, wl.size, wl.size, 3)).astype("float32")
            y = rng.integers(0, ms.num_classes, (wl.batch,)).astype("int64")
        else:
            from impl_keras.layers import DRTConv2D

            assert wl.layer is not None
            ls = (
                wl.layer.replace(variant="static") if cand == "static" else wl.layer.replace(formulation=cand)
            )
            model = DRTConv2D(ls)
            model.build((None, wl.size, wl.size, ls.in_channels))
            x = rng.standard_normal((wl.batch, wl.size, wl.size, ls.in_channels)).astype("float32")
            y = None
        if cand == "auto":
            picks: dict[str, int] = {}
            for lay in _keras_layers(model):
                f = getattr(lay, "formulation", None)
                if isinstance(getattr(lay, "spec", None), DRTConvSpec) and lay.spec.dynamic:
                    picks[f] = picks.get(f, 0) + 1
            notes["auto"] = "auto picked " + ", ".join(f"{k}×{v}" for k, v in sorted(picks.items()))
        fns[cand] = _keras_step(model, x, y, mode, backend)
    return {"fns": fns, "notes": notes}, (lambda: None)


def _keras_layers(model: Any) -> list[Any]:
    if hasattr(model, "_flatten_layers"):
        return list(model._flatten_layers(include_self=True, recursive=True))
    return [model]


def _block(value: Any) -> None:
    """Wait for a framework result (``.numpy()`` where there is one) and discard it."""
    if hasattr(value, "numpy"):
        value.numpy()


def _keras_step(model: Any, x_np: Any, y_np: Any, mode: str, backend: str) -> Callable[[], None]:
    """A forward or training-step callable for a Keras model/layer on the active backend."""
    import keras

    def loss_of(out: Any, y: Any) -> Any:
        if y is None:
            return keras.ops.mean(keras.ops.square(out))
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True))

    kw = {"training": mode == "train"} if isinstance(model, keras.Model) else {}
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x_np)
        y = None if y_np is None else tf.constant(y_np)
        if mode == "forward":
            fwd = tf.function(lambda xx: model(xx, **kw), jit_compile=False)
            return lambda: _block(fwd(x))
        opt = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
        opt.build(model.trainable_variables)

        @tf.function(jit_compile=False)
        def train(xx: Any, yy: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = loss_of(model(xx, **kw), yy)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return lambda: _block(train(x, y))
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(x_np)
        y = None if y_np is None else jnp.asarray(y_np)
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        if mode == "forward":
            f = jax.jit(lambda tv, ntv, xx: model.stateless_call(tv, ntv, xx, **kw)[0])
            return lambda: _block(jax.block_until_ready(f(tv, ntv, x)))
        opt = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
        opt.build(model.trainable_variables)
        ov = [v.value for v in opt.variables]

        def loss_fn(tv: Any, ntv: Any, xx: Any, yy: Any) -> Any:
            out, ntv2 = model.stateless_call(tv, ntv, xx, **kw)
            return loss_of(out, yy), ntv2

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        @jax.jit
        def train(tv: Any, ntv: Any, ov: Any, xx: Any, yy: Any) -> Any:
            (loss, ntv2), g = grad_fn(tv, ntv, xx, yy)
            tv2, ov2 = opt.stateless_apply(ov, g, tv)
            return tv2, ntv2, ov2, loss

        state = {"tv": tv, "ntv": ntv, "ov": ov}

        def jstep() -> None:
            state["tv"], state["ntv"], state["ov"], loss = train(state["tv"], state["ntv"], state["ov"], x, y)
            jax.block_until_ready(loss)

        return jstep
    if backend == "torch":
        import torch

        x = torch.as_tensor(x_np)
        y = None if y_np is None else torch.as_tensor(y_np)
        dev = next((v.value.device for v in model.trainable_variables), torch.device("cpu"))
        x = x.to(dev)
        y = None if y is None else y.to(dev)
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        if mode == "forward":

            def fwd() -> None:
                with torch.no_grad():
                    model(x, **kw)
                sync()

            return fwd
        params = [v.value for v in model.trainable_variables]
        opt_t = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

        def tstep() -> None:
            opt_t.zero_grad(set_to_none=True)
            loss_of(model(x, **kw), y).backward()
            opt_t.step()
            sync()

        return tstep
    raise RuntimeError(f"Keras backend {backend!r} is not supported by the benchmark")


# ---------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------
def run_matrix(
    frameworks: list[str],
    workloads: list[Workload],
    modes: list[str],
    *,
    warmup: int,
    rounds: int,
    device: str = "cpu",
    candidates: tuple[str, ...] = CANDIDATES,
    budget_s: float | None = None,
    log: Callable[[str], None] = print,
    on_group: Callable[[list[Result]], None] | None = None,
) -> list[Result]:
    """Run every (framework, workload, mode) group; returns one :class:`Result` per candidate."""
    from harness.frameworks import prepare_process

    prepare_process()
    results: list[Result] = []
    for fw in frameworks:
        for wl in workloads:
            for mode in modes:
                t0 = time.perf_counter()
                if fw == "torch":
                    c, sync = _torch_candidates(wl, mode, device, candidates)
                else:
                    c, sync = _keras_candidates(wl, mode, candidates)
                times = time_interleaved(c["fns"], warmup=warmup, rounds=rounds, sync=sync, budget_s=budget_s)
                rs = _results(fw, wl, mode, times, c["notes"])
                results += rs
                if on_group is not None:
                    on_group(results)  # e.g. write the partial JSON, so a long run leaves something behind
                log(
                    f"[{fw}] {wl.name} {mode}: "
                    + ", ".join(f"{r.candidate} {r.median_ms:.1f} ms ({r.ratio:.2f}×)" for r in rs)
                    + f"  [{time.perf_counter() - t0:.0f} s]"
                )
    return results


def set_threads(n: int, frameworks: list[str]) -> None:
    """Pin the intra-op thread count (and TF's inter-op pool) before any work runs."""
    from harness.frameworks import prepare_process

    prepare_process()
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in frameworks or "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    if "keras" in frameworks:
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, n))


def hardware(device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores, threads, load average, library versions (and the GPU name for cuda devices)."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    info["cpu"] = provenance.cpu_model()
    info["cores"] = os.cpu_count()
    try:
        info["cores_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        pass
    try:
        info["loadavg"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    vers: dict[str, str] = {}
    import importlib.metadata as md

    for pkg in ("numpy", "torch", "tensorflow-cpu", "tensorflow", "keras", "jax", "jaxlib"):
        try:
            vers[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    info["versions"] = vers
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    info["env"] = {
        k: os.environ[k]
        for k in ("OMP_NUM_THREADS", "KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS")
        if k in os.environ
    }
    return info


def render(results: list[dict[str, Any]], hw: list[dict[str, Any]], title: str) -> str:
    """The markdown report: one table per (framework, workload, mode) plus the target check."""
    from tabulate import tabulate

    lines = [
        f"# {title}",
        "",
        f"Generated by `python -m harness.bench` on {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} "
        "UTC. Times are medians of interleaved rounds (static and every formulation alternate within each "
        "round); ratio = median(candidate) / median(static) from the same run. `train` = forward + "
        "cross-entropy + backward + SGD-momentum step; `forward` = eval mode, no gradient.",
        "",
    ]
    lines += ["## Hardware and software", ""]
    for h in hw:
        lines.append(
            f"- run `{h.get('label', '')}`: CPU **{h.get('cpu')}**, {h.get('cores')} cores "
            f"({h.get('cores_usable')} usable), torch threads {h.get('torch_threads', '—')}"
            + (f", GPU **{h['gpu']}**" if h.get("gpu") else "")
            + f"; load average before {h.get('loadavg')}, after {h.get('loadavg_after')}; "
            f"Python {h.get('python')}; "
            + ", ".join(f"{k} {v}" for k, v in h.get("versions", {}).items())
            + (f"; env {h['env']}" if h.get("env") else "")
        )
    lines.append("")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["framework"], r["workload"], r["mode"]), []).append(r)
    lines += ["## Ratios DRT / static (median)", ""]
    wls = list(dict.fromkeys(r["workload"] for r in results))
    table = []
    for fw in dict.fromkeys(r["framework"] for r in results):
        for wl in wls:
            for mode in ("train", "forward"):
                g = groups.get((fw, wl, mode))
                if not g:
                    continue
                by = {r["candidate"]: r for r in g}
                st = by.get("static")
                row = [fw, wl, mode, f"b{g[0]['batch']}", f"{st['median_ms']:.1f}" if st else "—"]
                for cand in CANDIDATES[1:]:
                    r = by.get(cand)
                    row.append("—" if r is None or r["ratio"] is None else f"{r['ratio']:.2f}×")
                table.append(row)
    lines.append(
        tabulate(
            table,
            headers=["framework", "workload", "mode", "batch", "static ms"]
            + [f"{c}" for c in CANDIDATES[1:]],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    lines += ["", "## Targets (training step, DRT sr with `auto` / static, CPU)", ""]
    tt = []
    for (fw, wl, mode), g in groups.items():
        model = wl.split()[0]
        if mode != "train" or model not in ("digits_cnn", "resnet50", "resnet101"):
            continue
        auto = next((r for r in g if r["candidate"] == "auto"), None)
        best = min((r for r in g if r["candidate"] != "static"), key=lambda r: r["ratio"], default=None)
        if auto is None:
            continue
        tgt = TARGETS.get((fw, model))
        tt.append(
            [
                fw,
                wl,
                f"{auto['ratio']:.2f}×",
                f"<= {tgt}×" if tgt else "—",
                ("met" if auto["ratio"] <= tgt else "**missed**") if tgt else "—",
                f"{best['candidate']} {best['ratio']:.2f}×" if best else "—",
            ]
        )
    lines.append(
        tabulate(
            tt,
            headers=["framework", "model", "auto", "target", "", "fastest formulation (beside)"],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    lines += ["", "## All timings (ms)", ""]
    full = [
        [
            r["framework"],
            r["workload"],
            r["mode"],
            r["candidate"],
            f"{r['median_ms']:.2f}",
            f"{r['min_ms']:.2f}",
            f"{r['max_ms']:.2f}",
            r["rounds"],
            "—" if r["ratio"] is None else f"{r['ratio']:.3f}",
            r["note"],
        ]
        for r in results
    ]
    lines.append(
        tabulate(
            full,
            headers=[
                "fw",
                "workload",
                "mode",
                "candidate",
                "median",
                "min",
                "max",
                "rounds",
                "ratio",
                "note",
            ],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--frameworks", default="torch,keras")
    p.add_argument("--modes", default="train,forward")
    p.add_argument("--only", default="", help="comma list of workload-name prefixes to keep")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument(
        "--budget", type=float, default=None, help="seconds of timed rounds per group (>= 3 rounds)"
    )
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--quick", action="store_true", help="tiny shapes and 1 warm-up + 2 rounds (a dry run)")
    p.add_argument("--gpu", action="store_true", help="ResNet-101, batch 64, 224×224 on the accelerator")
    p.add_argument("--device", default=None, help="torch device (default cuda with --gpu, else cpu)")
    p.add_argument("--json", default=None, help="write raw results here (default results/perf/bench.json)")
    p.add_argument("--out", default=None, help="markdown report (default results/perf/README.md)")
    p.add_argument("--no-readme", action="store_true")
    p.add_argument("--render", nargs="*", default=None, help="only render these JSON result files into --out")
    p.add_argument("--title", default=None)
    p.add_argument("--notes", default=None, help="markdown file appended to the report")
    p.add_argument("--threads", type=int, default=None, help="torch/TF intra-op threads (default: library)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (builds nothing)")
    p.epilog = "End-to-end training throughput (data loader vs model): python -m harness.bench e2e --help"
    args = p.parse_args(argv)
    perf = pathlib.Path("results/perf")
    out_md = pathlib.Path(args.out) if args.out else perf / ("gpu.md" if args.gpu else "README.md")
    title = args.title or (
        "DRT overhead on GPU (ResNet-101, batch 64, 224×224)"
        if args.gpu
        else "DRT wall-clock overhead vs static (CPU)"
    )
    if args.render is not None:
        res, hws = [], []
        for f in args.render:
            d = json.loads(pathlib.Path(f).read_text())
            res += d["results"]
            hws.append(d["hardware"])
        out_md.parent.mkdir(parents=True, exist_ok=True)
        notes = pathlib.Path(args.notes).read_text() if args.notes else ""
        out_md.write_text(render(res, hws, title) + ("\n" + notes if notes else ""))
        print(f"wrote {out_md}")
        return 0
    device = args.device or ("cuda" if args.gpu else "cpu")
    wls = gpu_workloads(args.quick) if args.gpu else default_workloads(args.quick)
    if args.only:
        keep = tuple(s.strip() for s in args.only.split(","))
        wls = [w for w in wls if w.name.startswith(keep)]
    warmup, rounds = (1, 2) if args.quick else (args.warmup, args.rounds)
    fws = [f for f in args.frameworks.split(",") if f]
    if args.dry_run:
        print(
            f"harness.bench plan (dry run: nothing is built or measured): frameworks {','.join(fws)}, device "
            f"{device}, modes {args.modes}, candidates {args.candidates}, warmup {warmup}, rounds {rounds}"
            + (f", budget {args.budget:g} s per group" if args.budget else "")
        )
        for w in wls:
            print(f"  workload {w.name}: batch {w.batch}, {w.size}x{w.size}")
        return 0
    if args.threads:
        set_threads(args.threads, args.frameworks.split(","))
    hw = hardware(device)
    hw["label"] = ",".join(fws) + (" gpu" if args.gpu else "")
    js = pathlib.Path(args.json) if args.json else perf / ("gpu.json" if args.gpu else "bench.json")
    js.parent.mkdir(parents=True, exist_ok=True)

    def partial(rs: list[Result]) -> None:
        data = {"hardware": hw, "results": [asdict(r) for r in rs], "partial": True}
        js.write_text(json.dumps(data, indent=1))

    results = run_matrix(
        fws,
        wls,
        [m for m in args.modes.split(",") if m],
        warmup=warmup,
        rounds=rounds,
        device=device,
        candidates=tuple(args.candidates.split(",")),
        budget_s=args.budget,
        on_group=partial,
    )
    hw_after = hardware(device)
    hw["loadavg_after"] = hw_after.get("loadavg")
    hw.update({k: v for k, v in hw_after.items() if k in ("torch_threads", "gpu")})
    raw = {"hardware": hw, "results": [asdict(r) for r in results]}
    js.write_text(json.dumps(raw, indent=1))
    print(f"wrote {js}")
    if not args.no_readme:
        out_md.parent.mkdir(parents=True, exist_ok=True)
        out_md.write_text(render(raw["results"], [hw], title))
        print(f"wrote {out_md}")
    return 0
