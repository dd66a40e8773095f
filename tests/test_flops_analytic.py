"""Analytic FLOP/parameter counts (framework-neutral): hand-computed layers and whole-model anchors."""

from __future__ import annotations

import pytest

from harness.flops.analytic import drt_layer, model_counts, overhead_pct
from harness.spec.layer import FORMULATIONS, DRTConvSpec
from harness.spec.model import ARCHS, ModelSpec, count_parameters


def test_static_conv_by_hand() -> None:
    # 3x3 conv 4 -> 8 on 6x6, stride 1, padding 1: P = 36 outputs, 8*4*9 = 288 MACs each.
    lc = drt_layer(DRTConvSpec(4, 8, kernel_size=3, variant="static"), 6)
    assert lc.out_shape == (8, 6, 6)
    assert lc.macs == {"conv": 288 * 36}
    assert lc.total_macs == 10368 and lc.flops == 20736
    assert lc.params == 288 and lc.elementwise == {}


def test_strided_conv_by_hand() -> None:
    # 3x3, stride 2, padding 1 on 7x7 -> 4x4 = 16 positions; 2*3*9 = 54 MACs each.
    lc = drt_layer(DRTConvSpec(3, 2, kernel_size=3, stride=2, variant="static"), 7)
    assert lc.out_shape == (2, 4, 4) and lc.total_macs == 54 * 16


# One DRT layer by hand: C_in = 32, C_out = 16, k = 3, 8x8 input (P = 64), K = 4, reduction 16 -> hidden
# max(32 // 16, 4) = 4; sr: branch_out = 4.
SR = DRTConvSpec(32, 16, kernel_size=3, variant="sr", K=4, basis_kernel=1)
CONV = 16 * 32 * 9 * 64  # 294,912
BRANCH = 32 * 4 + 4 * 4  # fc1 + fc2 = 144


@pytest.mark.parametrize(
    ("formulation", "expected"),
    [
        # K extra 1x1 convs (4 * 16*32 * 64) + mixing sum_k pi_k y_k (4 * 16 * 64)
        ("output_mix", {"conv": CONV, "branch_fc": BRANCH, "extra_conv": 4 * 512 * 64, "mix": 4 * 16 * 64}),
        # aggregation 4 * 16*32 per sample + one per-sample 1x1 conv 16*32*64
        (
            "residual_agg",
            {"conv": CONV, "branch_fc": BRANCH, "aggregation": 4 * 512, "per_sample_conv": 512 * 64},
        ),
        # aggregation only; the per-sample 3x3 conv costs what the static one does
        ("kernel_merge", {"conv": CONV, "branch_fc": BRANCH, "aggregation": 4 * 512}),
    ],
)
def test_drt_layer_by_hand(formulation: str, expected: dict[str, int]) -> None:
    lc = drt_layer(SR.replace(formulation=formulation), 8)
    assert lc.macs == expected
    assert lc.flops == 2 * sum(expected.values())
    assert lc.params == 16 * 32 * 9 + 4 * 16 * 32 + BRANCH
    assert lc.elementwise["gap"] == 32 * 64 and lc.elementwise["softmax"] == 4


def test_drt_layer_full_basis_and_comb_by_hand() -> None:
    spec = DRTConvSpec(8, 8, kernel_size=3, variant="comb", K=2, basis_kernel="full", min_hidden=4)
    # hidden 4, branch_out K + C_out = 10; P = 16 (4x4)
    lc = drt_layer(spec.replace(formulation="residual_agg"), 4)
    assert lc.macs == {
        "conv": 8 * 8 * 9 * 16,
        "branch_fc": 8 * 4 + 4 * 10,
        "aggregation": 2 * 8 * 8 * 9,
        "per_sample_conv": 8 * 8 * 9 * 16,
    }
    assert lc.elementwise["sigmoid"] == 8 and lc.elementwise["scale"] == 8 * 16
    km = drt_layer(spec.replace(formulation="kernel_merge"), 4)
    assert km.elementwise["scale"] == 8 * 8 * 9  # (1+Λ) scales the kernel, not the output


def test_ca_has_no_bases() -> None:
    spec = DRTConvSpec(16, 16, variant="ca")
    counts = {f: drt_layer(spec.replace(formulation=f), 8).total_macs for f in FORMULATIONS}
    assert len(set(counts.values())) == 1  # only the branch differs from static


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", ["static", "ca", "sr", "sr_uniform", "comb"])
@pytest.mark.parametrize("head", ["linear", "mcd"])
def test_params_match_model_spec(arch: str, variant: str, head: str) -> None:
    ms = ModelSpec(arch=arch, variant=variant, head=head)
    assert model_counts(ms).params == count_parameters(ms)["total"]


@pytest.mark.parametrize(
    ("route", "output_mix_pct"), [(None, 21.8755), ("block", 21.8755), ("layer", 21.8503)]
)
def test_resnet101_anchors(route: str | None, output_mix_pct: float) -> None:
    """torchvision ResNet-101: 7.80 G MACs, 44,549,160 params; anchors.md §5: +1.70 G / +0.43 G MACs."""
    st = model_counts("resnet101", variant="static", num_classes=1000)
    assert st.params == 44_549_160
    assert st.macs() == 7_801_405_440
    over = {
        f: model_counts("resnet101", variant="sr", formulation=f, num_classes=1000, route=route).macs()
        - st.macs()
        for f in FORMULATIONS
    }
    assert over["output_mix"] == pytest.approx(1.70e9, rel=0.01)
    assert over["residual_agg"] == pytest.approx(0.43e9, rel=0.02)
    assert over["kernel_merge"] < 0.0015 * st.macs()  # 11.6 M (block) / 9.6 M (layer) of 7,801 M
    assert overhead_pct(st.macs(), st.macs() + over["output_mix"]) == pytest.approx(output_mix_pct, abs=1e-4)


