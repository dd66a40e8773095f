r"""Spec of one DRT convolution layer (the single source both frameworks build from).

The layer computes, for an input ``x`` with ``C_in`` channels,

.. math::

    W(x) = W_0 + \Lambda(x)\,W_0 + \sum_{k=1}^{K} \pi_k(x)\,\Phi_k ,\qquad y = W(x) * x

* ``W_0``: the static kernel, ``(C_out, C_in, k, k)``; no bias.
* ``Λ(x) = diag(sigmoid(a(x)))`` over output channels (``ca``, ``comb``).
* ``π(x) = softmax(r(x))`` over ``K`` bases ``Φ_k`` of shape ``(C_out, C_in, b, b)`` where ``b = 1``
  (``basis_kernel=1``: the basis is the *centre tap* of a ``k×k`` kernel, as released for ResNet) or
  ``b = k`` (``basis_kernel="full"``) (``sr``, ``comb``; ``sr_uniform`` has them too, with π fixed).
* Coefficient branch on the *routing input* ``r``: ``z = GAP(r)`` → ``Linear(C_r→h, no bias)`` → ReLU →
  ``Linear(h→n, no bias)`` with ``h = max(C_r // reduction, min_hidden)`` and ``n = K`` (sr,
  sr_uniform), ``C_out`` (ca) or ``K + C_out`` (comb: the first ``K`` outputs are routing logits, the next
  ``C_out`` attention logits).
* Routing input (``route``): ``"layer"`` — ``r = x``, the layer's own input (``C_r = C_in``);
  ``"block"`` — ``r`` is a separate tensor the caller passes (``layer(x, route_input=r)``), the input of the
  residual block that holds the layer, with ``C_r = route_channels`` channels (as released for ResNet:
  ``BottleneckKDRA`` routes conv2 on the GAP of the block input, ``docs/method-facts.md``). Only the branch
  input changes: the convolutions still read ``x``.
* ``static``: a plain convolution ``y = W_0 * x`` (no branch, no bases).
* ``sr_uniform`` — the *capacity control* of ``sr`` (``docs/method-facts.md`` §capacity control): exactly
  ``sr``'s parameters (``W_0``, the ``K`` bases, the router's two Linear layers, same names and shapes, so
  weights port between ``sr`` and ``sr_uniform`` models), but the routing is frozen to the uniform
  ``π_k = 1/K`` for every sample. The layer is then *static*, with the kernel
  ``W = W_0 + (1/K) Σ_k Φ_k`` (``W_0`` plus the mean basis); the router is not run (its weights exist and
  are counted but get no gradient: ``None``, since π does not depend on them) and the routing input is
  ignored (still validated with ``route="block"``). It runs through the same three formulations with
  ``π`` fixed to ``1/K`` (``sr`` with the routing frozen), and has no input-dependent coefficients
  (:attr:`DRTConvSpec.has_coefficients` is False: no coefficient file). "DRT beats static" could be "more
  parameters"; "``sr`` beats ``sr_uniform``" is the effect of the *dynamic* routing at equal parameters.

Three formulations compute the same function (they must agree numerically):

* ``output_mix`` (the authors' release): ``y = (1+Λ)⊙(W_0*x) + Σ_k π_k (Φ_k*x)`` — K extra convs.
* ``residual_agg``: ``ΔW(x) = Σ_k π_k Φ_k`` per sample, then ``y = (1+Λ)⊙(W_0*x) + ΔW(x)*x``. With 1×1
  bases this is the "static conv + per-sample matmul" form: the dense static conv plus one per-sample
  ``(C_out, C_in)`` matmul on the input sampled at the centre tap (exact for every stride and padding).
* ``kernel_merge``: fold everything into one per-sample kernel ``W(x)`` and run one per-sample conv.

``auto`` picks one of the candidates (``harness.autotune.candidates``: all three with bases, ``kernel_merge``
or ``residual_agg`` for ``ca``) per layer shape and device by a cached measured calibration.

Initialisation (as released): ``W_0`` and ``Φ_k`` kaiming-normal (fan_out, relu), i.e.
``N(0, 2 / (C_out·kh·kw))``; both Linear layers ``N(0, 0.01²)`` (std 0.01).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from harness.errors import SpecError

VARIANTS: tuple[str, ...] = ("static", "ca", "sr", "sr_uniform", "comb")
FORMULATIONS: tuple[str, ...] = ("output_mix", "residual_agg", "kernel_merge")
FORMULATION_CHOICES: tuple[str, ...] = FORMULATIONS + ("auto",)
BASIS_KERNELS: tuple[int | str, ...] = (1, "full")
ROUTES: tuple[str, ...] = ("layer", "block")

Variant = Literal["static", "ca", "sr", "sr_uniform", "comb"]
Formulation = Literal["output_mix", "residual_agg", "kernel_merge", "auto"]
Route = Literal["layer", "block"]


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError("DRTConvSpec", name, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi else ""))
    if value < lo or (hi is not None and value > hi):
        raise SpecError("DRTConvSpec", name, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi else ""))


@dataclass(frozen=True)
class DRTConvSpec:
    """Immutable description of one (possibly dynamic) convolution layer. See the module docstring."""

    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    padding: int | None = None  # None -> kernel_size // 2 ("same" for odd kernels at stride 1)
    variant: Variant = "sr"
    K: int = 4
    reduction: int = 16
    min_hidden: int = 4
    basis_kernel: int | str = 1
    formulation: Formulation = "kernel_merge"
    route: Route = "layer"
    route_channels: int | None = None  # "block": channels of the routing input (None -> in_channels)

    def __post_init__(self) -> None:
        _check_int("in_channels", self.in_channels, 1)
        _check_int("out_channels", self.out_channels, 1)
        _check_int("kernel_size", self.kernel_size, 1, 15)
        _check_int("stride", self.stride, 1, 8)
        if self.padding is None:
            object.__setattr__(self, "padding", self.kernel_size // 2)
        _check_int("padding", self.padding, 0, self.kernel_size - 1)
        if self.variant not in VARIANTS:
            raise SpecError("DRTConvSpec", "variant", self.variant, f"one of {', '.join(VARIANTS)}")
        _check_int("K", self.K, 1, 64)
        _check_int("reduction", self.reduction, 1)
        _check_int("min_hidden", self.min_hidden, 1)
        if self.basis_kernel not in BASIS_KERNELS or isinstance(self.basis_kernel, bool):
            raise SpecError("DRTConvSpec", "basis_kernel", self.basis_kernel, '1 or "full"')
        if self.formulation not in FORMULATION_CHOICES:
            raise SpecError(
                "DRTConvSpec", "formulation", self.formulation, f"one of {', '.join(FORMULATION_CHOICES)}"
            )
        if self.route not in ROUTES:
            raise SpecError("DRTConvSpec", "route", self.route, f"one of {', '.join(ROUTES)}")
        if self.route == "layer":
            if self.route_channels is not None and self.route_channels != self.in_channels:
                raise SpecError(
                    "DRTConvSpec",
                    "route_channels",
                    self.route_channels,
                    'null (or in_channels) with route="layer" (the branch reads the layer input)',
                )
            object.__setattr__(self, "route_channels", None)
        else:
            if self.route_channels is None:
                object.__setattr__(self, "route_channels", self.in_channels)
            _check_int("route_channels", self.route_channels, 1)

    # ---- derived quantities -------------------------------------------------------------
    @property
    def dynamic(self) -> bool:
        """True for every variant but ``static``: the layer has the DRT branch and parameters (router;
        bases with :attr:`has_routing`). ``sr_uniform`` is dynamic in this structural sense although its
        function is static (see :attr:`has_coefficients`)."""
        return self.variant != "static"

    @property
    def has_routing(self) -> bool:
        """The layer has the ``K`` bases and a routing π (``sr``, ``sr_uniform``, ``comb``)."""
        return self.variant in ("sr", "sr_uniform", "comb")

    @property
    def uniform_routing(self) -> bool:
        """π is frozen to ``1/K`` (``sr_uniform``, the capacity control): the router is not run."""
        return self.variant == "sr_uniform"

    @property
    def has_coefficients(self) -> bool:
        """The coefficients depend on the input (``ca``, ``sr``, ``comb``): the layer reports them in
        ``last_coefficients`` and a job writes its coefficient file. False for ``static`` and
        ``sr_uniform``."""
        return self.dynamic and not self.uniform_routing

    @property
    def has_attention(self) -> bool:
        return self.variant in ("ca", "comb")

    @property
    def router_in(self) -> int:
        """Channels of the routing input the branch pools: ``in_channels`` (``route="layer"``) or
        ``route_channels`` (``route="block"``)."""
        if self.route == "layer" or self.route_channels is None:
            return self.in_channels
        return int(self.route_channels)

    @property
    def hidden(self) -> int:
        """Width of the coefficient branch: ``max(C_r // reduction, min_hidden)`` with ``C_r`` =
        :attr:`router_in` (guard for small ``C_r``)."""
        return max(self.router_in // self.reduction, self.min_hidden)

    @property
    def branch_out(self) -> int:
        """Outputs of the second Linear: K (sr, sr_uniform), C_out (ca), K + C_out (comb), 0 (static)."""
        return (self.K if self.has_routing else 0) + (self.out_channels if self.has_attention else 0)

    @property
    def basis_size(self) -> int:
        """Spatial size of each basis Φ_k: 1 or kernel_size."""
        return self.kernel_size if self.basis_kernel == "full" else 1

    def output_size(self, size: int) -> int:
        """Spatial output size for an input of ``size`` (same formula in both frameworks)."""
        return (size + 2 * int(self.padding) - self.kernel_size) // self.stride + 1

    def replace(self, **changes: Any) -> DRTConvSpec:
        d = self.to_dict()
        d.update(changes)
        return DRTConvSpec.from_dict(d)

    # ---- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields; ``route``/``route_channels`` only when not the default layer routing (so the dicts and
        JSON of layer-routed specs are those written before block routing existed)."""
        d = asdict(self)
        if self.route == "layer":
            del d["route"], d["route_channels"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DRTConvSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            allowed = f"a known field ({', '.join(sorted(known))})"
            raise SpecError("DRTConvSpec", unknown[0], d[unknown[0]], allowed)
        missing = [n for n in ("in_channels", "out_channels") if n not in d]
        if missing:
            raise SpecError("DRTConvSpec", missing[0], None, "a value (required field)")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> DRTConvSpec:
        return cls.from_dict(json.loads(text))
