r"""The DRT (dynamic residual transfer) convolution in PyTorch, NCHW, built only from a :class:`DRTConvSpec`.

For an input ``x`` (B, C_in, H, W) the layer computes, per sample,

.. math::

    W(x) = (1 + \Lambda(x))\,W_0 + \sum_{k=1}^{K} \pi_k(x)\,\Phi_k ,\qquad y = W(x) * x

with ``Λ(x) = diag(sigmoid(a(x)))`` over output channels (variants ``ca``, ``comb``), ``π(x) = softmax(r(x))``
over the ``K`` bases (``sr``, ``comb``), and the coefficient branch
``[r, a] = fc2(relu(fc1(GAP(z))))`` (no biases) on the routing input ``z``: the layer input ``x``
(``spec.route == "layer"``) or, with ``spec.route == "block"``, the tensor passed as
``layer(x, route_input=z)`` (the residual block's input, ``spec.route_channels`` channels).
``static`` is the plain convolution ``y = W_0 * x``. ``sr_uniform`` (the capacity control of ``sr``) has
``sr``'s parameters but ``π_k = 1/K`` for every sample: the router is not run (no gradient reaches it, its
``.grad`` stays ``None``), the layer computes ``(W_0 + mean_k Φ_k) * x`` through the same formulations and
reports no coefficients.
With ``basis_kernel=1`` each basis ``Φ_k`` is the *centre tap* of a ``k×k`` kernel (all other taps zero; tap
``c = k // 2`` in both axes, also for even ``k``, where ``kernel_merge`` zero-pads ``Φ_k`` by ``c`` before and
``k − 1 − c`` after); it is applied as a 1×1 map on the input sampled at the centre-tap positions
``x_pad[s·i + c, s·j + c]`` (``x_pad`` zero-padded by ``padding``), which is exact for every stride and
padding a spec accepts (the spec has no dilation or groups). Where the centre tap never reaches the padding
(``padding <= min(c, k − 1 − c)``, e.g. every "same" odd conv and every ``padding=0`` conv) the samples are
a strided slice of the unpadded ``x`` (:func:`centre_tap_input`).

Formulations (numerically the same function):

* ``output_mix``: ``y = (1+Λ)⊙(W_0*x) + Σ_k π_k (Φ_k*x)`` — the K basis convolutions run as one conv with
  ``K·C_out`` output channels, then a per-sample weighted sum.
* ``residual_agg``: ``ΔW = Σ_k π_k Φ_k`` per sample, ``y = (1+Λ)⊙(W_0*x) + ΔW*x`` (a batched matmul for 1×1
  bases, a per-sample grouped conv for full bases). With 1×1 bases this is "static conv + per-sample
  matmul": the dense static conv plus one ``(C_out, C_in) × (C_in, H'W')`` product per sample on the
  centre-tap samples, no per-sample ``k×k`` kernel and no grouped conv (the ResNet case; ``auto`` measures it
  against the others, :func:`formulation_choices` lists what it picked).
* ``kernel_merge``: ``W(x)`` folded per sample and applied by one grouped convolution with the batch folded
  into the groups: ``x.view(1, B·C_in, H, W)`` ∗ ``W.view(B·C_out, C_in, k, k)``, ``groups=B``.

Parameter names (the neutral weight format): ``weight`` = W0 (C_out, C_in, k, k); ``bases`` (K, C_out, C_in,
b, b); ``router.fc1.weight`` (hidden, C_r) with ``C_r = spec.router_in`` (C_in, or the block input's channels
with block routing); ``router.fc2.weight`` (branch_out, hidden). A ``static``
layer has only ``weight`` (torchvision names). Initialisation (algorithms.md §1): W0 and every Φ_k
kaiming-normal (fan_out, relu), i.e. ``N(0, 2/(C_out·b·b))``; both Linear layers ``N(0, 0.01²)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import autotune
from harness.spec.layer import DRTConvSpec


def resolve_formulation(
    spec: DRTConvSpec, device: torch.device | str | None = None, input_shape: tuple[int, ...] | None = None
) -> str:
    """The concrete formulation of ``spec``; ``auto`` is resolved by
    :func:`harness.autotune.resolve_formulation` with this module's calibration (:func:`measure_formulations`,
    :func:`describe_device`)."""
    return autotune.resolve_formulation(
        spec,
        "torch",
        str(device) if device is not None else "cpu",
        input_shape,
        measure=measure_formulations,
        describe=describe_device,
    )


def describe_device(device: str) -> tuple[str, str]:
    """The device and library-version parts of an autotune cache key (GPU name, or CPU model + threads)."""
    dev = str(device)
    if dev.startswith("cuda") and torch.cuda.is_available():
        desc = f"cuda:{torch.cuda.get_device_name(torch.device(dev))}"
    else:
        desc = f"cpu:{autotune.cpu_model()}:{torch.get_num_threads()}t"
    return desc, f"torch {torch.__version__}"


@contextlib.contextmanager
def _outside_torch_modes() -> Iterator[None]:
    """Run the calibration outside any active torch dispatch mode (e.g. a FlopCounterMode being used)."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:  # pragma: no cover
        yield
        return
    with _disable_current_modes():
        yield