def test_resnet101_block_routing_issue_arithmetic() -> None:
    """Issue 12: ResNet-101 sr, K=4, 1x1 bases, reduction 16, block routing (the release): branch FCs 2.12 M
    + aggregation 9.49 M MACs -> kernel_merge +0.149 % of 7.801 G (GAP adds are elementwise, excluded)."""
    mc = model_counts("resnet101", variant="sr", formulation="kernel_merge", num_classes=1000)
    kinds = mc.by_kind()
    # branch: sum over the 33 bottlenecks of inplanes*(inplanes//16) + (inplanes//16)*4
    branch = 0
    inplanes = 64
    for planes, n in ((64, 3), (128, 4), (256, 23), (512, 3)):
        for _ in range(n):
            h = inplanes // 16
            branch += inplanes * h + h * 4
            inplanes = planes * 4
    assert kinds["branch_fc"] == branch == 2_117_328
    assert kinds["aggregation"] == 4 * (3 * 64**2 + 4 * 128**2 + 23 * 256**2 + 3 * 512**2) == 9_486_336
    st = model_counts("resnet101", variant="static", num_classes=1000).macs()
    assert mc.macs() - st == 2_117_328 + 9_486_336
    assert round(overhead_pct(st, mc.macs()), 3) == 0.149
    # layer routing (the branch on conv2's own planes channels): 150,256 MACs, +0.124 %
    layer = model_counts(
        "resnet101", variant="sr", formulation="kernel_merge", num_classes=1000, route="layer"
    )
    assert layer.by_kind()["branch_fc"] == 150_256
    assert round(overhead_pct(st, layer.macs()), 3) == 0.124


def test_block_routing_gap_counts_the_block_input() -> None:
    """ResNet-18 layer2.0 (stride 2): conv2 routes on the 64×56×56 block input, not on its 128×28×28 input."""
    mc = model_counts("resnet18", variant="sr", formulation="kernel_merge")
    row = {lc.path: lc for lc in mc.layers}["features.layer2.0.conv2"]
    assert row.spec.route == "block" and row.spec.router_in == 64
    assert row.elementwise["gap"] == 64 * 56 * 56
    assert row.macs["branch_fc"] == 64 * 4 + 4 * 4


def test_resnet50_static_matches_torchvision() -> None:
    st = model_counts("resnet50", variant="static", num_classes=1000)
    assert st.params == 25_557_032 and st.macs() == 4_089_184_256


def test_batch_scales_linearly() -> None:
    mc = model_counts("digits_cnn", variant="sr", formulation="kernel_merge")
    assert mc.macs(7) == 7 * mc.macs() and mc.flops(3) == 6 * mc.macs()


def test_cli_analytic_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.flops.__main__ import main

    assert main(["--arch", "resnet101", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = {r["model"]: r for r in res["rows"]}
    assert rows["static"]["macs"] == 7_801_405_440 and rows["static"]["flops"] == 2 * 7_801_405_440
    assert rows["output_mix"]["overhead_pct"] == pytest.approx(21.8755, abs=1e-4)
    assert res["route"] == "block"
    assert round(rows["kernel_merge"]["overhead_pct"], 3) == 0.149
    assert rows["kernel_merge"]["by_kind"]["branch_fc"] == 2_117_328
    assert main(["--arch", "resnet101", "--json", "--route", "layer", "--formulation", "kernel_merge"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["route"] == "layer" and res["rows"][1]["by_kind"]["branch_fc"] == 150_256
    assert main(["--arch", "digits_cnn", "--per-layer", "--formulation", "kernel_merge"]) == 0
    text = capsys.readouterr().out
    assert "FLOPs = 2 × MACs" in text and "features.conv2" in text


# ---- sr_uniform (the capacity control): sr's parameters, sr's counts minus the (not run) branch -----------
@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("basis_kernel", [1, "full"])
@pytest.mark.parametrize("route", ["layer", "block"])
def test_sr_uniform_counts_are_sr_without_the_branch(
    formulation: str, basis_kernel: object, route: str
) -> None:
    sr = SR.replace(formulation=formulation, basis_kernel=basis_kernel)
    if route == "block":
        sr = sr.replace(route="block", route_channels=64)
    rh = (16, 16) if route == "block" else None
    a = drt_layer(sr, 8, route_hw=rh)
    u = drt_layer(sr.replace(variant="sr_uniform"), 8, route_hw=rh)
    assert u.params == a.params and u.op == a.op == "drt"
    assert u.macs == {k: v for k, v in a.macs.items() if k != "branch_fc"}
    assert u.elementwise == {k: v for k, v in a.elementwise.items() if k not in ("gap", "relu", "softmax")}
    assert a.total_macs - u.total_macs == sr.router_in * sr.hidden + sr.hidden * sr.K


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("route", [None, "layer"])
def test_sr_uniform_model_params_equal_sr(arch: str, route: str | None) -> None:
    kw = {"route": route} if route and arch != "digits_cnn" else {}
    sr, u = ModelSpec(arch=arch, variant="sr", **kw), ModelSpec(arch=arch, variant="sr_uniform", **kw)
    assert count_parameters(u) == count_parameters(sr)
    assert model_counts(u).params == model_counts(sr).params == count_parameters(sr)["total"]
    assert model_counts(u).macs() < model_counts(sr).macs()
