"""Spec of a whole model: backbone architecture, where the DRT layers go, and the classifier head.

One :class:`ModelSpec` is the single source from which both frameworks build the same network
(``impl_torch.backbones.build_model`` / ``impl_keras.backbones.build_model``). Without any framework, the
spec also gives every convolution's :class:`~harness.spec.layer.DRTConvSpec` keyed by its module path
(:func:`conv_specs`) and analytic parameter counts (:func:`count_parameters`).

Architectures (``docs/method-facts.md`` §2):

* ``digits_cnn`` — the M3SDA digit CNN, input 3×32×32: three conv5×5-BN-ReLU blocks (max-pool 3/2/1 after
  the first two), flatten 8192, FC 3072-BN-ReLU-Dropout, FC 2048-BN-ReLU. Feature dimension 2048.
* ``resnet18`` / ``resnet50`` / ``resnet101`` — torchvision v1.5 layout (stride on the 3×3 conv), parameter
  names identical to torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` …)
  without ``fc``; the feature is the global-average-pooled last stage (512 or 2048).

Module paths: a model has two children, ``features`` and ``head``; the neutral weight names of a full model
are ``features.<torchvision name>`` and ``head.<name>``. :func:`conv_specs` returns paths relative to
``features`` (so they equal torchvision names for ResNets).

DRT placement (``placement``), resolved by :func:`drt_conv_paths`:

* ``"default"`` — the paper's choice per architecture: ``"all"`` for ``digits_cnn`` ("a dynamic residual is
  added on each convolutional layer"), ``"blocks_3x3"`` for the ResNets.
* ``"all"`` — every convolution (stem and downsample 1×1 included).
* ``"blocks_3x3"`` — every 3×3 conv inside a residual block. For bottleneck ResNets (50/101) this is
  ``conv2`` of every bottleneck, exactly the paper's placement (3+4+23+3 = 33 layers in ResNet-101). For
  ResNet-18 (our choice; the paper has no ResNet-18) both 3×3 convs of every BasicBlock (16 layers).
* ``"block_conv2"`` — ``conv2`` of every residual block (bottleneck: the 3×3; BasicBlock: its second 3×3).
* ``"none"`` — no DRT layer (same as ``variant="static"``).
* an explicit list of conv paths (e.g. ``["layer4.0.conv2", "layer4.1.conv2"]``).

Convs not selected, and every conv when ``variant == "static"``, are static DRT layers (a plain conv).

Routing input of the coefficient branches (``route``, ``None`` = the architecture default,
:attr:`ModelSpec.resolved_route`):

* ``"block"`` (ResNet default, as released: ``BottleneckKDRA`` pools the *block input* ``x``, ``inplanes``
  channels, before conv1; ``docs/method-facts.md`` §routing) — every DRT conv inside a residual block
  (conv1/conv2/conv3, and the downsample conv with ``placement="all"``) routes on the block input: its
  :class:`DRTConvSpec` has ``route="block"``, ``route_channels = inplanes`` and the block calls it as
  ``conv(out, route_input=x)``. The stem conv (not in a block) routes on its own input. The release has no
  BasicBlock DRT variant; our ResNet-18 BasicBlocks use their block input the same way (our choice).
* ``"layer"`` — every DRT conv routes on its own input (the digit CNN's only choice: each conv is its own
  block, and its default; ``"block"`` is rejected there).

``route`` appears in :meth:`ModelSpec.to_dict` only when set (not ``None``), so the dicts (and anything
hashed from them) of specs that do not set it are those written before the field existed.

Heads (``head``):

* ``"linear"`` — ``Linear(feature_dim → num_classes)``, module ``head.fc``.
* ``"mcd"`` — the MCD head as released: Dropout(p)-Linear(feature_dim, h)-BN-ReLU-Dropout(p)-Linear(h, h)-
  BN-ReLU-Linear(h, num_classes) with ``h = head_hidden`` (1000). Modules ``head.fc1``, ``head.bn1``,
  ``head.fc2``, ``head.bn2``, ``head.fc3``.

Initialisation (both frameworks): convs (incl. DRT bases) kaiming-normal fan_out/relu; BatchNorm weight 1,
bias 0, except in the MCD head (weight N(1, 0.01²), bias 0); every Linear N(0, 0.01²) with bias 0, except in
the MCD head (weight and bias N(0, 0.01²)). (The Linear init outside the MCD head is our choice, after the
release's "Linear N(0, 0.01), bias 0".)

``dropout`` is the probability of every Dropout in the model (the digit CNN's FC block and the MCD head).

``width`` (``digits_cnn`` only) multiplies every channel count and FC width of the digit CNN (rounded, at
least 1): ``1.0`` is the paper's network (64/64/128 channels, FC 3072/2048, 31.8 M parameters); the quick
CPU profiles use narrower copies (:func:`digits_dims`). ResNets accept only ``1.0``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.errors import SpecError
from harness.spec.layer import BASIS_KERNELS, FORMULATION_CHOICES, ROUTES, VARIANTS, DRTConvSpec

ARCHS: tuple[str, ...] = ("digits_cnn", "resnet18", "resnet50", "resnet101")
HEADS: tuple[str, ...] = ("linear", "mcd")
PLACEMENTS: tuple[str, ...] = ("default", "all", "blocks_3x3", "block_conv2", "none")

#: ResNet stage depths and block type.
RESNET_LAYERS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
RESNET_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)

DIGITS_INPUT_SIZE = 32
DIGITS_CHANNELS: tuple[int, int, int] = (64, 64, 128)
DIGITS_FC_DIMS: tuple[int, int] = (3072, 2048)


def digits_dims(width: float = 1.0) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """``((c1, c2, c3), (f1, f2))`` of the digit CNN at ``width`` (each ``max(1, round(width * n))``)."""

    def w(n: int) -> int:
        return max(1, int(round(width * n)))

    c1, c2, c3 = DIGITS_CHANNELS
    f1, f2 = DIGITS_FC_DIMS
    return (w(c1), w(c2), w(c3)), (w(f1), w(f2))


_NAME = "ModelSpec"


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    allowed = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise SpecError(_NAME, name, value, allowed)


@dataclass(frozen=True)
class ModelSpec:
    """Immutable description of a model (backbone + DRT placement + head). See the module docstring.

    ``basis_kernel=None`` resolves to the architecture default: ``"full"`` for ``digits_cnn`` (cheap for small
    convs), ``1`` for ResNets (the authors' release: centre-tap bases).
    """

    arch: str = "resnet50"
    num_classes: int = 345
    variant: str = "sr"
    placement: str | tuple[str, ...] = "default"
    K: int = 4
    basis_kernel: int | str | None = None
    formulation: str = "kernel_merge"
    reduction: int = 16
    min_hidden: int = 4
    head: str = "linear"
    head_hidden: int = 1000
    dropout: float = 0.5
    width: float = 1.0
    route: str | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SpecError(_NAME, "arch", self.arch, f"one of {', '.join(ARCHS)}")
        _check_int("num_classes", self.num_classes, 1)
        if self.variant not in VARIANTS:
            raise SpecError(_NAME, "variant", self.variant, f"one of {', '.join(VARIANTS)}")
        if isinstance(self.placement, list):
            object.__setattr__(self, "placement", tuple(self.placement))
        if isinstance(self.placement, tuple):
            allowed_paths = [p for p, _ in _conv_layout(self.arch, self.width)]
            if not self.placement:
                raise SpecError(_NAME, "placement", self.placement, "a non-empty list of conv paths")
            for p in self.placement:
                if p not in allowed_paths:
                    raise SpecError(
                        _NAME,
                        "placement",
                        p,
                        f"a conv path of {self.arch} (e.g. {', '.join(allowed_paths[:3])})",
                    )
        elif self.placement not in PLACEMENTS:
            raise SpecError(
                _NAME, "placement", self.placement, f"one of {', '.join(PLACEMENTS)} or a list of conv paths"
            )
        _check_int("K", self.K, 1, 64)
        if self.basis_kernel is None:
            object.__setattr__(self, "basis_kernel", "full" if self.arch == "digits_cnn" else 1)
        if isinstance(self.basis_kernel, bool) or self.basis_kernel not in BASIS_KERNELS:
            raise SpecError(
                _NAME, "basis_kernel", self.basis_kernel, '1, "full" or null (architecture default)'
            )
        if self.formulation not in FORMULATION_CHOICES:
            raise SpecError(
                _NAME, "formulation", self.formulation, f"one of {', '.join(FORMULATION_CHOICES)}"
            )
        _check_int("reduction", self.reduction, 1)
        _check_int("min_hidden", self.min_hidden, 1)
        if self.head not in HEADS:
            raise SpecError(_NAME, "head", self.head, f"one of {', '.join(HEADS)}")
        _check_int("head_hidden", self.head_hidden, 1)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise SpecError(_NAME, "dropout", self.dropout, "a number in [0, 1)")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise SpecError(_NAME, "dropout", self.dropout, "a number in [0, 1)")
        object.__setattr__(self, "dropout", float(self.dropout))
        if isinstance(self.width, bool) or not isinstance(self.width, int | float) or not self.width > 0:
            raise SpecError(_NAME, "width", self.width, "a number > 0 (digits_cnn) or 1.0 (ResNets)")
        object.__setattr__(self, "width", float(self.width))
        if self.arch != "digits_cnn" and self.width != 1.0:
            raise SpecError(_NAME, "width", self.width, "1.0 for ResNets (only digits_cnn has a width knob)")
        if self.route is not None and self.route not in ROUTES:
            raise SpecError(_NAME, "route", self.route, f"one of {', '.join(ROUTES)} or null (arch default)")
        if self.arch == "digits_cnn" and self.route == "block":
            raise SpecError(
                _NAME, "route", self.route, '"layer" or null for digits_cnn (each conv is its own block)'
            )

    # ---- derived -----------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """Width of the feature vector the backbone returns (the head's input)."""
        if self.arch == "digits_cnn":
            return digits_dims(self.width)[1][1]
        block, _ = RESNET_LAYERS[self.arch]
        return RESNET_WIDTHS[-1] * (4 if block == "bottleneck" else 1)

    @property
    def default_input_size(self) -> int:
        """Native input resolution (32 for digits, 224 for ResNets)."""
        return DIGITS_INPUT_SIZE if self.arch == "digits_cnn" else 224

    @property
    def resolved_placement(self) -> str | tuple[str, ...]:
        """``placement`` with ``"default"`` replaced by the architecture's default."""
        if self.placement == "default":
            return "all" if self.arch == "digits_cnn" else "blocks_3x3"
        return self.placement

    @property
    def resolved_route(self) -> str:
        """``route`` with ``None`` replaced by the architecture default: ``"block"`` for ResNets (as
        released), ``"layer"`` for the digit CNN."""
        if self.route is not None:
            return self.route
        return "layer" if self.arch == "digits_cnn" else "block"

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (validated)."""
        d = self.to_dict()
        d.update(changes)
        return ModelSpec.from_dict(d)

    # ---- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(d["placement"], tuple):
            d["placement"] = list(d["placement"])
        if self.route is None:  # the architecture default: not written (dicts as before the field existed)
            del d["route"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        if not isinstance(d, dict):
            raise SpecError(_NAME, "<root>", d, "a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(_NAME, unknown[0], d[unknown[0]], f"a known field ({', '.join(sorted(known))})")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls.from_dict(json.loads(text))


# ---- conv layout -------------------------------------------------------------------------------------------
def _conv_layout(arch: str, width: float = 1.0) -> list[tuple[str, dict[str, Any]]]:
    """Every conv of ``features`` in forward order: (path, dict(in, out, k, stride, padding, role))."""
    if arch == "digits_cnn":
        (c1, c2, c3), _ = digits_dims(width)
        return [
            ("conv1", dict(cin=3, cout=c1, k=5, stride=1, pad=2, role="stem")),
            ("conv2", dict(cin=c1, cout=c2, k=5, stride=1, pad=2, role="stem")),
            ("conv3", dict(cin=c2, cout=c3, k=5, stride=1, pad=2, role="stem")),
        ]
    block, depths = RESNET_LAYERS[arch]
    expansion = 4 if block == "bottleneck" else 1
    out: list[tuple[str, dict[str, Any]]] = [
        ("conv1", dict(cin=3, cout=64, k=7, stride=2, pad=3, role="stem"))
    ]
    inplanes = 64
    for li, (planes, depth) in enumerate(zip(RESNET_WIDTHS, depths), start=1):
        for bi in range(depth):
            stride = 2 if (bi == 0 and li > 1) else 1
            p = f"layer{li}.{bi}"
            start = len(out)
            if block == "bottleneck":
                out.append(
                    (f"{p}.conv1", dict(cin=inplanes, cout=planes, k=1, stride=1, pad=0, role="conv1"))
                )
                out.append(
                    (f"{p}.conv2", dict(cin=planes, cout=planes, k=3, stride=stride, pad=1, role="conv2"))
                )
                out.append(
                    (f"{p}.conv3", dict(cin=planes, cout=planes * 4, k=1, stride=1, pad=0, role="conv3"))
                )
            else:
                out.append(
                    (f"{p}.conv1", dict(cin=inplanes, cout=planes, k=3, stride=stride, pad=1, role="conv1"))
                )
                out.append((f"{p}.conv2", dict(cin=planes, cout=planes, k=3, stride=1, pad=1, role="conv2")))
            if bi == 0 and (stride != 1 or inplanes != planes * expansion):
                out.append(
                    (
                        f"{p}.downsample.0",
                        dict(
                            cin=inplanes,
                            cout=planes * expansion,
                            k=1,
                            stride=stride,
                            pad=0,
                            role="downsample",
                        ),
                    )
                )
            for _, c in out[start:]:
                c["block_in"] = inplanes  # channels of the block input (the "block" routing input)
            inplanes = planes * expansion
    return out


def drt_conv_paths(spec: ModelSpec) -> list[str]:
    """Paths (relative to ``features``) of the convs that get a dynamic (non-static) DRT layer."""
    if spec.variant == "static":
        return []
    placement = spec.resolved_placement
    layout = _conv_layout(spec.arch, spec.width)
    if isinstance(placement, tuple):
        return [p for p, _ in layout if p in placement]
    if placement == "none":
        return []
    if placement == "all":
        return [p for p, _ in layout]
    if placement == "blocks_3x3":
        return [p for p, c in layout if c["role"] in ("conv1", "conv2", "conv3") and c["k"] == 3]
    if placement == "block_conv2":
        return [p for p, c in layout if c["role"] == "conv2"]
    raise AssertionError(placement)  # pragma: no cover (validated in __post_init__)


def conv_specs(spec: ModelSpec) -> dict[str, DRTConvSpec]:
    """Every conv of ``features`` in forward order, keyed by module path (torchvision names for ResNets).

    Static convs get ``variant="static"``; the DRT ones the spec's variant, K, basis kernel, reduction,
    min_hidden and formulation; with block routing (:attr:`ModelSpec.resolved_route`) the DRT convs inside a
    residual block also get ``route="block"`` and ``route_channels`` = the block's input channels.
    """
    dyn = set(drt_conv_paths(spec))
    block_route = spec.resolved_route == "block"
    out: dict[str, DRTConvSpec] = {}
    for path, c in _conv_layout(spec.arch, spec.width):
        routed = block_route and path in dyn and "block_in" in c
        out[path] = DRTConvSpec(
            in_channels=c["cin"],
            out_channels=c["cout"],
            kernel_size=c["k"],
            stride=c["stride"],
            padding=c["pad"],
            variant=spec.variant if path in dyn else "static",  # type: ignore[arg-type]
            K=spec.K,
            reduction=spec.reduction,
            min_hidden=spec.min_hidden,
            basis_kernel=spec.basis_kernel,  # type: ignore[arg-type]
            formulation=spec.formulation,  # type: ignore[arg-type]
            route="block" if routed else "layer",
            route_channels=c["block_in"] if routed else None,
        )
    return out


def stage_of(path: str, arch: str) -> str:
    """Stage name of a parameter/buffer path of a full model (``features.*`` / ``head.*``) of ``arch``.

    ResNets: ``stem`` (conv1, bn1), ``layer1`` … ``layer4``, ``head``. Digits: ``block1`` … ``block3``
    (conv+bn), ``fc1`` (fc1, bn1_fc), ``fc2`` (fc2, bn2_fc), ``head``. (``pool`` holds no parameters.)
    """
    parts = path.split(".")
    if parts[0] == "head":
        return "head"
    first = (parts[1:] if parts[0] == "features" else parts)[0]
    if arch == "digits_cnn":
        digits = {
            "conv1": "block1",
            "bn1": "block1",
            "conv2": "block2",
            "bn2": "block2",
            "conv3": "block3",
            "bn3": "block3",
            "fc1": "fc1",
            "bn1_fc": "fc1",
            "fc2": "fc2",
            "bn2_fc": "fc2",
        }
        return digits.get(first, first)
    if first.startswith("layer"):
        return first
    return "stem" if first in ("conv1", "bn1") else first


def stage_names(spec: ModelSpec) -> list[str]:
    """The stages compared by the model equivalence check, in forward order."""
    if spec.arch == "digits_cnn":
        return ["block1", "block2", "block3", "fc1", "fc2", "head"]
    return ["stem", "layer1", "layer2", "layer3", "layer4", "pool", "head"]


# ---- parameter counting ------------------------------------------------------------------------------------
def _conv_params(c: DRTConvSpec) -> tuple[int, int]:
    """(static, extra DRT) trainable parameters of one conv layer."""
    static = c.out_channels * c.in_channels * c.kernel_size * c.kernel_size
    if not c.dynamic:
        return static, 0
    extra = c.hidden * c.router_in + c.branch_out * c.hidden
    if c.has_routing:
        extra += c.K * c.out_channels * c.in_channels * c.basis_size**2
    return static, extra


def _linear(i: int, o: int) -> int:
    return i * o + o


def count_parameters(spec: ModelSpec) -> dict[str, int]:
    """Analytic trainable-parameter counts (BatchNorm running statistics and counters are *not* counted).

    Returns ``features_static`` (convs' W0 + BN affine + Linear layers of the feature extractor, i.e. what a
    torchvision checkpoint provides for ResNets), ``features_drt`` (bases + coefficient branches),
    ``features`` (their sum), ``head`` and ``total``; plus ``torchvision_fc`` = the parameters of
    torchvision's 1000-class ``fc`` for ResNets (so ``features_static + torchvision_fc`` is torchvision's own
    count, e.g. 44,549,160 for ResNet-101) and 0 for digits.
    """
    static = drt = 0
    for c in conv_specs(spec).values():
        s, d = _conv_params(c)
        static += s
        drt += d
        static += 2 * c.out_channels  # the BatchNorm after every conv
    if spec.arch == "digits_cnn":
        (_, _, c3), (f1, f2) = digits_dims(spec.width)
        static += _linear(c3 * 8 * 8, f1) + 2 * f1 + _linear(f1, f2) + 2 * f2
    f = spec.feature_dim
    if spec.head == "linear":
        head = _linear(f, spec.num_classes)
    else:
        h = spec.head_hidden
        head = _linear(f, h) + 2 * h + _linear(h, h) + 2 * h + _linear(h, spec.num_classes)
    tv_fc = 0 if spec.arch == "digits_cnn" else _linear(f, 1000)
    return {
        "features_static": static,
        "features_drt": drt,
        "features": static + drt,
        "head": head,
        "total": static + drt + head,
        "torchvision_fc": tv_fc,
    }
