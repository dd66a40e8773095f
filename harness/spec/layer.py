r"""Spec of one DRT convolution layer (the single source both frameworks build from).

The layer computes, for an input ``x`` with ``C_in`` channels,

.. math::

    W(x) = W_0 + \Lambda(x)\,W_0 + \sum_{k=1}^{K} \pi_k(x)\,\Phi_k ,\qquad y = W(x) * x

* ``W_0``: the static kernel, ``(C_out, C_in, k, k)``; no bias.
* ``Λ(x) = diag(sigmoid(a(x)))`` over output channels (``ca``, ``comb``).
* ``π(x) = softmax(r(x))`` over ``K`` bases ``Φ_k`` of shape ``(C_out, C_in, b, b)`` where ``b = 1``
  (``basis_kernel=1``: the basis is the *centre tap* of a ``k×k`` kernel, as released for ResNet) or
  ``b = k`` (``basis_kernel="full"``) (``sr``, ``comb``).
* Coefficient branch on the layer input: ``z = GAP(x)`` → ``Linear(C_in→h, no bias)`` → ReLU →
  ``Linear(h→n, no bias)`` with ``h = max(C_in // reduction, min_hidden)`` and ``n = K`` (sr),
  ``C_out`` (ca) or ``K + C_out`` (comb: the first ``K`` outputs are routing logits, the next
  ``C_out`` attention logits).
* ``static``: a plain convolution ``y = W_0 * x`` (no branch, no bases).

Three formulations compute the same function (they must agree numerically):

* ``output_mix`` (the authors' release): ``y = (1+Λ)⊙(W_0*x) + Σ_k π_k (Φ_k*x)`` — K extra convs.
* ``residual_agg``: ``ΔW(x) = Σ_k π_k Φ_k`` per sample, then ``y = (1+Λ)⊙(W_0*x) + ΔW(x)*x``.
* ``kernel_merge``: fold everything into one per-sample kernel ``W(x)`` and run one per-sample conv.

``auto`` picks one of the three per layer shape and device by a cached measured calibration.

Initialisation (as released): ``W_0`` and ``Φ_k`` kaiming-normal (fan_out, relu), i.e.
``N(0, 2 / (C_out·kh·kw))``; both Linear layers ``N(0, 0.01²)`` (std 0.01).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from harness.errors import SpecError

VARIANTS: tuple[str, ...] = ("static", "ca", "sr", "comb")
FORMULATIONS: tuple[str, ...] = ("output_mix", "residual_agg", "kernel_merge")
FORMULATION_CHOICES: tuple[str, ...] = FORMULATIONS + ("auto",)
BASIS_KERNELS: tuple[int | str, ...] = (1, "full")

Variant = Literal["static", "ca", "sr", "comb"]
Formulation = Literal["output_mix", "residual_agg", "kernel_merge", "auto"]


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

    # ---- derived quantities -------------------------------------------------------------
    @property
    def dynamic(self) -> bool:
        """True for every variant but ``static``."""
        return self.variant != "static"

    @property
    def has_routing(self) -> bool:
        return self.variant in ("sr", "comb")

    @property
    def has_attention(self) -> bool:
        return self.variant in ("ca", "comb")

    @property
    def hidden(self) -> int:
        """Width of the coefficient branch: ``max(C_in // reduction, min_hidden)`` (guard for small C_in)."""
        return max(self.in_channels // self.reduction, self.min_hidden)

    @property
    def branch_out(self) -> int:
        """Outputs of the second Linear: K (sr), C_out (ca), K + C_out (comb), 0 (static)."""
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
        return asdict(self)

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
