"""``python -m harness.equivalence step``: one training update in PyTorch and in Keras from identical weights.

For each method (and stage: ADDA's two stages, DRT+ST's two stages) the check builds both algorithms from the
same :class:`~harness.spec.method.MethodSpec` and :class:`~harness.spec.model.ModelSpec` (dropout 0), ports
the
torch initial weights to Keras through the neutral format, feeds the same batch (one NumPy generator; NCHW for
torch, NHWC for Keras) and runs ``updates`` updates per stage at a mid-training step (GRL schedule
``p = 0.25`` in stage 0), the learning-rate factor changing between updates (1, then 0.5) so that
the torch semantics of momentum under a schedule are exercised. After every update it compares:

* every metric the two ``update`` calls return (relative difference ``|a-b| / max(|a|, 1e-30)``);
* every parameter (``max|a-b| / max(max|a|, 1e-6)`` per tensor), every parameter *change* over the update
  (same measure on ``w_after - w_before``) and every BatchNorm buffer. Parameters that hold only rounding
  noise in both frameworks (``< 1e-9``: biases before a BatchNorm, whose exact gradient is 0) are listed
  separately with their absolute difference.

``--route block|layer`` sets ``ModelSpec.route`` (default: the architecture's — block routing for ResNets,
layer routing for the digit CNN); ``--arch resnet18`` runs at 64×64.

Tolerances (default): float64 metrics 1e-10, parameters 1e-9 (parameter changes and buffers reported);
float32 1e-4. Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from harness.frameworks import prepare_process, require
from harness.spec.method import METHODS, MethodSpec
from harness.spec.model import ModelSpec

TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"loss": 1e-10, "param": 1e-9},
    "float32": {"loss": 1e-4, "param": 1e-4},
}

#: Hyperparameters of the check: large enough learning rates that an update is visible in every parameter.
CHECK_HPARAMS: dict[str, Any] = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
TOTAL_STEPS = 100


#: Scale floor of the relative measure: a tensor that is numerically zero in both frameworks (e.g. the bias of
#: a Linear followed by BatchNorm, whose exact gradient is 0 and whose computed one is rounding noise ~1e-19)
#: is compared absolutely at this scale.
SCALE_FLOOR = 1e-6


#: A parameter whose values stay below this in both frameworks has learnt nothing: its exact gradient is 0
# (the
#: bias of a Linear followed by BatchNorm) and it holds only rounding noise, which Adam amplifies by lr/eps.
#: Such tensors are listed under ``noise_params`` with their absolute difference, not in the relative maxima.
NOISE_LEVEL = 1e-9


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a-b| / max(max|a|, SCALE_FLOOR)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), SCALE_FLOOR)


def make_batch(
    rng: np.random.Generator, n: int, num_sources: int, num_classes: int, size: int = 32
) -> dict[str, np.ndarray]:
    """A NHWC batch: ``n`` source images N(0, 1) (domain ids cycling 0..N-1), labels, and ``n`` target images
    N(0.5, 1.5²): a shifted target keeps ADDA's critic gradient away from the exact cancellation of two
    identical domains (at the stage switch G_t = G_s)."""
    return {
        "xs": rng.standard_normal((n, size, size, 3)),
        "ys": rng.integers(0, num_classes, n).astype(np.int64),
        "ds": (np.arange(n) % num_sources).astype(np.int64),
        "xt": rng.standard_normal((n, size, size, 3)) * 1.5 + 0.5,  # a shifted "target domain"
    }


def run_check(
    method: str,
    variant: str = "static",
    dtype: str = "float64",
    *,
    arch: str = "digits_cnn",
    batch: int = 6,
    num_sources: int = 3,
    num_classes: int = 10,
    updates: int = 2,
    seed: int = 0,
    formulation: str | None = None,
    hparams: dict[str, Any] | None = None,
    width: float = 1.0,
    route: str | None = None,
) -> dict[str, Any]:
    """Run the check for one method and variant; returns a JSON-ready report (``ok`` says if it passed).

    ``width`` scales the digit CNN's channels and hidden units (``ModelSpec.width``; the tests use 0.25 for
    speed, the CLI defaults to the full network)."""
    require("torch")
    require("keras")
    prepare_process()
    import torch

    from impl_keras.methods import build_algorithm as build_keras
    from impl_torch.methods import build_algorithm as build_torch
    from impl_torch.weights import to_neutral

    torch.manual_seed(seed)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    mspec_kw: dict[str, Any] = {"arch": arch, "num_classes": num_classes, "variant": variant, "dropout": 0.0}
    if formulation:
        mspec_kw["formulation"] = formulation
    if width != 1.0:
        mspec_kw["width"] = width
    if route is not None:
        mspec_kw["route"] = route
    model_spec = ModelSpec(**mspec_kw)
    hp = dict(CHECK_HPARAMS)
    hp.update(hparams or {})
    spec = MethodSpec.create(method, "smoke", hp, num_sources=num_sources, num_classes=num_classes)
    t0 = time.perf_counter()
    ta = build_torch(spec, model_spec, dtype=tdtype)
    ka = build_keras(spec, model_spec, dtype=dtype)
    ka.from_neutral(to_neutral(ta.nets))
    rng = np.random.default_rng(seed)
    tol = TOLERANCES[dtype]
    size = model_spec.default_input_size if arch == "digits_cnn" else 64
    report: dict[str, Any] = {
        "method": method,
        "variant": variant,
        "dtype": dtype,
        "arch": arch,
        "width": model_spec.width,
        "formulation": model_spec.formulation,
        "route": model_spec.resolved_route,
        "checks": [],
    }
    stage_steps = [int(0.25 * TOTAL_STEPS)]
    if len(spec.stages()) > 1:
        stage_steps.append(spec.stage_start(1, TOTAL_STEPS) + 5)
    for stage_step in stage_steps:
        for u in range(updates):
            step = stage_step + u
            factor = 1.0 if u == 0 else 0.5
            for a in (ta, ka):
                a.set_progress(step, TOTAL_STEPS)
                a.set_lr_factor(factor)
            nb = make_batch(rng, batch, num_sources, num_classes, size)
            tb = {
                k: torch.as_tensor(np.ascontiguousarray(v.transpose(0, 3, 1, 2)) if v.ndim == 4 else v)
                for k, v in nb.items()
            }
            tb = {k: v.to(tdtype) if v.is_floating_point() else v for k, v in tb.items()}
            kb = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in nb.items()}
            before = to_neutral(ta.nets)
            mt = ta.update(tb)
            mk = ka.update(kb)
            after_t = to_neutral(ta.nets)
            after_k = ka.to_neutral()
            trainable = {n for n, p in ta.nets.named_parameters()}
            metric_rel = {k: abs(mt[k] - mk[k]) / max(abs(mt[k]), 1e-30) for k in mt if k in mk}
            missing = sorted(set(mt) ^ set(mk))
            param_rel, delta_rel, buffer_rel = {}, {}, {}
            noise: dict[str, float] = {}
            for name, v in after_t.items():
                if name in trainable and max(np.abs(v).max(), np.abs(after_k[name]).max()) < NOISE_LEVEL:
                    noise[name] = float(np.abs(v - after_k[name]).max())
                elif name in trainable:
                    param_rel[name] = _rel(v, after_k[name])
                    if np.any(v != before[name]):
                        delta_rel[name] = _rel(v - before[name], after_k[name] - before[name])
                elif v.dtype.kind == "f":
                    buffer_rel[name] = _rel(v, after_k[name])
                elif not np.array_equal(v, after_k[name]):
                    buffer_rel[name] = float("inf")
            worst = max(param_rel, key=param_rel.get)
            check = {
                "stage": spec.stages()[ta.stage].name,
                "step": step,
                "lr_factor": factor,
                "metrics_torch": mt,
                "metrics_keras": mk,
                "metric_rel": metric_rel,
                "metrics_missing": missing,
                "loss_rel_max": max(metric_rel.values()),
                "param_rel_max": param_rel[worst],
                "param_worst": worst,
                "delta_rel_max": max(delta_rel.values()) if delta_rel else 0.0,
                "delta_worst": max(delta_rel, key=delta_rel.get) if delta_rel else None,
                "params_changed": len(delta_rel),
                "params": len(param_rel),
                "buffer_rel_max": max(buffer_rel.values()) if buffer_rel else 0.0,
                "noise_params": noise,
            }
            check["ok"] = (
                check["loss_rel_max"] <= tol["loss"]
                and check["param_rel_max"] <= tol["param"]
                and check["buffer_rel_max"] <= tol["param"]
                and not missing
            )
            report["checks"].append(check)
    report["ok"] = all(c["ok"] for c in report["checks"])
    report["loss_rel_max"] = max(c["loss_rel_max"] for c in report["checks"])
    report["param_rel_max"] = max(c["param_rel_max"] for c in report["checks"])
    report["delta_rel_max"] = max(c["delta_rel_max"] for c in report["checks"])
    report["buffer_rel_max"] = max(c["buffer_rel_max"] for c in report["checks"])
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["tolerances"] = tol
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="all", help=f"one of {', '.join(METHODS)} or 'all'")
    parser.add_argument(
        "--variant", nargs="+", default=["static", "sr"], help="DRT variants (default static sr)"
    )
    parser.add_argument("--dtype", default="float64", choices=sorted(TOLERANCES))
    parser.add_argument("--arch", default="digits_cnn", help="backbone (default digits_cnn)")
    parser.add_argument("--formulation", default=None, help="DRT formulation (default: the model spec's)")
    parser.add_argument(
        "--route",
        default=None,
        choices=("block", "layer"),
        help="routing input of the DRT branches (default: the arch's; block for ResNets)",
    )
    parser.add_argument(
        "--width", type=float, default=1.0, help="digit CNN width multiplier (default 1.0, the full network)"
    )
    parser.add_argument("--batch", type=int, default=6, help="source and target batch size (default 6)")
    parser.add_argument("--sources", type=int, default=3, help="number of source domains (default 3)")
    parser.add_argument("--updates", type=int, default=2, help="updates per stage (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")


def main(args: argparse.Namespace) -> int:
    methods = list(METHODS) if args.method == "all" else [args.method]
    for m in methods:
        if m not in METHODS:
            print(f"unknown method {m!r}: expected one of {', '.join(METHODS)} or 'all'", file=sys.stderr)
            return 2
    reports = []
    for m in methods:
        for v in args.variant:
            r = run_check(
                m,
                v,
                args.dtype,
                arch=args.arch,
                batch=args.batch,
                num_sources=args.sources,
                updates=args.updates,
                seed=args.seed,
                formulation=args.formulation,
                width=args.width,
                route=getattr(args, "route", None),
            )
            reports.append(r)
            if not args.json:
                print(
                    f"{m:12s} {v:7s} {r['route']:5s} {args.dtype}  "
                    f"loss rel {r['loss_rel_max']:.2e}  param rel "
                    f"{r['param_rel_max']:.2e}  update rel {r['delta_rel_max']:.2e}  BN buffers "
                    f"{r['buffer_rel_max']:.2e}  {len(r['checks'])} updates  {r['seconds']:.1f}s  "
                    f"{'ok' if r['ok'] else 'FAIL'}",
                    flush=True,
                )
    if args.json:
        print(json.dumps(reports, indent=1, default=float))
    ok = all(r["ok"] for r in reports)
    if not args.json:
        print("all equal within tolerance" if ok else "MISMATCH", flush=True)
    return 0 if ok else 1
