"""torch.utils.flop_counter vs the analytic counts (forward: exact, every architecture and formulation)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.drivers.flops.torch_counter import count  # noqa: E402
from harness.flops.analytic import drt_layer, model_counts  # noqa: E402
from harness.spec.layer import FORMULATIONS, DRTConvSpec  # noqa: E402
from harness.spec.model import ModelSpec  # noqa: E402
from impl_torch.backbones import build_model  # noqa: E402
from impl_torch.layers import DRTConv2d  # noqa: E402

pytestmark = pytest.mark.torch

SIZES = {"digits_cnn": 32, "resnet18": 64, "resnet50": 64, "resnet101": 64}
CASES = [("static", "kernel_merge", None)] + [
    (v, f, bk)
    for v in ("ca", "sr", "comb")
    for f in FORMULATIONS
    for bk in ((None,) if v == "ca" else (1, "full"))
]


def _meta_count(ms: ModelSpec, size: int, batch: int = 2) -> int:
    with torch.device("meta"):
        model = build_model(ms).eval()
    return count(model, torch.empty(batch, 3, size, size, device="meta")).total_flops


#: ResNet-101 builds take ~3 s each on a loaded 2-core machine: only the paper's configuration by default.
PAPER = {("static", "kernel_merge", None)} | {("sr", f, 1) for f in FORMULATIONS}
PARAMS = [
    pytest.param(a, *c, marks=[pytest.mark.slow] if (a == "resnet101" and c not in PAPER) else [])
    for a in ("digits_cnn", "resnet18", "resnet50", "resnet101")
    for c in CASES
]


@pytest.mark.parametrize(("arch", "variant", "formulation", "basis"), PARAMS)
def test_forward_equals_analytic(arch: str, variant: str, formulation: str, basis: object) -> None:
    """Counter FLOPs == 2 × analytic MACs exactly (the counter sees every MAC component; no correction)."""
    ms = ModelSpec(arch=arch, variant=variant, formulation=formulation, basis_kernel=basis, num_classes=10)
    assert _meta_count(ms, SIZES[arch]) == 2 * model_counts(ms, input_size=SIZES[arch]).macs(2)


@pytest.mark.parametrize("arch", ["digits_cnn", "resnet18"])
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_real_tensors_equal_meta(arch: str, formulation: str) -> None:
    ms = ModelSpec(arch=arch, variant="comb", formulation=formulation, num_classes=10)
    model = build_model(ms).eval()
    real = count(model, torch.randn(2, 3, SIZES[arch], SIZES[arch])).total_flops
    assert real == _meta_count(ms, SIZES[arch]) == 2 * model_counts(ms, input_size=SIZES[arch]).macs(2)


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_single_layer_by_hand(formulation: str) -> None:
    spec = DRTConvSpec(32, 16, kernel_size=3, variant="sr", K=4, basis_kernel=1, formulation=formulation)
    layer = DRTConv2d(spec)
    got = count(layer, torch.randn(3, 32, 8, 8))
    assert got.total_flops == 3 * drt_layer(spec, 8).flops


def test_grouped_conv_backward_correction() -> None:
    """torch 2.14 over-counts a grouped conv's kernel gradient by `groups`; the corrected counter does not."""
    g, c, o, hw = 4, 8, 16, 10
    conv = torch.nn.Conv2d(g * c, g * o, 3, padding=1, groups=g, bias=False)
    x = torch.randn(1, g * c, hw, hw, requires_grad=True)
    fwd = 2 * g * o * c * 9 * hw * hw
    fixed = count(conv, x, backward=True)
    raw = count(conv, x, backward=True, corrected=False)
    assert fixed.by_op["convolution"] == fwd
    assert fixed.by_op["convolution_backward"] == 2 * fwd  # grad input + grad weight
    assert raw.by_op["convolution_backward"] == fwd + g * fwd  # the kernel-gradient term × groups


def test_kernel_merge_backward_matches_static_conv() -> None:
    """With the correction, the per-sample (grouped) conv of kernel_merge costs what the static conv costs."""
    b = 4
    spec = DRTConvSpec(16, 16, kernel_size=3, variant="sr", basis_kernel=1, formulation="kernel_merge")
    x = torch.randn(b, 16, 8, 8, requires_grad=True)
    dyn = count(DRTConv2d(spec), x, backward=True)
    st = count(DRTConv2d(spec.replace(variant="static")), x, backward=True)
    assert dyn.by_op["convolution_backward"] == st.by_op["convolution_backward"]
    raw = count(DRTConv2d(spec), x, backward=True, corrected=False)
    assert raw.by_op["convolution_backward"] > st.by_op["convolution_backward"]