def measure_formulations(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
    """Median seconds of forward+backward (``sum(y)`` back-propagated to ``x`` and every weight) of one
    :class:`DRTConv2d` per candidate formulation (:func:`harness.autotune.candidates`) on a random
    ``(b, C_in, h, w)`` input, timed by :func:`harness.autotune.time_interleaved` (the ``measure`` of
    ``formulation="auto"``)."""
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, spec.in_channels, h, w, generator=gen).to(dev).requires_grad_(True)
    r = torch.randn(b, spec.router_in, h, w, generator=gen).to(dev) if spec.route == "block" else None
    steps: dict[str, Callable[[], None]] = {}
    with _outside_torch_modes(), torch.enable_grad():
        for f in autotune.candidates(spec):
            layer = DRTConv2d(spec.replace(formulation=f)).to(dev)

            def step(layer: Any = layer) -> None:
                layer.zero_grad(set_to_none=True)
                x.grad = None
                layer(x, route_input=r).sum().backward()

            steps[f] = step
        return autotune.time_interleaved(steps, sync)


def formulation_choices(model: nn.Module) -> list[tuple[str, str, str]]:
    """``[(module path, shape key, formulation)]`` for every dynamic :class:`DRTConv2d` of ``model``, in
    module (forward) order: the formulation each layer runs (for ``formulation="auto"``: the one
    :mod:`harness.autotune` chose for it) and :func:`harness.autotune.shape_key` of the input it was
    resolved on (the cache key's layer part: geometry, routing, ``HxW``, calibration batch). Call it after one
    forward pass: an ``auto`` layer that has not run yet is listed as
    :data:`harness.autotune.UNRESOLVED` with the key of its default calibration shape; a fixed formulation is
    listed as itself. Static layers (plain convs) are left out. ``harness.autotune.format_choices`` prints it.
    """
    rows: list[tuple[str, str, str]] = []
    for name, m in model.named_modules():
        if isinstance(m, DRTConv2d) and m.spec.dynamic:
            key = m.formulation_key or autotune.shape_key(m.spec, "torch", None)
            rows.append((name, key, m._formulation or autotune.UNRESOLVED))
    return rows


class DRTRouter(nn.Module):
    """Coefficient branch ``fc2(relu(fc1(GAP(z))))`` (no biases) on the routing input ``z``; returns the
    logits (B, branch_out)."""

    def __init__(self, in_channels: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, out_features, bias=False)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.fc1.weight, 0.0, 0.01)
        nn.init.normal_(self.fc2.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))


