"""DRTConv2d (PyTorch): names, init, formulations, plain-conv special cases, known answer, neutral weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import WeightsError
from harness.spec.layer import FORMULATIONS, VARIANTS, DRTConvSpec
from impl_torch.layers import DRTConv2d
from impl_torch.weights import from_neutral, to_neutral

pytestmark = pytest.mark.torch

torch.set_num_threads(1)


def reference(layer: DRTConv2d, x: torch.Tensor) -> torch.Tensor:
    """Per sample: build W(x) = (1+Λ)W0 + Σ π_k Φ_k explicitly (centre tap for 1×1 bases) and convolve."""
    s = layer.spec
    pi, lam = layer.coefficients(x) if s.dynamic else (None, None)
    ys = []
    for b in range(x.shape[0]):
        w = layer.weight.clone()
        if lam is not None:
            w = w * (1 + lam[b])[:, None, None, None]
        if pi is not None:
            d = torch.einsum("k,koihw->oihw", pi[b], layer.bases)
            if s.basis_kernel == "full":
                w = w + d
            else:
                c = s.kernel_size // 2
                w[:, :, c, c] += d[:, :, 0, 0]
        ys.append(F.conv2d(x[b : b + 1], w, None, s.stride, s.padding))
    return torch.cat(ys)


def spread_router(layer: DRTConv2d, gen: torch.Generator) -> None:
    if layer.router is not None:
        with torch.no_grad():
            for p in layer.router.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


@st.composite
def layer_cases(draw: st.DrawFn, max_channels: int = 48, max_size: int = 33) -> tuple[DRTConvSpec, tuple]:
    k = draw(st.sampled_from([1, 3, 5]))
    spec = DRTConvSpec(
        in_channels=draw(st.integers(1, max_channels)),
        out_channels=draw(st.integers(1, max_channels)),
        kernel_size=k,
        stride=draw(st.sampled_from([1, 2])),
        padding=draw(st.one_of(st.none(), st.integers(0, k - 1))),
        variant=draw(st.sampled_from(VARIANTS)),
        K=draw(st.integers(1, 8)),
        basis_kernel=draw(st.sampled_from([1, "full"])),
        formulation=draw(st.sampled_from(FORMULATIONS)),
        min_hidden=draw(st.integers(1, 8)),
    )
    lo = max(1, k - 2 * spec.padding)
    shape = (
        draw(st.integers(1, 5)),
        spec.in_channels,
        draw(st.integers(lo, max_size)),
        draw(st.integers(lo, max_size)),
    )
    return spec, shape


# ---- structure and initialisation -----------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("basis_kernel", [1, "full"])
def test_parameter_names_and_shapes(variant: str, basis_kernel: int | str) -> None:
    spec = DRTConvSpec(32, 24, variant=variant, K=3, basis_kernel=basis_kernel)
    shapes = {n: tuple(p.shape) for n, p in DRTConv2d(spec).named_parameters()}
    b = spec.basis_size
    expected = {"weight": (24, 32, 3, 3)}
    if spec.has_routing:
        expected["bases"] = (3, 24, 32, b, b)
    if spec.dynamic:
        expected["router.fc1.weight"] = (4, 32)
        expected["router.fc2.weight"] = (spec.branch_out, 4)
    assert shapes == expected
    assert not any(n.endswith("bias") for n in shapes)


def test_static_matches_torch_conv_state_dict() -> None:
    spec = DRTConvSpec(3, 8, kernel_size=5, stride=2, variant="static")
    ref = torch.nn.Conv2d(3, 8, 5, 2, 2, bias=False)
    layer = DRTConv2d(spec)
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 17, 16)
    torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=0)
    assert layer.last_coefficients == {}


def test_initialisation_statistics() -> None:
    torch.manual_seed(0)
    spec = DRTConvSpec(256, 128, variant="comb", K=8, basis_kernel="full", reduction=4)
    layer = DRTConv2d(spec)
    std0 = math.sqrt(2 / (128 * 9))
    assert abs(layer.weight.std().item() / std0 - 1) < 0.02
    assert abs(layer.bases.std().item() / std0 - 1) < 0.02
    assert abs(layer.router.fc1.weight.std().item() / 0.01 - 1) < 0.05
    assert abs(layer.router.fc2.weight.std().item() / 0.01 - 1) < 0.05
    one = DRTConv2d(spec.replace(basis_kernel=1))
    assert abs(one.bases.std().item() / math.sqrt(2 / 128) - 1) < 0.03


# ---- the three formulations agree, and equal the explicit per-sample kernel -----------------------
@given(layer_cases(), st.integers(0, 2**31 - 1))
@settings(max_examples=settings().max_examples)
def test_formulations_agree_with_reference(case: tuple, seed: int) -> None:
    spec, shape = case
    gen = torch.Generator().manual_seed(seed)
    layer = DRTConv2d(spec).double()
    spread_router(layer, gen)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    ref = reference(layer, x)
    for form in FORMULATIONS:
        layer._formulation = form
        y = layer(x)
        assert y.shape == (
            shape[0],
            spec.out_channels,
            spec.output_size(shape[2]),
            spec.output_size(shape[3]),
        )
        rel = (y - ref).abs().max().item() / max(ref.abs().max().item(), 1e-300)
        assert rel <= 1e-10, (form, rel)
    if spec.uniform_routing:
        assert layer.last_coefficients == {}  # π = 1/K is not an input-dependent coefficient
    elif spec.has_routing:
        assert layer.last_coefficients["pi"].shape == (shape[0], spec.K)
        torch.testing.assert_close(
            layer.last_coefficients["pi"].sum(1), torch.ones(shape[0], dtype=torch.float64)
        )
    if spec.has_attention:
        lam = layer.last_coefficients["lam"]
        # a sigmoid of a spread router logit may round to exactly 0 or 1, even in float64
        assert lam.shape == (shape[0], spec.out_channels) and bool(((lam >= 0) & (lam <= 1)).all())


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_gradcheck(formulation: str) -> None:
    spec = DRTConvSpec(
        3, 4, stride=2, variant="comb", K=2, basis_kernel=1, formulation=formulation, padding=0
    )
    layer = DRTConv2d(spec).double()
    spread_router(layer, torch.Generator().manual_seed(1))
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    params = tuple(layer.parameters())

    def f(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(
            layer, dict(zip([n for n, _ in layer.named_parameters()], ps)), (x,)
        )

    assert torch.autograd.gradcheck(f, (x, *[p.detach().requires_grad_() for p in params]))


# ---- special cases equal a plain convolution ------------------------------------------------------
@given(layer_cases(max_channels=16, max_size=17), st.integers(0, 2**31 - 1))
def test_static_and_zero_bases_are_plain_conv(case: tuple, seed: int) -> None:
    spec, shape = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    layer = DRTConv2d(spec.replace(variant="static")).double()
    plain = F.conv2d(x, layer.weight, None, spec.stride, spec.padding)
    torch.testing.assert_close(layer(x), plain, rtol=0, atol=0)
    for variant in ("sr", "comb"):
        dyn = DRTConv2d(spec.replace(variant=variant)).double()
        spread_router(dyn, gen)
        with torch.no_grad():
            dyn.weight.copy_(layer.weight)
            dyn.bases.zero_()
        y = dyn(x)
        scale = 1.0 if variant == "sr" else (1 + dyn.last_coefficients["lam"])[:, :, None, None]
        torch.testing.assert_close(y, plain * scale, rtol=1e-12, atol=1e-12)


# ---- known answer, computed by hand ---------------------------------------------------------------
# 1×1 spatial input, k = 3, padding 1: only the centre tap of every kernel sees the input.
KA_X = np.array([1.0, -2.0])
KA_FC1 = np.array([[0.5, -0.25], [0.25, -0.5]])  # h = relu(fc1 x) = [1, 1.25]
KA_FC2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.4, 0.0], [0.0, -0.8]])  # logits [1, 1.25 | 0.4, -1]
KA_W0C = np.array([[1.0, 2.0], [3.0, 4.0]])  # centre tap of W0
KA_PHI = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])  # K = 2 bases (centre taps)
# π = softmax([1, 1.25]) = [0.4378234991, 0.5621765009]; Λ = sigmoid([0.4, -1]) = [0.5986876601, 0.2689414214]
# W = (1+Λ)W0 + π1Φ1 + π2Φ2 = [[2.0365111592, 3.7595518211], [4.3690007635, 5.5135891846]]; y = W·x:
KA_Y = np.array([-5.482592483, -6.658177606])


def known_answer_layer(basis_kernel: int | str, formulation: str) -> DRTConv2d:
    spec = DRTConvSpec(
        2, 2, variant="comb", K=2, min_hidden=2, basis_kernel=basis_kernel, formulation=formulation
    )
    layer = DRTConv2d(spec).double()
    gen = np.random.default_rng(0)
    w0 = gen.standard_normal((2, 2, 3, 3))  # off-centre taps see only zero padding
    w0[:, :, 1, 1] = KA_W0C
    bases = KA_PHI[:, :, :, None, None]
    if basis_kernel == "full":
        bases = gen.standard_normal((2, 2, 2, 3, 3))
        bases[:, :, :, 1, 1] = KA_PHI
    from_neutral(
        layer, {"weight": w0, "bases": bases, "router.fc1.weight": KA_FC1, "router.fc2.weight": KA_FC2}
    )
    return layer


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("basis_kernel", [1, "full"])
def test_known_answer(basis_kernel: int | str, formulation: str) -> None:
    h = np.maximum(KA_FC1 @ KA_X, 0)
    logits = KA_FC2 @ h
    pi = np.exp(logits[:2]) / np.exp(logits[:2]).sum()
    lam = 1 / (1 + np.exp(-logits[2:]))
    w = (1 + lam)[:, None] * KA_W0C + pi[0] * KA_PHI[0] + pi[1] * KA_PHI[1]
    np.testing.assert_allclose(w @ KA_X, KA_Y, atol=1e-8)
    layer = known_answer_layer(basis_kernel, formulation)
    y = layer(torch.tensor(KA_X).reshape(1, 2, 1, 1))
    np.testing.assert_allclose(y.detach().numpy().reshape(2), w @ KA_X, rtol=1e-13)
    np.testing.assert_allclose(layer.last_coefficients["pi"].numpy()[0], pi, rtol=1e-13)
    np.testing.assert_allclose(layer.last_coefficients["lam"].numpy()[0], lam, rtol=1e-13)


# ---- neutral weights ------------------------------------------------------------------------------
def test_neutral_round_trip_and_strict_errors() -> None:
    spec = DRTConvSpec(5, 6, variant="comb", K=3, basis_kernel="full")
    a, b = DRTConv2d(spec), DRTConv2d(spec)
    arrays = to_neutral(a)
    assert set(arrays) == {"weight", "bases", "router.fc1.weight", "router.fc2.weight"}
    from_neutral(b, arrays)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), arrays[k])
    bad = dict(arrays)
    del bad["bases"]
    bad["extra.weight"] = np.zeros(1)
    bad["router.fc1.weight"] = np.zeros((1, 1))
    with pytest.raises(WeightsError) as e:
        from_neutral(b, bad)
    msg = str(e.value)
    assert "bases" in msg and "extra.weight" in msg and "router.fc1.weight" in msg
    with pytest.raises(WeightsError, match="router.fc1.weight"):
        from_neutral(b, bad, strict=False)  # shapes are checked even when not strict
    del bad["router.fc1.weight"]
    from_neutral(b, bad, strict=False)


def test_rejects_non_spec_and_auto_is_resolved_lazily() -> None:
    with pytest.raises(TypeError):
        DRTConv2d({"in_channels": 1})  # type: ignore[arg-type]
    layer = DRTConv2d(DRTConvSpec(2, 2, formulation="auto"))
    assert layer._formulation is None  # resolved by harness.autotune on the first forward (input shape known)


# ---- block routing: the branch reads a separate routing input (the residual block's input) -----------------
@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("variant", ["ca", "sr", "comb"])
def test_block_routing_pools_the_route_input(variant: str, formulation: str) -> None:
    spec = DRTConvSpec(
        5, 6, stride=2, variant=variant, K=3, formulation=formulation, route="block", route_channels=11
    )
    layer = DRTConv2d(spec).double()
    assert tuple(layer.router.fc1.weight.shape) == (spec.hidden, 11)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in layer.router.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(3, 5, 9, 9, dtype=torch.float64)
    r = torch.randn(3, 11, 18, 18, dtype=torch.float64)  # e.g. the block input of a strided conv2
    y = layer(x, route_input=r)
    # by hand: the coefficients from GAP(r), then the per-sample kernel on x
    logits = layer.router.fc2(torch.relu(layer.router.fc1(r.mean(dim=(2, 3)))))
    pi, lam = layer.coefficients(x, r)
    if spec.has_routing:
        torch.testing.assert_close(pi, torch.softmax(logits[:, :3], 1), rtol=1e-12, atol=1e-12)
        assert torch.allclose(layer.last_coefficients["pi"], pi)
    torch.testing.assert_close(y, reference_routed(layer, x, r), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="route_input"):
        layer(x)
    with pytest.raises(ValueError, match="11"):
        layer(x, route_input=x)


def reference_routed(layer: DRTConv2d, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """:func:`reference` with the coefficients of the routing input ``r``."""
    orig = layer.coefficients
    layer.coefficients = lambda _x, _r=None: orig(x, r)  # type: ignore[method-assign]
    try:
        return reference(layer, x)
    finally:
        del layer.coefficients


def test_layer_routing_ignores_a_route_input_and_static_ignores_it() -> None:
    spec = DRTConvSpec(4, 4, variant="comb", K=2)
    layer = DRTConv2d(spec).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x, route_input=torch.randn(2, 9, 3, 3)), layer(x), rtol=0, atol=0)
    st_ = DRTConv2d(DRTConvSpec(4, 4, variant="static")).double()
    torch.testing.assert_close(st_(x, route_input=x), st_(x), rtol=0, atol=0)


def test_block_routing_neutral_shapes_and_hint() -> None:
    block = DRTConv2d(DRTConvSpec(8, 8, variant="sr", route="block", route_channels=64))
    arrays = to_neutral(block)
    assert arrays["router.fc1.weight"].shape == (4, 64)  # max(64 // 16, 4) = 4 hidden, 64 inputs
    layer = DRTConv2d(DRTConvSpec(8, 8, variant="sr"))
    with pytest.raises(WeightsError, match="routing") as e:
        from_neutral(layer, arrays)
    assert "router.fc1.weight: expected (4, 8), got (4, 64)" in str(e.value)


def test_auto_calibration_with_block_routing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    from harness import autotune

    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    monkeypatch.setattr(autotune, "WARMUP", 1)
    monkeypatch.setattr(autotune, "REPEATS", 3)
    autotune.clear_memory_cache()
    try:
        spec = DRTConvSpec(6, 6, variant="sr", K=2, formulation="auto", route="block", route_channels=12)
        auto = DRTConv2d(spec).double()
        x, r = torch.randn(2, 6, 5, 5, dtype=torch.float64), torch.randn(2, 12, 5, 5, dtype=torch.float64)
        y = auto(x, route_input=r)  # the calibration builds its own routing input
        assert auto._formulation in FORMULATIONS
        for f in FORMULATIONS:
            fixed = DRTConv2d(spec.replace(formulation=f)).double()
            fixed.load_state_dict(auto.state_dict())
            torch.testing.assert_close(fixed(x, route_input=r), y, rtol=1e-10, atol=1e-10)
    finally:
        autotune.clear_memory_cache()


# ---- sr_uniform: the capacity control (sr's parameters, routing frozen to π = 1/K) -----------------------
def merged_static_conv(layer: DRTConv2d, x: torch.Tensor) -> torch.Tensor:
    """A plain conv with the kernel ``W0 + mean_k Φ_k`` (1×1 bases on the centre tap)."""
    s = layer.spec
    w = layer.weight.detach().clone()
    mean_phi = layer.bases.detach().mean(dim=0)
    if s.basis_kernel == "full":
        w = w + mean_phi
    else:
        c = s.kernel_size // 2
        w[:, :, c, c] += mean_phi[:, :, 0, 0]
    return F.conv2d(x, w, None, s.stride, s.padding)


@given(layer_cases(max_channels=16, max_size=17), st.booleans(), st.integers(0, 2**31 - 1))
def test_sr_uniform_is_a_static_conv_with_the_mean_basis(case: tuple, block: bool, seed: int) -> None:
    spec, shape = case
    spec = spec.replace(variant="sr_uniform")
    if block:
        spec = spec.replace(route="block", route_channels=int(seed % 7) + 1)
    gen = torch.Generator().manual_seed(seed)
    layer = DRTConv2d(spec).double()
    spread_router(layer, gen)  # a far-from-uniform router must not matter
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    r = torch.randn(shape[0], spec.router_in, 5, 4, generator=gen, dtype=torch.float64) if block else None
    ref = merged_static_conv(layer, x)
    for form in FORMULATIONS:
        layer._formulation = form
        y = layer(x, route_input=r)
        rel = (y - ref).abs().max().item() / max(ref.abs().max().item(), 1e-300)
        assert rel <= 1e-12, (form, rel)
        assert layer.last_coefficients == {}
    pi, lam = layer.coefficients(x, r)
    assert lam is None and torch.equal(pi, torch.full((shape[0], spec.K), 1.0 / spec.K, dtype=torch.float64))


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("route", ["layer", "block"])
def test_sr_uniform_router_gets_no_gradient(formulation: str, route: str) -> None:
    kw = {"route": "block", "route_channels": 10} if route == "block" else {}
    spec = DRTConvSpec(5, 6, stride=2, variant="sr_uniform", K=3, formulation=formulation, **kw)
    layer = DRTConv2d(spec).double()
    x = torch.randn(2, 5, 9, 8, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 10, 9, 8, dtype=torch.float64, requires_grad=True) if route == "block" else None
    layer(x, route_input=r).square().sum().backward()
    grads = {n: p.grad for n, p in layer.named_parameters()}
    assert grads["router.fc1.weight"] is None and grads["router.fc2.weight"] is None
    assert grads["weight"].abs().max() > 0 and grads["bases"].abs().max() > 0
    assert r is None or r.grad is None  # the routing input does not influence the output
    # every basis gets the same gradient (π_k = 1/K for all k): ∂L/∂Φ_k = ∂L/∂W_merged / K
    torch.testing.assert_close(grads["bases"][1:], grads["bases"][:1].expand(2, -1, -1, -1, -1))
    if route == "block":  # the routing input is still required (and checked), as for sr
        with pytest.raises(ValueError, match="route_input"):
            layer(x)


@pytest.mark.parametrize("route", ["layer", "block"])
@pytest.mark.parametrize("basis_kernel", [1, "full"])
def test_sr_uniform_has_the_parameters_and_names_of_sr(route: str, basis_kernel: int | str) -> None:
    from harness.flops.analytic import drt_layer

    kw = {"route": "block", "route_channels": 48} if route == "block" else {}
    sr = DRTConvSpec(32, 24, variant="sr", K=3, basis_kernel=basis_kernel, **kw)
    a, u = DRTConv2d(sr), DRTConv2d(sr.replace(variant="sr_uniform"))
    shapes = {n: tuple(p.shape) for n, p in u.named_parameters()}
    assert shapes == {n: tuple(p.shape) for n, p in a.named_parameters()}
    n_u = sum(p.numel() for p in u.parameters())
    assert n_u == sum(p.numel() for p in a.parameters()) == drt_layer(u.spec, 8).params
    assert drt_layer(u.spec, 8).params == drt_layer(sr, 8).params
    from_neutral(u, to_neutral(a))  # weights port between sr and sr_uniform
    for k, v in u.state_dict().items():
        torch.testing.assert_close(v, a.state_dict()[k], rtol=0, atol=0)


def test_sr_uniform_model_parameters_equal_sr() -> None:
    from harness.spec.model import ModelSpec, count_parameters
    from impl_torch.backbones import build_model

    counts, init = {}, {}
    for v in ("sr", "sr_uniform"):
        ms = ModelSpec(arch="digits_cnn", variant=v, width=0.125, num_classes=10)
        torch.manual_seed(0)
        net = build_model(ms)
        counts[v] = (sum(p.numel() for p in net.parameters()), count_parameters(ms)["total"])
        counts[v] += (tuple(n for n, _ in net.named_parameters()),)
        init[v] = to_neutral(net)
    assert counts["sr"] == counts["sr_uniform"] and counts["sr"][0] == counts["sr"][1]
    # the same seed draws the same tensors: sr and sr_uniform of a seed start from the same weights
    assert all(np.array_equal(a, init["sr_uniform"][k]) for k, a in init["sr"].items())
