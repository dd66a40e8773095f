r"""``python -m harness.flops``: parameters, MACs and FLOPs of a model, static vs DRT, analytic vs counters.

Examples::

    python -m harness.flops --arch resnet101                       # analytic, every formulation, 224×224
    python -m harness.flops --arch resnet101 --counters torch,tf --input 64 --batch 2
    python -m harness.flops --arch digits_cnn --formulation kernel_merge --per-layer
    python -m harness.flops --arch resnet50 --json

Convention: **MACs** = multiply-accumulates of convolutions, Linear layers, the DRT branch FCs, the kernel
aggregation, the per-sample convolutions and the ``output_mix`` weighted sum; **FLOPs = 2 × MACs**;
elementwise
ops (BN, ReLU, pooling, GAP, softmax/sigmoid, scaling) are counted separately. Overheads are relative to the
static model with the same head. Counter columns are FLOPs for the whole batch; the torch counter runs on the
``meta`` device (shapes only), so even ResNet-101 at 224 is instant; the TF profiler traces the Keras model.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.errors import DrtBenchError
from harness.flops.analytic import MAC_KINDS, ModelCount, model_counts, overhead_pct, tf_visible_macs
from harness.spec.layer import FORMULATIONS, VARIANTS
from harness.spec.model import ARCHS, ModelSpec


def torch_flops(ms: ModelSpec, size: int, batch: int, backward: bool = False) -> Any:
    """FlopCounterMode on the torch model built on the ``meta`` device (forward, or forward+backward)."""
    from harness.frameworks import require

    require("torch")
    import torch

    from harness.drivers.flops.torch_counter import count
    from impl_torch.backbones import build_model

    with torch.device("meta"):  # shapes only: instant, and exact (forward and backward)
        model = build_model(ms)
    model.train(backward)
    x = torch.empty(batch, 3, size, size, device="meta")
    return count(model, x, backward=backward)


def tf_flops(ms: ModelSpec, size: int, batch: int) -> Any:
    from harness.frameworks import require

    require("keras")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise DrtBenchError("the TF counter needs KERAS_BACKEND=tensorflow")
    from harness.drivers.flops.tf_counter import count_keras
    from impl_keras.backbones import build_model

    return count_keras(build_model(ms), (batch, size, size, 3))


def _fmt(n: float | None, unit: float = 1e6) -> str:
    return "—" if n is None else f"{n / unit:,.2f}"


def _pct(p: float | None) -> str:
    return "—" if p is None else f"{p:+.3f} %"


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = ModelSpec(
        arch=args.arch,
        variant=args.variant,
        K=args.K,
        basis_kernel=args.basis_kernel,
        head=args.head,
        num_classes=args.num_classes,
        placement=args.placement,
        route=getattr(args, "route", None),
    )
    size = args.input or base.default_input_size
    forms = list(FORMULATIONS) if args.formulation == "all" else [args.formulation]
    counters = [c for c in args.counters.split(",") if c]
    rows: list[dict[str, Any]] = []
    specs = [("static", base.replace(variant="static"))] + [(f, base.replace(formulation=f)) for f in forms]
    for name, ms in specs:
        mc = model_counts(ms, input_size=size)
        row: dict[str, Any] = {
            "model": name,
            "params": mc.params,
            "macs": mc.macs(args.batch),
            "flops": mc.flops(args.batch),
            "elementwise": mc.elementwise(args.batch),
            "by_kind": mc.by_kind(args.batch),
            "tf_visible_flops": 2 * tf_visible_macs(mc, args.batch),
            "count": mc,
        }
        if "torch" in counters:
            row["torch_flops"] = torch_flops(ms, size, args.batch).total_flops
            if args.backward:
                row["torch_train_flops"] = torch_flops(ms, size, args.batch, backward=True).total_flops
        if "tf" in counters:
            tc = tf_flops(ms, size, args.batch)
            row["tf_dense_flops"] = tc.dense_flops
            row["tf_total_flops"] = tc.total_flops
            row["tf_by_op"] = tc.by_op
            row["tf_uncounted"] = tc.uncounted
        rows.append(row)
    st = rows[0]
    for r in rows:
        r["overhead_pct"] = overhead_pct(st["macs"], r["macs"])
        for c in ("torch_flops", "tf_dense_flops", "tf_total_flops"):
            if c in r:
                r[c.replace("flops", "overhead_pct")] = overhead_pct(st[c], r[c])
    return {
        "arch": args.arch,
        "variant": args.variant,
        "input": size,
        "batch": args.batch,
        "head": f"{base.head}, {base.num_classes} classes",
        "K": base.K,
        "route": base.resolved_route,
        "basis_kernel": base.basis_kernel,
        "convention": "MACs = multiply-accumulates; FLOPs = 2 x MACs; elementwise ops counted separately",
        "rows": rows,
    }


def render(res: dict[str, Any], per_layer: bool) -> str:
    from tabulate import tabulate

    rows = res["rows"]
    out = [
        f"# {res['arch']} ({res['variant']}, K={res['K']}, basis {res['basis_kernel']}, "
        f"{res['route']} routing, head {res['head']}), "
        f"input {res['input']}×{res['input']}, batch {res['batch']}",
        "Convention: MACs = multiply-accumulates; FLOPs = 2 × MACs; elementwise ops separate. "
        "Counts are M (10^6) for the whole batch.",
        "",
    ]
    head = ["model", "params (M)", "MACs (M)", "FLOPs (M)", "overhead", "elementwise (M)"]
    has_t = "torch_flops" in rows[0]
    has_tf = "tf_dense_flops" in rows[0]
    if has_t:
        head += ["torch FLOPs (M)", "torch − analytic", "torch overhead"]
    if has_tf:
        head += ["TF dense FLOPs (M)", "TF − analytic(TF-visible)", "TF overhead (dense)", "TF all ops (M)"]
    table = []
    for r in rows:
        line = [
            r["model"],
            _fmt(r["params"]),
            _fmt(r["macs"]),
            _fmt(r["flops"]),
            _pct(r["overhead_pct"]),
            _fmt(r["elementwise"]),
        ]
        if has_t:
            line += [
                _fmt(r["torch_flops"]),
                f"{r['torch_flops'] - r['flops']:+,d}",
                _pct(r["torch_overhead_pct"]),
            ]
        if has_tf:
            line += [
                _fmt(r["tf_dense_flops"]),
                f"{r['tf_dense_flops'] - r['tf_visible_flops']:+,d}",
                _pct(r["tf_dense_overhead_pct"]),
                _fmt(r["tf_total_flops"]),
            ]
        table.append(line)
    out.append(tabulate(table, headers=head, tablefmt="github", disable_numparse=True))
    out += ["", "MACs by component (M):", ""]
    kinds = [k for k in MAC_KINDS if any(k in r["by_kind"] for r in rows)]
    out.append(
        tabulate(
            [[r["model"]] + [_fmt(r["by_kind"].get(k, 0)) for k in kinds] for r in rows],
            headers=["model"] + kinds,
            tablefmt="github",
            disable_numparse=True,
        )
    )
    out += ["", "Ops each counter misses:", ""]
    miss = []
    for r in rows:
        el = r["elementwise"]
        tf_miss = r["flops"] - r["tf_visible_flops"]
        line = [
            r["model"],
            f"elementwise {_fmt(el)} M (BN, ReLU, pools, GAP, softmax/sigmoid, scaling, adds)",
            f"Einsum {_fmt(tf_miss)} M FLOPs (mix/aggregation/1×1 ΔW); Relu, Sigmoid, Exp, "
            "FusedBatchNorm = 0",
        ]
        if has_tf:
            line[2] += "; uncounted nodes: " + ", ".join(
                f"{k}×{v}" for k, v in sorted(r["tf_uncounted"].items())
            )
        miss.append(line)
    out.append(
        tabulate(
            miss, headers=["model", "torch FlopCounterMode misses", "TF profiler misses"], tablefmt="github"
        )
    )
    if "torch_train_flops" in rows[0]:
        out += ["", "torch forward+backward FLOPs (grouped-conv kernel-gradient over-count corrected):", ""]
        out.append(
            tabulate(
                [
                    [
                        r["model"],
                        _fmt(r["torch_train_flops"]),
                        f"{r['torch_train_flops'] / r['torch_flops']:.2f}×",
                    ]
                    for r in rows
                ],
                headers=["model", "fwd+bwd FLOPs (M)", "÷ forward"],
                tablefmt="github",
            )
        )
    if per_layer:
        out += ["", "Per layer (analytic, per batch, M):", ""]
        for r in rows[1:] if len(rows) > 1 else rows:
            out += [f"## {r['model']}", ""]
            mc: ModelCount = r["count"]
            b = res["batch"]
            lines = [
                [
                    lc.path,
                    lc.op,
                    "×".join(map(str, lc.out_shape)),
                    _fmt(lc.params),
                    _fmt(b * lc.total_macs),
                    ", ".join(
                        f"{k} {_fmt(b * v)}" for k, v in lc.macs.items() if k != "conv" and k != "linear"
                    ),
                    _fmt(b * lc.total_elementwise),
                ]
                for lc in mc.layers
                if lc.total_macs
            ]
            out.append(
                tabulate(
                    lines,
                    headers=["path", "op", "out", "params", "MACs", "DRT parts", "elementwise"],
                    tablefmt="github",
                    disable_numparse=True,
                )
            )
            out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.flops", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--variant", default="sr", choices=[v for v in VARIANTS if v != "static"])
    p.add_argument("--formulation", default="all", choices=("all",) + FORMULATIONS)
    p.add_argument("--input", type=int, default=None, help="input size (default 32 digits, 224 ResNets)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--K", type=int, default=4)
    p.add_argument("--basis-kernel", default=None, help='1 or "full" (default: the architecture default)')
    p.add_argument("--placement", default="default")
    p.add_argument(
        "--route",
        default=None,
        choices=("block", "layer"),
        help="routing input of the DRT branches (default: the architecture's, block for ResNets)",
    )
    p.add_argument("--head", default="linear", choices=("linear", "mcd"))
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--counters", default="", help="comma list: torch, tf (default: analytic only)")
    p.add_argument(
        "--backward", action="store_true", help="also count forward+backward with the torch counter"
    )
    p.add_argument("--per-layer", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.basis_kernel is not None and args.basis_kernel != "full":
        args.basis_kernel = int(args.basis_kernel)
    if "torch" in args.counters or "tf" in args.counters:
        from harness.frameworks import prepare_process

        prepare_process()
    try:
        res = run(args)
    except DrtBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        for r in res["rows"]:
            r.pop("count")
        print(json.dumps(res, indent=1, sort_keys=True))
    else:
        print(render(res, args.per_layer))
    return 0
