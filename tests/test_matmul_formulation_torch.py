"""The "static conv + per-sample matmul" DRT step in PyTorch (issue 14): ``residual_agg`` with 1×1 bases.

``residual_agg`` computes ``(1+Λ)⊙(W_0*x)`` (the dense static conv) plus one per-sample ``(C_out, C_in)``
matmul of ``ΔW = Σ π_k Φ_k`` on the centre-tap samples of the input (:func:`centre_tap_input`);
``kernel_merge`` places each 1×1 ``Φ_k`` at the centre tap ``c = k // 2`` of a ``k×k`` kernel (zero-padded by
``c`` before and ``k − 1 − c`` after, so even kernels too) and runs one grouped per-sample conv. Checked here
in float64, to 1e-12 relative (``max|a−b| / max(max|a|, max|b|)``): the output and the gradients of
``Σ y⊙g`` w.r.t. the input, the routing input (block routing) and every parameter are the same in all three
formulations, for every kernel size 1–5 (even ones included), stride 1–3 and padding the spec accepts
(``0 … k−1``, and the default), variants ``sr``, ``comb``, ``sr_uniform`` and ``ca`` (no bases: the static
part only), layer and block routing. Also: the centre-tap sampler against a padded reference (and that it
reads ``x`` without padding where the centre tap never reaches the padding), ``auto`` measuring only
candidates, and the per-layer choice list of a ResNet-50.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import twin_check
from hypothesis import given
from hypothesis import strategies as st

from harness import autotune
from harness.drivers.equivalence import layer as eq
from harness.spec.layer import FORMULATIONS, DRTConvSpec
from impl_torch.layers import DRTConv2d, formulation_choices
from impl_torch.layers.drt_conv import centre_tap_input

pytestmark = pytest.mark.torch

torch.set_num_threads(1)

BOUND = 1e-12


def run_all(spec: DRTConvSpec, seed: int, batch: int, h: int, w: int, scale: int = 1) -> dict[str, dict]:
    """Every formulation of ``spec`` with the same weights (router spread N(0, 1)) on the same x, g, r."""
    torch.manual_seed(seed)
    ref = DRTConv2d(spec.replace(formulation="kernel_merge")).double()
    eq.spread_torch_router(ref, seed + 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, spec.in_channels, h, w))
    g = rng.standard_normal((batch, spec.out_channels, spec.output_size(h), spec.output_size(w)))
    rs = eq.route_shape(spec, batch, h, w, scale)
    r = None if rs is None else rng.standard_normal(rs)
    out = {}
    for f in FORMULATIONS:
        layer = DRTConv2d(spec.replace(formulation=f)).double()
        layer.load_state_dict(ref.state_dict())
        out[f] = eq.run_torch(layer, x, g, r)
    return out


def worst(spec: DRTConvSpec, seed: int, batch: int, h: int, w: int, scale: int = 1) -> float:
    """Largest relative difference of residual_agg and output_mix from kernel_merge over every compared
    quantity (asserting the same set of quantities, with every parameter's gradient among them)."""
    out = run_all(spec, seed, batch, h, w, scale)
    km = out["kernel_merge"]
    twin_check.expect_compared(spec, km)
    return twin_check.worst_of(km, (out[f] for f in ("residual_agg", "output_mix")))


GEOMETRIES = [(k, s, p) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3) for p in [None, *range(k)]]


@pytest.mark.parametrize("route", ["layer", "block"])
@pytest.mark.parametrize("variant", twin_check.MATMUL_VARIANTS)
def test_matmul_path_equals_kernel_merge_every_geometry(variant: str, route: str) -> None:
    """Every kernel size 1–5, stride 1–3, padding (default and 0…k−1): forward and every gradient to 1e-12."""
    errs = twin_check.geometry_errors(
        worst, GEOMETRIES, variant, route, seed=100, scale=lambda s: 2 if s > 1 else 1
    )
    bad = {g: e for g, e in errs.items() if not e <= BOUND}
    assert not bad, bad
    assert max(errs.values()) > 0 or variant == "ca"  # the formulations really differ in rounding


@st.composite
def matmul_cases(draw: st.DrawFn) -> tuple[DRTConvSpec, tuple[int, int, int, int]]:
    k = draw(st.integers(1, 5))
    route = draw(
        st.one_of(
            st.just({}),
            st.fixed_dictionaries({"route": st.just("block"), "route_channels": st.integers(1, 24)}),
        )
    )
    spec = DRTConvSpec(
        in_channels=draw(st.integers(1, 24)),
        out_channels=draw(st.integers(1, 24)),
        kernel_size=k,
        stride=draw(st.integers(1, 3)),
        padding=draw(st.one_of(st.none(), st.integers(0, k - 1))),
        variant=draw(st.sampled_from(twin_check.MATMUL_VARIANTS)),
        K=draw(st.integers(1, 6)),
        basis_kernel=1,
        min_hidden=draw(st.integers(1, 6)),
        **route,
    )
    lo = max(1, k - 2 * spec.padding)
    return spec, (
        draw(st.integers(1, 4)),
        draw(st.integers(lo, 17)),
        draw(st.integers(lo, 17)),
        draw(st.sampled_from([1, 2])),
    )