def centre_tap_input(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """The input samples a ``k×k`` kernel's centre tap sees: ``x_pad[:, :, s·i + c, s·j + c]``, c = k // 2.

    In ``x``'s own coordinates that is ``x[s·i + c − p]``. When ``p <= min(c, k − 1 − c)`` no sample falls in
    the padding (the first is ``c − p >= 0``, the last ``<= H − 1 − (k − 1 − c − p)``), so it is a strided
    slice of ``x`` (``x`` itself for a stride-1 "same" odd kernel); otherwise ``x`` is zero-padded first.
    """
    k, s, p = kernel_size, stride, padding
    c = k // 2
    h, w = x.shape[-2:]
    ho = (h + 2 * p - k) // s + 1
    wo = (w + 2 * p - k) // s + 1
    if p <= min(c, k - 1 - c):
        a = c - p
        if a == 0 and s == 1 and (ho, wo) == (h, w):
            return x
        return x[:, :, a : a + s * (ho - 1) + 1 : s, a : a + s * (wo - 1) + 1 : s]
    xp = F.pad(x, (p, p, p, p))
    return xp[:, :, c : c + s * (ho - 1) + 1 : s, c : c + s * (wo - 1) + 1 : s]


def per_sample_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``y[b] = weight[b] * x[b]`` for weight (B, C_out, C_in, k, k): one conv, batch folded into groups."""
    b, c_in, h, w = x.shape
    c_out, kh, kw = weight.shape[1], weight.shape[-2], weight.shape[-1]
    y = F.conv2d(
        x.reshape(1, b * c_in, h, w), weight.reshape(b * c_out, c_in, kh, kw), None, stride, padding, 1, b
    )
    return y.view(b, c_out, y.shape[-2], y.shape[-1])


class DRTConv2d(nn.Module):
    """DRT convolution (NCHW), see the module docstring for the maths. ``DRTConv2d(spec)(x) -> y``, or
    ``DRTConv2d(spec)(x, route_input=block_x) -> y`` for ``spec.route == "block"``.

    After each forward pass ``last_coefficients`` holds the detached coefficients: ``pi`` (B, K) for
    ``sr``/``comb`` and ``lam`` (B, C_out) for ``ca``/``comb`` (empty for ``static`` and ``sr_uniform``,
    whose π is the constant ``1/K``).
    """

    def __init__(self, spec: DRTConvSpec) -> None:
        super().__init__()
        if not isinstance(spec, DRTConvSpec):
            raise TypeError(f"DRTConv2d expects a DRTConvSpec, got {type(spec).__name__}")
        self.spec = spec
        k = spec.kernel_size
        self.weight = nn.Parameter(torch.empty(spec.out_channels, spec.in_channels, k, k))
        if spec.has_routing:
            b = spec.basis_size
            self.bases = nn.Parameter(torch.empty(spec.K, spec.out_channels, spec.in_channels, b, b))
        else:
            self.register_parameter("bases", None)
        self.router = DRTRouter(spec.router_in, spec.hidden, spec.branch_out) if spec.dynamic else None
        self.last_coefficients: dict[str, torch.Tensor] = {}
        self._formulation: str | None = spec.formulation if spec.formulation != "auto" else None
        #: :func:`harness.autotune.shape_key` of the input the formulation was resolved for (None until the
        #: first forward of a dynamic layer); read by :func:`formulation_choices`.
        self.formulation_key: str | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialisation of algorithms.md §1 (kaiming-normal fan_out/relu; Linear N(0, 0.01²))."""
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        if self.bases is not None:
            b = self.spec.basis_size
            nn.init.normal_(self.bases, 0.0, math.sqrt(2.0 / (self.spec.out_channels * b * b)))
        if self.router is not None:
            self.router.reset_parameters()

    def extra_repr(self) -> str:
        s = self.spec
        text = (
            f"{s.in_channels}, {s.out_channels}, kernel_size={s.kernel_size}, stride={s.stride}, "
            f"padding={s.padding}, variant={s.variant}"
        )
        if s.dynamic:
            text += f", formulation={s.formulation}, hidden={s.hidden}"
            if s.route == "block":
                text += f", route=block({s.route_channels})"
        if s.has_routing:
            text += f", K={s.K}, basis_kernel={s.basis_kernel}"
        return text

    # ---- coefficients -----------------------------------------------------------------------------
    def routing_input(self, x: torch.Tensor, route_input: torch.Tensor | None) -> torch.Tensor:
        """The tensor the branch pools: ``x`` (``route="layer"``; a ``route_input`` is then ignored, so a
        block may pass its input to every conv) or ``route_input`` (``route="block"``: required, with
        ``spec.route_channels`` channels and the batch of ``x``)."""
        s = self.spec
        if s.route == "layer":
            return x
        if route_input is None:
            raise ValueError(
                f"DRTConv2d with route='block' needs the block input: layer(x, route_input=...) "
                f"({s.route_channels} channels)"
            )
        if route_input.dim() != 4 or route_input.shape[1] != s.route_channels:
            raise ValueError(
                f"route_input: expected (B, {s.route_channels}, H, W), got {tuple(route_input.shape)}"
            )
        if route_input.shape[0] != x.shape[0]:
            raise ValueError(f"route_input batch {route_input.shape[0]} != input batch {x.shape[0]}")
        return route_input

    def coefficients(
        self, x: torch.Tensor, route_input: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(π, Λ)``: softmax over the first K logits (routing), sigmoid over the C_out after (attention);
        the branch reads :meth:`routing_input`. ``sr_uniform``: ``π = 1/K`` (B, K) without running the
        router (the routing input is still validated)."""
        s = self.spec
        if s.uniform_routing:
            self.routing_input(x, route_input)
            return torch.full((x.shape[0], s.K), 1.0 / s.K, dtype=x.dtype, device=x.device), None
        logits = self.router(self.routing_input(x, route_input))
        pi = torch.softmax(logits[:, : s.K], dim=1) if s.has_routing else None
        off = s.K if s.has_routing else 0
        lam = torch.sigmoid(logits[:, off:]) if s.has_attention else None
        return pi, lam

    # ---- forward -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, route_input: torch.Tensor | None = None) -> torch.Tensor:
        """``y = W(z) * x``; ``route_input`` = ``z`` for ``route="block"`` (ignored otherwise)."""
        s = self.spec
        if not s.dynamic:
            return F.conv2d(x, self.weight, None, s.stride, s.padding)
        pi, lam = self.coefficients(x, route_input)
        coeffs: dict[str, torch.Tensor] = {}
        if pi is not None and s.has_coefficients:
            coeffs["pi"] = pi.detach()
        if lam is not None:
            coeffs["lam"] = lam.detach()
        self.last_coefficients = coeffs
        if self._formulation is None:
            self._formulation = resolve_formulation(s, x.device, tuple(x.shape))
            self.formulation_key = autotune.shape_key(s, "torch", tuple(x.shape))
        elif self.formulation_key is None:
            self.formulation_key = autotune.shape_key(s, "torch", tuple(x.shape))
        if self._formulation == "output_mix":
            return self._output_mix(x, pi, lam)
        if self._formulation == "residual_agg":
            return self._residual_agg(x, pi, lam)
        return self._kernel_merge(x, pi, lam)

    def _static_scaled(self, x: torch.Tensor, lam: torch.Tensor | None) -> torch.Tensor:
        """``(1+Λ)⊙(W_0*x)``."""
        s = self.spec
        y = F.conv2d(x, self.weight, None, s.stride, s.padding)
        return y if lam is None else y * (1.0 + lam)[:, :, None, None]

    def _output_mix(self, x: torch.Tensor, pi: torch.Tensor | None, lam: torch.Tensor | None) -> torch.Tensor:
        s = self.spec
        y = self._static_scaled(x, lam)
        if pi is None:
            return y
        b = s.basis_size
        w = self.bases.reshape(s.K * s.out_channels, s.in_channels, b, b)
        if s.basis_kernel == "full":
            yb = F.conv2d(x, w, None, s.stride, s.padding)
        else:
            yb = F.conv2d(centre_tap_input(x, s.kernel_size, s.stride, s.padding), w)
        yb = yb.view(x.shape[0], s.K, s.out_channels, yb.shape[-2], yb.shape[-1])
        return y + torch.einsum("bk,bkohw->bohw", pi, yb)

    def _delta(self, pi: torch.Tensor) -> torch.Tensor:
        """``ΔW = Σ_k π_k Φ_k`` per sample: (B, C_out, C_in, b, b)."""
        return torch.einsum("bk,koihw->boihw", pi, self.bases)

    def _residual_agg(
        self, x: torch.Tensor, pi: torch.Tensor | None, lam: torch.Tensor | None
    ) -> torch.Tensor:
        s = self.spec
        y = self._static_scaled(x, lam)
        if pi is None:
            return y
        dw = self._delta(pi)
        if s.basis_kernel == "full":
            return y + per_sample_conv2d(x, dw, s.stride, s.padding)
        u = centre_tap_input(x, s.kernel_size, s.stride, s.padding)
        return y + torch.einsum("boi,bihw->bohw", dw[:, :, :, 0, 0], u)

    def _kernel_merge(
        self, x: torch.Tensor, pi: torch.Tensor | None, lam: torch.Tensor | None
    ) -> torch.Tensor:
        s = self.spec
        k = s.kernel_size
        w0 = self.weight.unsqueeze(0)
        w = w0.expand(x.shape[0], -1, -1, -1, -1) if lam is None else w0 * (1.0 + lam)[:, :, None, None, None]
        if pi is not None:
            dw = self._delta(pi)
            if s.basis_kernel != "full" and k > 1:
                c = k // 2
                dw = F.pad(dw, (c, k - 1 - c, c, k - 1 - c))
            w = w + dw
        return per_sample_conv2d(x, w, s.stride, s.padding)
