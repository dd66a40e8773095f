r"""``layer``: one DRT conv layer, PyTorch vs Keras, weights ported both ways through the neutral format.

For every configuration (variant × formulation × basis kernel) and trial, a random spec shape (batch 1–5,
channels 1–16, H and W 1–12, kernel 1/3/5, stride 1/2, K 1–8) is drawn; then, in both directions,

* ``torch→keras``: a torch layer initialised by torch, its router weights re-drawn ``N(0, 1)`` so that π and Λ
  are far from uniform, exported with ``impl_torch.weights.to_neutral`` and loaded into the Keras layer;
* ``keras→torch``: the same with a Keras-initialised layer (``DRTConv2D.reset_parameters``) exported with
  ``impl_keras.weights.to_neutral`` and loaded into the torch layer.

Both layers get the same input ``x`` (NCHW / NHWC) and the loss ``L = Σ y ⊙ g`` for a fixed random ``g``;
compared are ``y``, the coefficients π/Λ, ``∂L/∂x`` and ``∂L/∂θ`` for every parameter θ (Keras gradients
converted to the neutral layouts; a gradient that does not exist, e.g. the router's in ``sr_uniform`` whose
π is the constant 1/K and which reports no coefficients, is compared as zeros). ``--route block`` (or
``both``) also checks block routing: the branch reads a separate routing input ``r`` (random channels 1–16,
spatial size the input's or twice it, as the block input of a strided BasicBlock conv2), passed as
``layer(x, route_input=r)``; then ``∂L/∂r`` is compared too (``grad route_input``). The relative difference
is ``max|a−b| / max(max|a|, max|b|, tiny)``; the command exits 1 if any exceeds the bound (float64
``1e-10``, float32 ``1e-4``; ``--bound`` overrides).
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.drivers.equivalence.compare import (
    BOUNDS,
    RELATIVE_DEFINITION,
    Diff,
    compare_dicts,
    markdown_table,
    summarise,
    to_json,
)
from harness.frameworks import prepare_process, require
from harness.spec.layer import FORMULATIONS, ROUTES, VARIANTS, DRTConvSpec

DIRECTIONS = ("torch->keras", "keras->torch")


@dataclass(frozen=True)
class Config:
    variant: str
    formulation: str
    basis_kernel: int | str
    route: str = "layer"

    @property
    def label(self) -> str:
        if self.variant == "static":
            return "static"
        suffix = "/block" if self.route == "block" else ""
        if self.variant == "ca":
            return f"ca/{self.formulation}{suffix}"
        return f"{self.variant}/{self.formulation}/b={self.basis_kernel}{suffix}"


def configs(
    variants: list[str], formulations: list[str], basis_kernels: list[Any], routes: list[str] | None = None
) -> list[Config]:
    """Distinct configurations (``static`` has no formulation, routing or bases, ``ca`` no bases)."""
    out: list[Config] = []
    for r, v, f, b in itertools.product(routes or ["layer"], variants, formulations, basis_kernels):
        static = v == "static"
        c = Config(
            v, "output_mix" if static else f, 1 if v in ("static", "ca") else b, "layer" if static else r
        )
        if c not in out:
            out.append(c)
    return out


def random_spec(cfg: Config, rng: np.random.Generator, max_channels: int = 16) -> DRTConvSpec:
    k = int(rng.choice([1, 3, 5]))
    route: dict[str, Any] = {}
    if cfg.route == "block":
        route = {"route": "block", "route_channels": int(rng.integers(1, max_channels + 1))}
    return DRTConvSpec(
        in_channels=int(rng.integers(1, max_channels + 1)),
        out_channels=int(rng.integers(1, max_channels + 1)),
        kernel_size=k,
        stride=int(rng.choice([1, 2])),
        variant=cfg.variant,
        K=int(rng.integers(1, 9)),
        basis_kernel=cfg.basis_kernel,
        formulation=cfg.formulation,
        min_hidden=int(rng.integers(1, 9)),
        **route,
    )


def route_shape(
    spec: DRTConvSpec, batch: int, height: int, width: int, scale: int = 1
) -> tuple[int, ...] | None:
    """NCHW shape of the routing input of a block-routed ``spec`` (None for layer routing): the input's
    spatial size times ``scale`` (2: the block input of a strided BasicBlock's conv2)."""
    if spec.route != "block":
        return None
    return (batch, int(spec.route_channels), height * scale, width * scale)  # type: ignore[arg-type]


# ---- the two frameworks ------------------------------------------------------------------------------------
def torch_layer(spec: DRTConvSpec, dtype: str) -> Any:
    import torch

    from impl_torch.layers import DRTConv2d

    return DRTConv2d(spec).to(getattr(torch, dtype))


def keras_layer(spec: DRTConvSpec, dtype: str) -> Any:
    from impl_keras.layers import DRTConv2D

    layer = DRTConv2D(spec, dtype=dtype)
    layer.build((None, None, None, spec.in_channels))
    return layer


def spread_torch_router(layer: Any, seed: int) -> None:
    """Re-draw the router weights ``N(0, 1)`` (torch RNG) so that the coefficients are far from uniform."""
    import torch

    if layer.router is None:
        return
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (layer.router.fc1.weight, layer.router.fc2.weight):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))


