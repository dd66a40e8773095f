"""``python -m harness.equivalence model``: a whole model in PyTorch and in Keras from identical weights.

Builds the torch model of a :class:`~harness.spec.model.ModelSpec` (dropout forced to 0) in float64,
randomises its BatchNorm affine parameters and sets the running statistics from an independent calibration
batch (so that eval mode is neither an identity nor ill-conditioned; see :func:`randomise_batchnorm`), casts
it to the checked dtype, ports every tensor to Keras through the neutral format, and feeds the same random
input (NCHW for torch, NHWC for Keras). Then, for the modes ``eval`` (running statistics) and ``train``
(batch statistics; the running statistics are updated once) it compares:

* every stage's output (``stem``, ``layer1`` … ``layer4``, ``pool``, ``head`` for ResNets; ``block1`` …
  ``block3``, ``fc1``, ``fc2``, ``head`` for the digit CNN);
* the gradient of every parameter for the loss ``Σ logits ⊙ G`` (``G`` a fixed random cotangent), grouped
  by the stage that holds the parameter;
* in ``train`` mode, every BatchNorm buffer after the update (the unbiased running-variance trap).

Measure: the *max relative difference*: per stage output
:func:`harness.drivers.equivalence.compare.max_rel_diff` (``max|a−b| / max(max|a|, max|b|)``); for gradients
and buffers the maximum absolute difference over the stage's tensors divided by their maximum magnitude (a
stage-wide scale: some gradients are exactly zero in exact arithmetic, e.g. a Linear bias before a train-mode
BatchNorm, and a per-tensor ratio of rounding noise would be meaningless). Tolerances: float64 1e-9, float32
1e-4 (``--tol`` overrides). In float32 the test point (seed) is the first one where torch float32 itself
agrees with torch float64 to a tenth of the tolerance (:func:`_float32_conditioning`: float32 rounding can
flip a ReLU gate, which no framework pair can agree on); the seed used and the rejected ones are reported.

``--route block|layer`` sets the routing input of the DRT branches (``ModelSpec.route``; default the
architecture's: the residual block's input for ResNets, the conv's own input for the digit CNN).

On a mismatch the report names the first stage that diverges: in forward order for outputs and buffers, in
backward order (head first) for gradients — where an error enters the computation. Gradients of the Keras
variables are converted to the neutral layout with the same converters as the weights
(:func:`keras_neutral_gradients`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from harness.drivers.equivalence.compare import max_rel_diff
from harness.errors import DrtBenchError
from harness.frameworks import prepare_process, require
from harness.spec.layer import FORMULATION_CHOICES, VARIANTS
from harness.spec.model import ARCHS, HEADS, ModelSpec, stage_names, stage_of

TOLERANCES: dict[str, float] = {"float64": 1e-9, "float32": 1e-4}


def rel_diff(a: Any, b: Any) -> float:
    """:func:`harness.drivers.equivalence.compare.max_rel_diff` (``inf`` on a shape mismatch)."""
    try:
        return max_rel_diff(a, b)
    except ValueError:
        return float("inf")


def stage_rel_diff(
    a: dict[str, Any], b: dict[str, Any], names: list[str], arch: str
) -> tuple[dict[str, float], tuple[str, float] | None]:
    """Per stage: ``max|a−b|`` over the stage's tensors divided by ``max|a|`` over the stage's tensors; and
    the
    tensor with the largest absolute difference (a diagnostic).

    A stage-wide scale (not per tensor), because some gradients are mathematically zero and only rounding
    noise (e.g. the bias of a Linear followed by a train-mode BatchNorm), which a per-tensor ratio would turn
    into 1.
    """
    diff: dict[str, float] = {}
    scale: dict[str, float] = {}
    worst: tuple[str, float] | None = None
    for n in names:
        x, y = np.asarray(a[n]), np.asarray(b[n])
        if x.dtype != y.dtype or x.dtype.kind != "f":
            x, y = x.astype(np.float64), y.astype(np.float64)
        s = stage_of(n, arch)
        d = float("inf") if x.shape != y.shape else (float(np.max(np.abs(x - y))) if x.size else 0.0)
        diff[s] = max(diff.get(s, 0.0), d)
        scale[s] = max(scale.get(s, 0.0), float(np.max(np.abs(x))) if x.size else 0.0)
        if worst is None or d > worst[1]:
            worst = (n, d)
    return {s: (diff[s] / scale[s] if scale[s] > 0 else diff[s]) for s in diff}, worst


def randomise_batchnorm(model: Any, seed: int, calibration: Any | None = None) -> None:
    """Give every torch BatchNorm a non-trivial affine transform and running statistics (in place).

    Weights U(0.5, 1.5), biases N(0, 0.1²). The running statistics are those of ``calibration`` (an input
    batch, independent of the checked one) passed once in train mode — realistic eval-mode activations: with
    arbitrary running statistics the eval-mode gradients of the early ResNet stages are so ill-conditioned
    that
    torch float32 and float64 already differ by ~1e-2. ``num_batches_tracked`` is then 3.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
            m.bias.copy_(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
        if calibration is not None:
            was_training = model.training
            saved = [m.momentum for m in bns]
            for m in bns:
                m.momentum = 1.0
            model.train()
            model(calibration)
            for m, mom in zip(bns, saved):
                m.momentum = mom
            model.train(was_training)
        for m in bns:
            m.num_batches_tracked.fill_(3)


def _leaf_variable_map(layer: Any, prefix: str) -> dict[int, tuple[str, Any]]:
    """``id(variable) -> (neutral name, to-neutral layout function)`` for a leaf layer of known type."""
    import keras

    from impl_keras.layers.basic import BatchNorm, Linear
    from impl_keras.layers.drt_conv import DRTConv2D
    from impl_keras.weights import bases_to_neutral, hwio_to_oihw, to_numpy

    def linear_to_neutral(g: Any) -> np.ndarray:  # the backend's (tiled) transpose: fast for large Linears
        return keras.ops.convert_to_numpy(keras.ops.transpose(g))

    out: dict[int, tuple[str, Any]] = {}
    if isinstance(layer, Linear):
        out[id(layer.kernel)] = (prefix + "weight", linear_to_neutral)
        if layer.bias is not None:
            out[id(layer.bias)] = (prefix + "bias", to_numpy)
    elif isinstance(layer, BatchNorm):
        out[id(layer.weight)] = (prefix + "weight", to_numpy)
        out[id(layer.bias)] = (prefix + "bias", to_numpy)
    elif isinstance(layer, DRTConv2D):
        out[id(layer.kernel)] = (prefix + "weight", hwio_to_oihw)
        if layer.bases is not None:
            out[id(layer.bases)] = (prefix + "bases", bases_to_neutral)
        if layer.router_fc1 is not None:
            out[id(layer.router_fc1)] = (prefix + "router.fc1.weight", linear_to_neutral)
            out[id(layer.router_fc2)] = (prefix + "router.fc2.weight", linear_to_neutral)
    return out


def _keras_pass(
    km: Any, variables: list[Any], x_nhwc: np.ndarray, cot: np.ndarray, training: bool
) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Stage outputs of the Keras model and the gradients of ``Σ head ⊙ cot`` for ``variables``, on any
    Keras backend: a pure function of the variable values (``keras.StatelessScope``) differentiated by
    ``impl_keras.grad.value_and_grad``; the BatchNorm buffers it updates are written back afterwards."""
    import keras

    from impl_keras.grad import value_and_grad

    others = [v for v in km.variables if all(v is not w for w in variables)]
    dtype = variables[0].dtype if variables else "float32"
    xk = keras.ops.convert_to_tensor(np.ascontiguousarray(x_nhwc), dtype=dtype)
    ck = keras.ops.convert_to_tensor(cot, dtype=dtype)

    def objective(params: list[Any], xx: Any) -> tuple[Any, Any]:
        mapping = list(zip(variables, params)) + [(v, v.value) for v in others]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = km.forward_stages(xx, training=training)
            updated = [scope.get_current_value(v) for v in others]
        return keras.ops.sum(out["head"] * ck), (out, updated)

    (_, (out, updated)), grads = value_and_grad(objective)([v.value for v in variables], xk)
    for v, val in zip(others, updated):
        if val is not None:
            v.assign(val)
    stages = {k: keras.ops.convert_to_numpy(val) for k, val in out.items()}
    return stages, [None if g is None else keras.ops.convert_to_numpy(g) for g in grads]


def keras_neutral_gradients(model: Any, variables: list[Any], grads: list[Any]) -> dict[str, np.ndarray]:
    """Gradients of ``variables`` as neutral arrays (torch names and layouts).

    Variables of the known leaf layers (``Linear``, ``BatchNorm``, ``DRTConv2D``) are mapped by identity with
    the
    same layout converters as the weights; if any variable is left unmapped (an unknown layer type), the
    fallback assigns the gradients to the variables, reads ``to_neutral()`` and restores the values.
    """
    import keras

    vmap: dict[int, tuple[str, Any]] = {}
    for top, child in model.named_children():
        for path, layer in child.named_layers(prefix=f"{top}."):
            vmap.update(_leaf_variable_map(layer, path + "."))
    if all(id(v) in vmap for v in variables):
        out: dict[str, np.ndarray] = {}
        for v, g in zip(variables, grads):
            name, fn = vmap[id(v)]
            out[name] = fn(
                np.zeros(v.shape, dtype=keras.backend.standardize_dtype(v.dtype)) if g is None else g
            )
        return out
    saved = [np.array(v.numpy()) for v in variables]
    try:
        for v, g in zip(variables, grads):
            v.assign(np.zeros(v.shape, dtype=saved[0].dtype) if g is None else g)
        return model.to_neutral()
    finally:
        for v, s in zip(variables, saved):
            v.assign(s)


def keras_buffers(model: Any) -> dict[str, np.ndarray]:
    """The BatchNorm buffers of a Keras model (neutral names) without converting every weight."""
    from impl_keras.layers.basic import BatchNorm

    out: dict[str, np.ndarray] = {}
    for top, child in model.named_children():
        for path, layer in child.named_layers(prefix=f"{top}."):
            if isinstance(layer, BatchNorm):
                state = layer.to_neutral()
                for k in ("running_mean", "running_var", "num_batches_tracked"):
                    out[f"{path}.{k}"] = state[k]
    return out


def default_batch(spec: ModelSpec, size: int = 64) -> int:
    """16 where a BatchNorm1d normalises over the batch (digit CNN, MCD head); ResNets 4 below 128×128 input,
    else 2 (the last stage's maps are then >= 4×4; ResNet-101 at 224 float64, batch 2: 5.2 GB peak RSS).

    Train-mode BatchNorm1d over a small batch is ill-conditioned: on the digit CNN, torch float32 and torch
    float64 gradients already differ by ~1e-1 with 4 samples and (``sr``) with 8; with 16 by < 1e-5. Likewise
    the last ResNet stage at 64×64 input (2×2 maps): batch 2 (8 values per channel) gives ~4e-2 for ``comb``,
    batch 4 ~1e-5.
    """
    if spec.arch == "digits_cnn" or spec.head == "mcd":
        return 16
    return 4 if size < 128 else 2


def _draw(seed: int, batch: int, size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input (NCHW), cotangent and BatchNorm calibration batch of one test point (float64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size))
    cot = rng.standard_normal((batch, num_classes))
    calib = rng.standard_normal((max(batch, 4), 3, size, size))
    return x, cot, calib


def _torch_setup(spec: ModelSpec, seed: int, batch: int, size: int, dtype: str) -> tuple[Any, Any, Any]:
    """The torch model of a test point (built and BatchNorm-calibrated in float64, then cast), x and G."""
    import torch

    from impl_torch.backbones import build_model as torch_build

    x, cot, calib = _draw(seed, batch, size, spec.num_classes)
    torch.manual_seed(seed)
    tm = torch_build(spec, dtype=torch.float64)
    randomise_batchnorm(tm, seed, torch.from_numpy(calib))
    if dtype != "float64":
        tm = tm.to(getattr(torch, dtype))
    return tm, x.astype(dtype), cot.astype(dtype)


def _torch_pass(tm: Any, x: np.ndarray, cot: np.ndarray, training: bool) -> tuple[dict, dict]:
    """Stage outputs and parameter gradients (numpy) of one torch forward/backward."""
    import torch

    tm.train(training)
    for p in tm.parameters():
        p.grad = None
    out = tm.forward_stages(torch.from_numpy(x))
    (out["head"] * torch.from_numpy(cot)).sum().backward()
    grads = {n: p.grad.detach().numpy() for n, p in tm.named_parameters()}
    return {k: v.detach().numpy() for k, v in out.items()}, grads


def _float32_conditioning(
    spec: ModelSpec, tm32: Any, seed: int, batch: int, size: int, modes: tuple[str, ...]
) -> float:
    """How far torch float32 is from torch float64 at this test point (outputs and gradients, every mode).

    A float32 comparison is only meaningful where float32 rounding cannot flip a discrete decision: a ReLU
    pre-activation within ~1e-6 of zero flips its gate, and with the 2×2 maps of the last ResNet stage at
    64×64 input one flipped gate changes that stage's weight gradients by ~1e-1 — in torch alone (measured).
    The float32 check therefore uses the first seed where torch float32 agrees with float64 to tol/10.
    """
    import torch

    tm64, x64, cot64 = _torch_setup(spec, seed, batch, size, "float64")
    state = {k: v.clone() for k, v in tm32.state_dict().items()}
    worst = 0.0
    for mode in modes:
        o64, g64 = _torch_pass(tm64, x64, cot64, mode == "train")
        o32, g32 = _torch_pass(tm32, x64.astype(np.float32), cot64.astype(np.float32), mode == "train")
        names = list(g64)
        worst = max(worst, max(stage_rel_diff(g64, g32, names, spec.arch)[0].values()))
        worst = max(worst, max(rel_diff(o64[k], o32[k]) for k in o64))
    with torch.no_grad():
        for k, v in tm32.state_dict().items():
            v.copy_(state[k])
    return worst


def run(
    spec: ModelSpec,
    *,
    input_size: int | None = None,
    batch: int | None = None,
    dtype: str = "float64",
    seed: int = 0,
    tol: float | None = None,
    modes: tuple[str, ...] = ("eval", "train"),
    perturb: str | None = None,
    max_tries: int = 5,
    max_conditioning: float | None = None,
) -> dict[str, Any]:
    """Run the check for ``spec`` and return the report (see the module docstring).

    ``perturb``: the neutral name of a torch tensor to change (+0.5) *after* porting — a self-test of the
    diagnostics (the report must then name that tensor's stage). ``max_tries``: float32 only, how many seeds
    (``seed``, ``seed+1`` …) to try for a well-conditioned test point (:func:`_float32_conditioning`).
    ``max_conditioning``: float32 only, the largest torch float32-vs-float64 difference a test point may have
    (default ``tol / 10``; ``inf`` accepts the first seed and only reports it, for checks that bound the
    framework difference relative to it).
    """
    require("torch")
    require("keras")
    prepare_process()
    import keras  # noqa: F401  (after torch: import order)
    import torch

    from impl_keras.backbones import build_model as keras_build

    if dtype not in TOLERANCES:
        raise DrtBenchError(f"--dtype {dtype!r}: expected one of {', '.join(TOLERANCES)}")
    tol = TOLERANCES[dtype] if tol is None else tol
    spec = spec.replace(dropout=0.0)
    size = spec.default_input_size if input_size is None else input_size
    if batch is None:
        batch = default_batch(spec, size)
    if spec.arch == "digits_cnn" and size != 32:
        raise DrtBenchError(f"--input {size}: the digit CNN takes 32×32 inputs only")
    t_start = time.perf_counter()
    tries = max_tries if dtype == "float32" else 1
    rejected: list[dict[str, Any]] = []
    conditioning = None
    for s in range(seed, seed + tries):
        tm, x, cot = _torch_setup(spec, s, batch, size, dtype)
        if dtype == "float64":
            break
        conditioning = _float32_conditioning(spec, tm, s, batch, size, modes)
        if conditioning <= (tol / 10 if max_conditioning is None else max_conditioning):
            break
        rejected.append({"seed": s, "torch_float32_vs_float64": conditioning})
    else:
        raise DrtBenchError(
            f"no well-conditioned float32 test point in seeds {seed}..{seed + tries - 1}: torch float32 "
            f"itself differs from torch float64 by more than {tol / 10:.0e} at each ({rejected})"
        )
    seed = s
    t0 = time.perf_counter()
    km = keras_build(spec, dtype=dtype)
    km.from_neutral({k: v.detach().cpu().numpy() for k, v in tm.state_dict().items()})
    if perturb is not None:
        with torch.no_grad():
            tm.state_dict()[perturb].add_(0.5)
    t_build = time.perf_counter() - t0

    param_names = [n for n, _ in tm.named_parameters()]
    buffer_names = [n for n, _ in tm.named_buffers()]
    stages = stage_names(spec)
    report: dict[str, Any] = {
        "arch": spec.arch,
        "variant": spec.variant,
        "formulation": spec.formulation,
        "route": spec.resolved_route,
        "head": spec.head,
        "dtype": dtype,
        "input": size,
        "batch": batch,
        "tolerance": tol,
        "seed": seed,
        "torch_float32_vs_float64": conditioning,
        "seeds_rejected": rejected,
        "spec": spec.to_dict(),
        "modes": {},
    }
    for mode in modes:
        training = mode == "train"
        t_out, t_grads = _torch_pass(tm, x, cot, training)

        variables = list(km.trainable_variables)
        k_out, k_grads_raw = _keras_pass(km, variables, x.transpose(0, 2, 3, 1), cot, training)
        k_grads = keras_neutral_gradients(km, variables, k_grads_raw)

        fwd: dict[str, float] = {}
        for s in stages:
            a = t_out[s]
            b = np.asarray(k_out[s])
            if b.ndim == 4:
                b = b.transpose(0, 3, 1, 2)
            fwd[s] = rel_diff(a, b)
        res: dict[str, Any] = {
            "forward": fwd,
        }
        res["grad"], res["grad_worst_abs"] = stage_rel_diff(t_grads, k_grads, param_names, spec.arch)
        if training:
            k_state = keras_buffers(km)
            t_state = {n: t.numpy() for n, t in tm.state_dict().items()}
            res["buffers"], _ = stage_rel_diff(t_state, k_state, buffer_names, spec.arch)
        report["modes"][mode] = res

    # verdict
    worst = 0.0
    first: dict[str, Any] | None = None
    for mode, res in report["modes"].items():
        for quantity, order in (("forward", stages), ("buffers", stages), ("grad", list(reversed(stages)))):
            vals = res.get(quantity, {})
            for s in order:
                if s not in vals:
                    continue
                worst = max(worst, vals[s])
                if vals[s] > tol and first is None:
                    first = {"mode": mode, "quantity": quantity, "stage": s, "value": vals[s]}
    report["max"] = worst
    report["ok"] = first is None
    report["first_divergent"] = first
    report["seconds"] = {
        "build_and_port": round(t_build, 3),
        "total": round(time.perf_counter() - t_start, 3),
    }
    return report


def format_report(r: dict[str, Any]) -> str:
    """A plain-text table of one report."""
    lines = [
        f"model equivalence {r['arch']} variant={r['variant']} ({r['formulation']}, "
        f"{r.get('route', 'layer')} routing) head={r['head']} "
        f"dtype={r['dtype']} input={r['batch']}x3x{r['input']}x{r['input']} tol={r['tolerance']:.0e}"
    ]
    for mode, res in r["modes"].items():
        for quantity in ("forward", "grad", "buffers"):
            if quantity in res:
                vals = "  ".join(f"{s}={v:.2e}" for s, v in res[quantity].items())
                lines.append(f"  {mode:5s} {quantity:8s} {vals}")
    fd = r["first_divergent"]
    verdict = "OK"
    if fd is not None:
        where = f"{fd['mode']} {fd['quantity']}, {fd['value']:.2e}"
        verdict = f"MISMATCH: first divergent stage {fd['stage']} ({where})"
    lines.append(f"  max relative difference {r['max']:.3e}: {verdict}  [{r['seconds']['total']:.1f} s]")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m harness.equivalence model``."""
    parser.add_argument("--arch", required=True, choices=ARCHS)
    parser.add_argument(
        "--variant", default="static", help=f"comma-separated list of {', '.join(VARIANTS)} (default static)"
    )
    parser.add_argument("--formulation", default="kernel_merge", choices=FORMULATION_CHOICES)
    parser.add_argument("--placement", default="default", help="DRT placement (see harness.spec.model)")
    parser.add_argument(
        "--route",
        default=None,
        help="routing input of the DRT branches: block, layer or a comma list (default: the arch's)",
    )
    parser.add_argument("--head", default="linear", choices=HEADS)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--input", type=int, default=None, help="input size (default 32 digits, 224 ResNets)")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="batch (default: 16 digits/MCD; ResNets 4 below 128 px, else 2)",
    )
    parser.add_argument("--dtype", default="float64", choices=tuple(TOLERANCES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=None, help="override the tolerance of --dtype")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")


def main(args: argparse.Namespace) -> int:
    """Run the check for every requested variant; exit status 0 when all pass, 1 otherwise."""
    reports = []
    routes: list[str | None] = [None]
    if getattr(args, "route", None):
        routes = [r.strip() for r in str(args.route).split(",") if r.strip()]
    variants = [v.strip() for v in str(args.variant).split(",") if v.strip()]
    for variant, route in [(v, r) for r in routes for v in variants]:
        spec = ModelSpec(
            arch=args.arch,
            variant=variant,
            formulation=args.formulation,
            placement=args.placement,
            head=args.head,
            num_classes=args.num_classes,
            route=route,
        )
        r = run(spec, input_size=args.input, batch=args.batch, dtype=args.dtype, seed=args.seed, tol=args.tol)
        reports.append(r)
        if not args.json:
            print(format_report(r), flush=True)
    if args.json:
        json.dump(reports if len(reports) > 1 else reports[0], sys.stdout, indent=2)
        print()
    return 0 if all(r["ok"] for r in reports) else 1
