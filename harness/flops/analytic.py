r"""Analytic parameter, MAC and FLOP counts for static and DRT layers and whole models (no framework needed).

Convention (see :mod:`harness.flops`): **MACs** count multiply-accumulates of the dense linear algebra;
**FLOPs = 2 × MACs**; elementwise operations are counted separately (one FLOP per elementary op per element)
and are *not* part of MACs/FLOPs unless ``include_elementwise=True``. All counts are **per sample**; multiply
by the batch size (every term, including the per-sample kernel aggregation, is linear in the batch).

One DRT layer
-------------
Notation: input ``C_in × H × W``, output ``C_out × H' × W'`` with ``P = H'·W'`` output positions, kernel
``k × k``, basis size ``b`` (1 or ``k``), ``K`` bases, branch width ``h`` and branch output ``n``
(:attr:`DRTConvSpec.hidden`, :attr:`DRTConvSpec.branch_out`).

* static convolution: :math:`\mathrm{MAC}_{conv} = C_{out} C_{in} k^2 P`.
* coefficient branch (every dynamic variant but ``sr_uniform``), on the routing input
  ``C_r × H_r × W_r`` (the layer input, ``C_r = C_in``; or with block routing the residual block's input,
  ``C_r`` = :attr:`DRTConvSpec.router_in`): GAP = :math:`C_r H_r W_r` elementwise adds, FC1 = :math:`C_r h`
  MACs (``h = max(C_r // reduction, min_hidden)``), ReLU = :math:`h`, FC2 = :math:`h n` MACs, softmax over
  K / sigmoid over ``C_out`` = ``n`` elementwise. E.g. ResNet-101 ``sr``, K = 4, 1×1 bases, reduction 16,
  block routing (the release): branch FCs 2,117,328 MACs + aggregation 9,486,336 MACs = 11.60 M over
  7,801.4 M static (+0.149 %, ``kernel_merge``); with layer routing (``conv2``'s own ``planes`` channels)
  the branch FCs are 150,256 MACs (+0.124 %).
* ``output_mix`` (the authors' release): :math:`y = (1+\Lambda)\odot(W_0*x) + \sum_k \pi_k(\Phi_k*x)`:
  conv + **K extra convolutions** :math:`K C_{out} C_{in} b^2 P` MACs; the mixing
  :math:`\sum_k \pi_k y_k` is a contraction over ``k``: :math:`K C_{out} P` MACs (``mix``; torch's einsum runs
  it as a ``bmm``, so its counter sees it; fvcore-style counters that skip elementwise ops do not);
  attention scaling :math:`C_{out} P` elementwise.
* ``residual_agg``: :math:`\Delta W(x)=\sum_k\pi_k\Phi_k` = **aggregation** :math:`K C_{out} C_{in} b^2`
  MACs per sample, then one **per-sample convolution** with :math:`\Delta W`: :math:`C_{out} C_{in} b^2 P`
  MACs; add :math:`C_{out} P`; attention scaling :math:`C_{out} P`.
* ``kernel_merge``: :math:`W(x) = (1+\Lambda)W_0 + \Delta W(x)`: aggregation :math:`K C_{out} C_{in} b^2`
  MACs, adding :math:`\Delta W` into :math:`W_0` (:math:`C_{out} C_{in} k^2` adds: the centre tap is
  zero-padded to ``k×k`` first, as implemented), attention scaling of the
  kernel :math:`C_{out} C_{in} k^2` muls, then one per-sample conv with the *same* MACs as the static conv.
  Overhead = aggregation + branch only (the paper's "< 0.1 %" claim is about this form).
* ``ca`` has no bases (no aggregation, no extra/per-sample convs); ``sr`` has no attention scaling.
* ``sr_uniform`` (the capacity control, π fixed to ``1/K``): ``sr``'s parameters and ``sr``'s counts for the
  chosen formulation (aggregation with the constant π, extra/per-sample convs, mix, merge) **minus the
  coefficient branch** (no GAP, FCs, ReLU or softmax: the router is not run). A cheaper static conv with the
  merged kernel ``W0 + mean Φ`` would cost only the static conv; it is not what the layer runs.

Parameters: :math:`C_{out} C_{in} k^2` (W0) + :math:`K C_{out} C_{in} b^2` (bases, routing variants) +
:math:`C_{in} h + h n` (branch, no biases). BatchNorm: ``2·C`` trainable (running stats are buffers).
Linear: ``in·out + out``.

Whole models
------------
:func:`model_counts` walks the architecture (digit CNN, ResNet-18/34/50/101) in the order of the forward pass
and returns one :class:`LayerCount` per op. The DRT spec of every convolution comes from the model spec
(:mod:`harness.spec.model`) when it provides a per-conv listing, otherwise from the placement rules of
``algorithms.md`` §2 (DRT on every digit conv; on conv2 of every ResNet block), with the routing of
``ModelSpec.route`` (ResNet default: the block input).

Counter-visible parts: :func:`tf_visible_macs` is the analytic count minus what the TensorFlow profiler cannot
see in the Keras implementation (its ``Einsum`` ops: ``mix``, ``aggregation`` and the 1×1-basis ``ΔW``
matmul), the figure :mod:`harness.drivers.flops.tf_counter` is compared with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.spec.layer import FORMULATIONS, DRTConvSpec
from harness.spec.model import ARCHS as MODEL_ARCHS
from harness.spec.model import RESNET_LAYERS, ModelSpec, conv_specs, digits_dims

#: MAC components (dense linear algebra: counted by torch's FlopCounterMode and TF's Conv2D/MatMul stats).
MAC_KINDS: tuple[str, ...] = (
    "conv",
    "extra_conv",
    "mix",
    "per_sample_conv",
    "aggregation",
    "branch_fc",
    "linear",
)
#: Elementwise components (not in MACs; counted separately).
ELEM_KINDS: tuple[str, ...] = (
    "bn",
    "relu",
    "pool",
    "gap",
    "softmax",
    "sigmoid",
    "scale",
    "merge_add",
    "residual_add",
)

ARCHS: tuple[str, ...] = MODEL_ARCHS


@dataclass(frozen=True)
class LayerCount:
    """Counts for one op of the forward pass, **per sample**.

    ``macs`` and ``elementwise`` map a component (see :data:`MAC_KINDS`, :data:`ELEM_KINDS`) to its count.
    ``in_shape`` / ``out_shape`` exclude the batch: ``(C, H, W)`` or ``(F,)``.
    """

    path: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int = 0
    macs: dict[str, int] = field(default_factory=dict)
    elementwise: dict[str, int] = field(default_factory=dict)
    spec: DRTConvSpec | None = None

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    @property
    def flops(self) -> int:
        """FLOPs = 2 × MACs (elementwise ops excluded)."""
        return 2 * self.total_macs

    @property
    def total_elementwise(self) -> int:
        return sum(self.elementwise.values())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spec"] = self.spec.to_dict() if self.spec is not None else None
        d["total_macs"], d["flops"], d["total_elementwise"] = (
            self.total_macs,
            self.flops,
            self.total_elementwise,
        )
        return d


@dataclass(frozen=True)
class ModelCount:
    """All :class:`LayerCount` of one model plus totals (per sample unless ``batch`` is given to a method)."""

    arch: str
    variant: str
    formulation: str
    input_size: int
    layers: tuple[LayerCount, ...]

    @property
    def params(self) -> int:
        return sum(lc.params for lc in self.layers)

    def macs(self, batch: int = 1) -> int:
        return batch * sum(lc.total_macs for lc in self.layers)

    def flops(self, batch: int = 1, include_elementwise: bool = False) -> int:
        """``2 × MACs`` (+ elementwise ops if asked), for ``batch`` samples."""
        return 2 * self.macs(batch) + (self.elementwise(batch) if include_elementwise else 0)

    def elementwise(self, batch: int = 1) -> int:
        return batch * sum(lc.total_elementwise for lc in self.layers)

    def by_kind(self, batch: int = 1) -> dict[str, int]:
        """MACs per component (:data:`MAC_KINDS`) and elementwise FLOPs per component, summed over layers."""
        out: dict[str, int] = {}
        for lc in self.layers:
            for k, v in list(lc.macs.items()) + list(lc.elementwise.items()):
                out[k] = out.get(k, 0) + batch * v
        return out

    def convs(self) -> list[LayerCount]:
        return [lc for lc in self.layers if lc.spec is not None]

    def to_dict(self, batch: int = 1) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "variant": self.variant,
            "formulation": self.formulation,
            "input_size": self.input_size,
            "batch": batch,
            "params": self.params,
            "macs": self.macs(batch),
            "flops": self.flops(batch),
            "elementwise": self.elementwise(batch),
            "by_kind": self.by_kind(batch),
            "convention": "FLOPs = 2 x MACs; elementwise counted separately",
        }


def overhead_pct(static: int | float, dynamic: int | float) -> float:
    """Relative overhead in percent: ``100 · (dynamic − static) / static``."""
    return 100.0 * (dynamic - static) / static


# ---------------------------------------------------------------------------------------------------------
# one (DRT) convolution
# ---------------------------------------------------------------------------------------------------------
def drt_layer(
    spec: DRTConvSpec,
    height: int,
    width: int | None = None,
    *,
    path: str = "conv",
    formulation: str | None = None,
    route_hw: tuple[int, int] | None = None,
) -> LayerCount:
    """Per-sample counts of one DRT (or static) convolution on a ``C_in × height × width`` input.

    ``formulation`` overrides ``spec.formulation`` (``"auto"`` must be resolved first: its counts are those of
    the formulation it resolves to; an unresolved ``auto`` is counted as ``kernel_merge``). ``route_hw``: the
    spatial size of the routing input of a block-routed layer (its GAP count; default the layer input's).
    """
    width = height if width is None else width
    form = formulation or spec.formulation
    if form == "auto":
        form = "kernel_merge"
    if form not in FORMULATIONS:
        raise ValueError(f"formulation {form!r}: expected one of {FORMULATIONS}")
    ci, co, k, b, K = spec.in_channels, spec.out_channels, spec.kernel_size, spec.basis_size, spec.K
    ho, wo = spec.output_size(height), spec.output_size(width)
    P = ho * wo
    conv = co * ci * k * k * P
    macs: dict[str, int] = {"conv": conv}
    elem: dict[str, int] = {}
    params = co * ci * k * k
    if spec.dynamic:
        h, n, cr = spec.hidden, spec.branch_out, spec.router_in
        rh, rw = (height, width) if route_hw is None or spec.route == "layer" else route_hw
        params += cr * h + h * n
        if not spec.uniform_routing:  # sr_uniform: π = 1/K, the branch is not run (its weights are counted)
            macs["branch_fc"] = cr * h + h * n
            elem["gap"] = cr * rh * rw
            elem["relu"] = h
        if spec.has_routing and not spec.uniform_routing:
            elem["softmax"] = K
        if spec.has_attention:
            elem["sigmoid"] = co
        basis = co * ci * b * b
        if spec.has_routing:
            params += K * basis
            if form == "output_mix":
                macs["extra_conv"] = K * basis * P
                macs["mix"] = K * co * P
            elif form == "residual_agg":
                macs["aggregation"] = K * basis
                macs["per_sample_conv"] = basis * P
                elem["residual_add"] = co * P
            else:  # kernel_merge
                macs["aggregation"] = K * basis
                elem["merge_add"] = co * ci * k * k  # ΔW (centre tap zero-padded to k×k) added to W0
        if spec.has_attention:
            elem["scale"] = co * ci * k * k if (form == "kernel_merge") else co * P
    return LayerCount(
        path,
        "drt" if spec.dynamic else "conv",
        (ci, height, width),
        (co, ho, wo),
        params,
        macs,
        elem,
        spec.replace(formulation=form) if spec.formulation != form else spec,
    )


def static_counterpart(spec: DRTConvSpec) -> DRTConvSpec:
    """The static spec with the same geometry (what the DRT layer is compared with)."""
    return spec.replace(variant="static")


# ---------------------------------------------------------------------------------------------------------
# whole models
# ---------------------------------------------------------------------------------------------------------
class _Walker:
    """Accumulates :class:`LayerCount` rows while following the forward pass (per-sample shapes)."""

    def __init__(self, specs: dict[str, DRTConvSpec], prefix: str = "features.") -> None:
        self.specs = specs
        self.prefix = prefix
        self.layers: list[LayerCount] = []

    def conv(
        self, path: str, shape: tuple[int, ...], route: tuple[int, ...] | None = None
    ) -> tuple[int, ...]:
        """One conv on ``shape``; ``route``: the shape of the block input (the routing input of a
        block-routed conv)."""
        spec = self.specs[path]
        if spec.in_channels != shape[0]:
            raise ValueError(
                f"{path}: the model spec says C_in={spec.in_channels}, the forward pass has {shape}"
            )
        route_hw = None
        if spec.dynamic and spec.route == "block":
            if route is None or route[0] != spec.router_in:
                raise ValueError(f"{path}: block routing on {spec.router_in} channels, block input {route}")
            route_hw = (route[1], route[2])
        lc = drt_layer(spec, shape[1], shape[2], path=self.prefix + path, route_hw=route_hw)
        self.layers.append(lc)
        return lc.out_shape

    def bn(self, path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.layers.append(
            LayerCount(self.prefix + path, "bn", shape, shape, 2 * shape[0], {}, {"bn": 2 * _prod(shape)})
        )
        return shape

    def relu(self, path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.layers.append(
            LayerCount(self.prefix + path, "relu", shape, shape, 0, {}, {"relu": _prod(shape)})
        )
        return shape

    def maxpool(self, path: str, shape: tuple[int, ...], k: int, s: int, p: int) -> tuple[int, ...]:
        out = (shape[0], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        self.layers.append(
            LayerCount(self.prefix + path, "maxpool", shape, out, 0, {}, {"pool": (k * k - 1) * _prod(out)})
        )
        return out

    def gap(self, path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.layers.append(
            LayerCount(self.prefix + path, "avgpool", shape, (shape[0],), 0, {}, {"pool": _prod(shape)})
        )
        return (shape[0],)

    def add(self, path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.layers.append(
            LayerCount(self.prefix + path, "add", shape, shape, 0, {}, {"residual_add": _prod(shape)})
        )
        return shape

    def linear(self, path: str, shape: tuple[int, ...], out: int, bias: bool = True) -> tuple[int, ...]:
        fin = _prod(shape)
        self.layers.append(
            LayerCount(
                self.prefix + path,
                "linear",
                (fin,),
                (out,),
                fin * out + (out if bias else 0),
                {"linear": fin * out},
                {},
            )
        )
        return (out,)


def _prod(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def make_model_spec(arch: str | ModelSpec, **fields: Any) -> ModelSpec:
    """A :class:`ModelSpec` from an arch name and field overrides (``None`` values are ignored)."""
    if isinstance(arch, ModelSpec):
        return arch.replace(**{k: v for k, v in fields.items() if v is not None}) if fields else arch
    return ModelSpec(arch=arch, **{k: v for k, v in fields.items() if v is not None})


def model_counts(spec: ModelSpec | str, *, input_size: int | None = None, **fields: Any) -> ModelCount:
    """Per-sample counts of the whole model of ``spec`` (features + head), op by op in forward order.

    ``spec`` is a :class:`ModelSpec` or an arch name; ``fields`` override ModelSpec fields (``variant``,
    ``formulation``, ``K``, ``basis_kernel``, ``head``, ``num_classes``, ...). The DRT spec of every conv is
    :func:`harness.spec.model.conv_specs` (the listing both frameworks build from); module paths are those of
    the torch model (``features.layer1.0.conv2``, ``head.fc``). ``input_size`` defaults to 32 (digits) or 224.
    """
    ms = make_model_spec(spec, **fields)
    size = input_size or ms.default_input_size
    if ms.arch == "digits_cnn" and size != 32:
        raise ValueError("the digit CNN's flatten layer (128·8·8) needs 32×32 inputs")
    w = _Walker(conv_specs(ms))
    shape: tuple[int, ...] = (3, size, size)
    shape = _digits(w, shape, ms.width) if ms.arch == "digits_cnn" else _resnet(w, ms.arch, shape)
    w.prefix = "head."
    if ms.head == "linear":
        w.linear("fc", shape, ms.num_classes)
    else:
        h = w.bn("bn1", w.linear("fc1", shape, ms.head_hidden))
        h = w.bn("bn2", w.linear("fc2", w.relu("relu1", h), ms.head_hidden))
        w.linear("fc3", w.relu("relu2", h), ms.num_classes)
    return ModelCount(ms.arch, ms.variant, ms.formulation, size, tuple(w.layers))


def _digits(w: _Walker, shape: tuple[int, ...], width: float = 1.0) -> tuple[int, ...]:
    """M3SDA digit CNN (algorithms.md §2): 3× conv5×5-BN-ReLU(-pool), FC 3072, FC 2048 (BN-ReLU)."""
    for i in (1, 2, 3):
        shape = w.relu(f"relu{i}", w.bn(f"bn{i}", w.conv(f"conv{i}", shape)))
        if i < 3:
            shape = w.maxpool(f"pool{i}", shape, 3, 2, 1)
    _, (f1, f2) = digits_dims(width)
    shape = w.relu("relu_fc1", w.bn("bn1_fc", w.linear("fc1", shape, f1)))
    return w.relu("relu_fc2", w.bn("bn2_fc", w.linear("fc2", shape, f2)))


def _resnet(w: _Walker, arch: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """torchvision ResNet v1.5 (stride on the 3×3), up to the global-average-pooled feature."""
    kind, depths = RESNET_LAYERS[arch]
    s = w.maxpool("maxpool", w.relu("relu", w.bn("bn1", w.conv("conv1", shape))), 3, 2, 1)
    for li, depth in enumerate(depths, start=1):
        for bi in range(depth):
            p = f"layer{li}.{bi}"
            x = s
            n_convs = 3 if kind == "bottleneck" else 2
            for ci in range(1, n_convs + 1):
                s = w.bn(f"{p}.bn{ci}", w.conv(f"{p}.conv{ci}", s, route=x))
                if ci < n_convs:
                    s = w.relu(f"{p}.relu{ci}", s)
            if f"{p}.downsample.0" in w.specs:
                w.bn(f"{p}.downsample.1", w.conv(f"{p}.downsample.0", x, route=x))
            s = w.relu(f"{p}.relu", w.add(f"{p}.add", s))
    return w.gap("avgpool", s)


def compare(
    spec: ModelSpec | str,
    *,
    formulations: Iterable[str] = FORMULATIONS,
    input_size: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Static vs DRT (per formulation) MACs and overhead % (``variant`` defaults to the spec's, ``sr``)."""
    ms = make_model_spec(spec, **fields)
    st = model_counts(ms.replace(variant="static"), input_size=input_size)
    out: dict[str, Any] = {
        "arch": ms.arch,
        "variant": ms.variant,
        "static_macs": st.macs(),
        "static_params": st.params,
        "convention": "MACs; FLOPs = 2 x MACs",
    }
    for f in formulations:
        dyn = model_counts(ms.replace(formulation=f), input_size=input_size)
        out[f] = {
            "macs": dyn.macs(),
            "params": dyn.params,
            "overhead_macs": dyn.macs() - st.macs(),
            "overhead_pct": overhead_pct(st.macs(), dyn.macs()),
        }
    return out


# ---- what the TensorFlow profiler can see ----------------------------------------------------------------
#: MAC components the Keras implementation computes with ``einsum`` (TensorFlow's profiler counts them 0).
TF_EINSUM_KINDS: tuple[str, ...] = ("mix", "aggregation")


def tf_visible_macs(mc: ModelCount, batch: int = 1) -> int:
    """Analytic MACs of the ops TensorFlow's profiler counts for the Keras model (everything but einsums).

    The Keras DRT layer runs the ``output_mix`` weighted sum, the kernel aggregation ``Σ π_k Φ_k`` and (1×1
    bases) the per-sample ``ΔW`` matmul of ``residual_agg`` as ``Einsum`` ops, which have no registered FLOP
    statistics.
    """
    total = 0
    for lc in mc.layers:
        for kind, v in lc.macs.items():
            if kind in TF_EINSUM_KINDS:
                continue
            if kind == "per_sample_conv" and lc.spec is not None and lc.spec.basis_kernel != "full":
                continue
            total += v
    return batch * total