def spread_keras_router(layer: Any, seed: int) -> None:
    """Re-draw the router kernels ``N(0, 1)`` (Keras RNG)."""
    import keras

    gen = keras.random.SeedGenerator(seed)
    for var in (layer.router_fc1, layer.router_fc2):
        if var is not None:
            var.assign(keras.random.normal(var.shape, dtype=var.dtype, seed=gen))


def run_torch(layer: Any, x: np.ndarray, g: np.ndarray, r: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``y``, coefficients and the gradients of ``Σ y⊙g`` (NCHW; parameter names as the state_dict);
    ``r``: the routing input of a block-routed layer (its gradient is ``grad route_input``)."""
    import torch

    dtype = layer.weight.dtype
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    rt = None if r is None else torch.tensor(r, dtype=dtype, requires_grad=True)
    layer.zero_grad(set_to_none=True)
    y = layer(xt, route_input=rt)
    (y * torch.tensor(g, dtype=dtype)).sum().backward()
    out = {"output": y.detach().numpy()}
    out.update({k: v.numpy() for k, v in layer.last_coefficients.items()})
    out["grad input"] = xt.grad.numpy()
    if rt is not None:
        out["grad route_input"] = rt.grad.numpy() if rt.grad is not None else np.zeros(r.shape)
    for name, p in layer.named_parameters():
        out[f"grad {name}"] = p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))
    return out


def run_keras(layer: Any, x: np.ndarray, g: np.ndarray, r: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """As :func:`run_torch` for the Keras layer; everything converted to NCHW / neutral layouts."""
    import keras

    dtype = layer.variable_dtype

    def nhwc(a: np.ndarray) -> Any:
        return keras.ops.convert_to_tensor(np.ascontiguousarray(a.transpose(0, 2, 3, 1)), dtype=dtype)

    xk, gk = nhwc(x), nhwc(g)
    rk = None if r is None else nhwc(r)
    named = layer.neutral_variables()
    y, gx, gr, gvars = _keras_grads(layer, xk, gk, [v for v, _, _ in named.values()], rk)
    out = {"output": keras.ops.convert_to_numpy(y).transpose(0, 3, 1, 2)}
    out.update({k: keras.ops.convert_to_numpy(v) for k, v in layer.last_coefficients.items()})
    out["grad input"] = keras.ops.convert_to_numpy(gx).transpose(0, 3, 1, 2)
    if r is not None:
        out["grad route_input"] = (
            np.zeros(r.shape) if gr is None else keras.ops.convert_to_numpy(gr).transpose(0, 3, 1, 2)
        )
    for (name, (var, to_neutral, _)), gv in zip(named.items(), gvars):
        out[f"grad {name}"] = to_neutral(gv) if gv is not None else np.zeros(to_neutral(var).shape)
    return out


def _keras_grads(
    layer: Any, x: Any, g: Any, variables: list[Any], r: Any = None
) -> tuple[Any, Any, Any, list[Any]]:
    """``(y, ∂L/∂x, ∂L/∂r or None, [∂L/∂v for v in variables])`` on the active Keras backend."""
    import keras

    backend = keras.backend.backend()
    inputs = [x] if r is None else [x, r]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            for t in inputs:
                tape.watch(t)
            y = layer(x, route_input=r)
            loss = tf.reduce_sum(y * g)
        grads = tape.gradient(loss, [*inputs, *variables])
    elif backend == "torch":
        import torch

        inputs = [t.detach().requires_grad_(True) for t in inputs]
        y = layer(inputs[0], route_input=inputs[1] if r is not None else None)
        values = [v.value for v in variables]
        grads = list(torch.autograd.grad((y * g).sum(), [*inputs, *values], allow_unused=True))
        y = y.detach()
    elif backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss_fn(tv: list[Any], xs: list[Any]) -> tuple[Any, Any]:
            y, _ = layer.stateless_call(tv, non_trainable, xs[0], route_input=xs[1] if len(xs) > 1 else None)
            return keras.ops.sum(y * g), y

        (_, y), (gtv, gin) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(trainable, inputs)
        layer(x, route_input=r)  # eager call to fill last_coefficients
        by_id = {id(v): gv for v, gv in zip(layer.trainable_variables, gtv)}
        grads = [*gin, *[by_id.get(id(v)) for v in variables]]
    else:
        raise RuntimeError(f"unsupported Keras backend {backend!r}")
    n = len(inputs)
    return y, grads[0], grads[1] if r is not None else None, list(grads[n:])


# ---- one comparison ----------------------------------------------------------------------------------------
def compare_layers(
    spec: DRTConvSpec,
    dtype: str,
    direction: str,
    seed: int,
    *,
    batch: int,
    height: int,
    width: int,
    t_layer: Any | None = None,
    k_layer: Any | None = None,
    bound: float | None = None,
    label: str | None = None,
    route_scale: int = 1,
) -> list[Diff]:
    """Port weights in ``direction``, run both layers on the same random input, return every Diff.

    ``t_layer``/``k_layer`` may be passed in (cached layers for ``spec``/``dtype``): their weights are
    re-initialised here. A block-routed spec also gets a random routing input (:func:`route_shape`, spatial
    size ``route_scale`` times the input's).
    """
    from impl_keras.weights import from_neutral as keras_from
    from impl_keras.weights import to_neutral as keras_to
    from impl_torch.weights import from_neutral as torch_from
    from impl_torch.weights import to_neutral as torch_to

    t_layer = t_layer if t_layer is not None else torch_layer(spec, dtype)
    k_layer = k_layer if k_layer is not None else keras_layer(spec, dtype)
    if direction == "torch->keras":
        import torch

        torch.manual_seed(seed)
        t_layer.reset_parameters()
        spread_torch_router(t_layer, seed + 1)
        keras_from(k_layer, torch_to(t_layer))
    elif direction == "keras->torch":
        k_layer.reset_parameters(seed)
        spread_keras_router(k_layer, seed + 1)
        torch_from(t_layer, keras_to(k_layer))
    else:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, spec.in_channels, height, width))
    ho, wo = spec.output_size(height), spec.output_size(width)
    g = rng.standard_normal((batch, spec.out_channels, ho, wo))
    rs = route_shape(spec, batch, height, width, route_scale)
    r = None if rs is None else rng.standard_normal(rs)
    a = run_torch(t_layer, x, g, r)
    b = run_keras(k_layer, x, g, r)
    return compare_dicts(label or direction, a, b, BOUNDS[dtype] if bound is None else bound)


# ---- CLI ---------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--formulation", nargs="+", choices=FORMULATIONS, default=list(FORMULATIONS))
    parser.add_argument("--basis-kernel", nargs="+", choices=["1", "full"], default=["1", "full"])
    parser.add_argument(
        "--route",
        choices=[*ROUTES, "both"],
        default="both",
        help="routing input of the branch: the layer input, a separate block input, or both (default)",
    )
    parser.add_argument("--dtype", choices=sorted(BOUNDS), default="float64")
    parser.add_argument("--trials", type=int, default=3, help="random shapes per configuration (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bound", type=float, default=None, help="override the max relative difference bound"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")


def main(args: argparse.Namespace) -> int:
    require("torch")
    require("keras")
    prepare_process()
    import keras
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    t0 = time.time()
    bks = [1 if b == "1" else b for b in args.basis_kernel]
    routes = list(ROUTES) if getattr(args, "route", "layer") == "both" else [args.route]
    cfgs = configs(args.variant, args.formulation, bks, routes)
    rng = np.random.default_rng(args.seed)
    bound = BOUNDS[args.dtype] if args.bound is None else args.bound
    diffs: list[Diff] = []
    for cfg in cfgs:
        for _ in range(args.trials):
            spec = random_spec(cfg, rng)
            batch, h, w = (int(v) for v in rng.integers(1, [6, 13, 13]))
            scale = int(rng.integers(1, 3)) if cfg.route == "block" else 1
            for direction in DIRECTIONS:
                seed = int(rng.integers(0, 2**31 - 1))
                diffs += compare_layers(
                    spec,
                    args.dtype,
                    direction,
                    seed,
                    batch=batch,
                    height=h,
                    width=w,
                    bound=bound,
                    label=cfg.label,
                    route_scale=scale,
                )
    rows = summarise(diffs)
    meta = {
        "command": "layer",
        "dtype": args.dtype,
        "trials": args.trials,
        "routes": routes,
        "seed": args.seed,
        "bound": bound,
        "directions": list(DIRECTIONS),
        "keras_backend": keras.backend.backend(),
        "torch": torch.__version__,
        "keras": keras.__version__,
        "seconds": round(time.time() - t0, 1),
    }
    ok = all(d.ok for d in rows)
    if args.json:
        print(to_json(rows, **meta))
    else:
        worst = max(rows, key=lambda d: d.max_rel)
        print(
            f"# DRT layer: PyTorch vs Keras ({keras.backend.backend()}), {args.dtype}, "
            f"{args.trials} trial(s) "
            f"per configuration, weights ported in both directions\n"
        )
        print(
            f"{RELATIVE_DEFINITION}; bound {bound:.0e}; each row is the worst over trials and directions.\n"
        )
        print(markdown_table(rows))
        print(
            f"\nmax abs {max(d.max_abs for d in rows):.3e}, max rel {worst.max_rel:.3e} "
            f"({worst.config}, {worst.what}); {'all within bound' if ok else 'FAILED'} "
            f"[{meta['seconds']} s]"
        )
    return 0 if ok else 1
