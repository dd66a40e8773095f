"""PyTorch backbones: torchvision names and numerics, parameter counts, DRT placement, init, heads."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from harness.spec.model import ARCHS, ModelSpec, count_parameters, drt_conv_paths
from impl_torch.backbones import build_model, is_drt_parameter, split_parameters
from impl_torch.layers import DRTConv2d

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", ["static", "sr", "comb"])
def test_parameter_count_matches_analytic(arch: str, variant: str) -> None:
    spec = ModelSpec(arch=arch, variant=variant, num_classes=7)
    model = build_model(spec)
    counts = count_parameters(spec)
    assert sum(p.numel() for p in model.parameters()) == counts["total"]
    static, drt = split_parameters(model)
    assert sum(p.numel() for p in drt) == counts["features_drt"]
    assert sum(p.numel() for p in static) == counts["features_static"] + counts["head"]


@pytest.mark.parametrize("width", [0.25, 0.5])
def test_narrow_digits_parameter_count(width: float) -> None:
    spec = ModelSpec(arch="digits_cnn", variant="comb", num_classes=10, width=width)
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(spec)["total"]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnet101"])
def test_static_names_equal_torchvision(arch: str) -> None:
    tv = getattr(torchvision.models, arch)().state_dict()
    for variant in ("static", "sr"):
        feats = build_model(ModelSpec(arch=arch, variant=variant)).features.state_dict()
        static = {k: v.shape for k, v in feats.items() if not is_drt_parameter(k)}
        assert list(static) == [k for k in tv if not k.startswith("fc.")]
        assert all(static[k] == tv[k].shape for k in static)
    n_tv = sum(v.numel() for k, v in getattr(torchvision.models, arch)().named_parameters())
    c = count_parameters(ModelSpec(arch=arch, variant="static"))
    assert c["features_static"] + c["torchvision_fc"] == n_tv


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_static_resnet_computes_torchvision(arch: str) -> None:
    torch.manual_seed(0)
    tv = getattr(torchvision.models, arch)().eval()
    tv.fc = nn.Identity()
    model = build_model(ModelSpec(arch=arch, variant="static")).eval()
    model.features.load_state_dict({k: v for k, v in tv.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), tv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_conv_is_a_drt_layer_and_placement(arch: str) -> None:
    spec = ModelSpec(arch=arch, variant="comb")
    model = build_model(spec)
    convs = {n: m for n, m in model.features.named_modules() if isinstance(m, nn.Conv2d | DRTConv2d)}
    assert all(isinstance(m, DRTConv2d) for m in convs.values())
    dynamic = [n for n, m in convs.items() if m.spec.dynamic]
    assert dynamic == drt_conv_paths(spec)
    for m in convs.values():
        assert (m.bases is not None) == m.spec.dynamic
        if not m.spec.dynamic:
            assert [k for k, _ in m.named_parameters()] == ["weight"]


def test_forward_shapes_and_stages() -> None:
    m = build_model(ModelSpec(arch="digits_cnn", variant="sr", num_classes=10)).eval()
    out = m.forward_stages(torch.randn(2, 3, 32, 32))
    assert list(out) == ["block1", "block2", "block3", "fc1", "fc2", "head"]
    assert (
        out["block2"].shape == (2, 64, 8, 8)
        and out["fc2"].shape == (2, 2048)
        and out["head"].shape == (2, 10)
    )
    r = build_model(ModelSpec(arch="resnet18", variant="sr", num_classes=5, head="mcd")).eval()
    out = r.forward_stages(torch.randn(2, 3, 64, 64))
    assert out["stem"].shape == (2, 64, 16, 16) and out["layer4"].shape == (2, 512, 2, 2)
    assert out["pool"].shape == (2, 512) and out["head"].shape == (2, 5)
    torch.testing.assert_close(
        r(torch.ones(1, 3, 64, 64)), r.forward_stages(torch.ones(1, 3, 64, 64))["head"]
    )


def test_initialisation() -> None:
    torch.manual_seed(0)
    m = build_model(ModelSpec(arch="resnet50", variant="sr", head="mcd", num_classes=345))
    w = m.features.layer3[0].conv2.weight
    std = (2.0 / (w.shape[0] * 9)) ** 0.5  # kaiming normal, fan_out, relu
    assert abs(w.std().item() / std - 1) < 0.05
    bn = m.features.layer3[0].bn2
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    h = m.head
    assert abs(h.fc1.weight.std().item() - 0.01) < 0.001 and abs(h.fc1.bias.std().item() - 0.01) < 0.003
    assert abs(h.bn1.weight.mean().item() - 1) < 0.003 and 0.007 < h.bn1.weight.std().item() < 0.013
    assert torch.all(h.bn1.bias == 0)
    lin = build_model(ModelSpec(arch="resnet18", num_classes=300)).head.fc
    assert abs(lin.weight.std().item() - 0.01) < 0.001 and torch.all(lin.bias == 0)


def test_mcd_head_dropout() -> None:
    m = build_model(ModelSpec(arch="resnet18", head="mcd", dropout=0.5, num_classes=3)).head
    assert isinstance(m.drop1, nn.Dropout) and m.drop1.p == 0.5
    f = torch.randn(8, 512)
    m.eval()
    torch.testing.assert_close(m(f), m(f))


def test_float64_build() -> None:
    m = build_model(ModelSpec(arch="digits_cnn", variant="comb", num_classes=10), dtype=torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert m(torch.randn(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64