@given(matmul_cases(), st.integers(0, 2**30))
def test_matmul_path_equals_kernel_merge_random_shapes(case: tuple, seed: int) -> None:
    spec, (batch, h, w, scale) = case
    assert worst(spec, seed, batch, h, w, scale) <= BOUND


def test_resnet50_layer3_shape() -> None:
    """The issue's shape class (256→256 3×3, block routing on 1024 channels), stride 1 and 2, small batch."""
    for spec, size in twin_check.resnet50_layer3_cases():
        assert worst(spec, 7, batch=2, h=size, w=size, scale=spec.stride) <= BOUND


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_centre_tap_input_matches_padded_reference(k: int) -> None:
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    c, t = k // 2, k - 1 - k // 2
    for s in (1, 2, 3):
        for p in range(k):
            ho, wo = (9 + 2 * p - k) // s + 1, (8 + 2 * p - k) // s + 1
            xp = F.pad(x, (p, p, p, p))
            ref = xp[:, :, c : c + s * (ho - 1) + 1 : s, c : c + s * (wo - 1) + 1 : s]
            got = centre_tap_input(x, k, s, p)
            assert got.shape == (2, 3, ho, wo) and torch.equal(got, ref), (k, s, p)
            # the centre tap never reaches the padding: a view of x itself (no pad, no copy)
            if p <= min(c, t):
                assert got.untyped_storage().data_ptr() == x.untyped_storage().data_ptr(), (k, s, p)


def test_kernel_merge_places_the_basis_at_the_centre_tap() -> None:
    """The embedding the matmul path relies on: kernel_merge equals a conv with Φ at tap (k//2, k//2)."""
    for k in (2, 3, 4):
        spec = DRTConvSpec(2, 3, k, padding=k - 1, variant="sr_uniform", K=2, basis_kernel=1)
        layer = DRTConv2d(spec).double()
        x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
        w = layer.weight.detach().clone()
        w[:, :, k // 2, k // 2] += layer.bases.detach().mean(0)[:, :, 0, 0]
        torch.testing.assert_close(layer(x), F.conv2d(x, w, None, 1, k - 1), rtol=1e-13, atol=1e-13)


# ---- auto -------------------------------------------------------------------------------------------------
@pytest.fixture
def fast_cache(monkeypatch: pytest.MonkeyPatch, tmp_path):  # noqa: ANN201, ANN001
    yield from twin_check.fast_autotune_cache(monkeypatch, tmp_path)


@pytest.mark.parametrize("variant", ["ca", "sr"])
def test_torch_measure_times_only_candidates(fast_cache, variant: str) -> None:  # noqa: ANN001
    from impl_torch.layers.drt_conv import measure_formulations

    spec = DRTConvSpec(4, 4, variant=variant, K=2, formulation="auto")
    med = measure_formulations(spec, "cpu", 2, 5, 5)
    assert tuple(med) == autotune.candidates(spec)
    layer = DRTConv2d(spec)
    layer(torch.randn(2, 4, 5, 5))
    assert layer._formulation in autotune.candidates(spec)


def test_formulation_choices_resnet50(fast_cache, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """``formulation_choices`` lists every DRT conv of a ResNet-50 (the 16 conv2) with its shape key and what
    ``auto`` chose there; a fake calibration (the matmul path fastest) keeps it instant."""
    from harness.spec.model import ModelSpec
    from impl_torch.backbones import build_model
    from impl_torch.layers import drt_conv

    seen: list[tuple[str, ...]] = []

    def fake_measure(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
        seen.append(autotune.candidates(spec))
        return {"kernel_merge": 2.0, "residual_agg": 1.0, "output_mix": 3.0}

    monkeypatch.setattr(drt_conv, "measure_formulations", fake_measure)
    model = build_model(ModelSpec(arch="resnet50", num_classes=5, formulation="auto"))
    assert {c for _, _, c in formulation_choices(model)} == {autotune.UNRESOLVED}  # not run yet
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    rows = formulation_choices(model)
    assert len(rows) == 16 and all(c == "residual_agg" for _, _, c in rows)
    names = [n for n, _, _ in rows]
    assert names[0] == "features.layer1.0.conv2" and names[-1] == "features.layer4.2.conv2"
    by = dict((n, k) for n, k, _ in rows)
    assert by["features.layer3.1.conv2"] == "256>256 k3 s1 p1 sr K4 b1 r16 m4 route=block(1024)|2x2|B2"
    assert by["features.layer2.0.conv2"].startswith("128>128 k3 s2 p1 sr K4 b1 r16 m4 route=block(256)|8x8")
    assert len(seen) == len(set(by.values())) and all(c == tuple(FORMULATIONS[::-1]) for c in seen)
    table = autotune.format_choices(rows)
    assert "features.layer3.1.conv2" in table and table.endswith("residual_agg×16")
    fixed = build_model(ModelSpec(arch="resnet50", num_classes=5, formulation="kernel_merge"))
    fixed.eval()
    with torch.no_grad():
        fixed(torch.randn(2, 3, 32, 32))
    assert {c for _, _, c in formulation_choices(fixed)} == {"kernel_merge"}
