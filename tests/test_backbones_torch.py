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


# ---- routing: the release's BottleneckKDRA (model/resnet_dra.py l. 192-249) ----------------------------
def _release_bottleneck(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The release's BottleneckKDRA forward written out with our block's tensors (eval mode): coefficients
    from GAP of the block input x (l. 224-225), 1x1 strided bases on conv1's output added to conv2 before bn2
    (l. 233-235)."""
    c2 = block.conv2
    s = c2.spec
    fc1, fc2 = c2.router.fc1.weight, c2.router.fc2.weight
    y = torch.softmax(torch.relu(x.mean(dim=(2, 3)) @ fc1.T) @ fc2.T, dim=1)  # (B, 4)
    out = torch.relu(block.bn1(torch.nn.functional.conv2d(x, block.conv1.weight)))
    dyres = sum(
        torch.nn.functional.conv2d(out, c2.bases[k], stride=s.stride) * y[:, k, None, None, None]
        for k in range(s.K)
    )
    out = dyres + torch.nn.functional.conv2d(out, c2.weight, stride=s.stride, padding=1)
    out = torch.relu(block.bn2(out))
    out = block.bn3(torch.nn.functional.conv2d(out, block.conv3.weight))
    residual = x if block.downsample is None else block.downsample[1](block.downsample[0](x))
    return torch.relu(out + residual)


@pytest.mark.parametrize("formulation", ["output_mix", "residual_agg", "kernel_merge"])
@pytest.mark.parametrize("path", ["layer1.0", "layer2.0", "layer3.1"])
def test_resnet50_block_routing_is_the_release_bottleneck(path: str, formulation: str) -> None:
    torch.manual_seed(0)
    m = build_model(ModelSpec(arch="resnet50", variant="sr", formulation=formulation, num_classes=3)).double()
    m.eval()
    li, bi = path.split(".")
    block = getattr(m.features, li)[int(bi)]
    inplanes = block.conv1.spec.in_channels
    assert block.conv2.spec.route == "block" and block.conv2.spec.route_channels == inplanes
    assert tuple(block.conv2.router.fc1.weight.shape) == (inplanes // 16, inplanes)  # release l. 208, 212
    with torch.no_grad():
        for p in block.conv2.router.parameters():
            p.normal_()  # coefficients far from uniform
        for bn in (block.bn1, block.bn2, block.bn3):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        x = torch.randn(2, inplanes, 12, 12, dtype=torch.float64)
        torch.testing.assert_close(block(x), _release_bottleneck(block, x), rtol=1e-10, atol=1e-10)
        # with layer routing conv2 would pool its own input (planes channels): a different function
        layer_route = block.conv2.spec.replace(route="layer", route_channels=None)
        assert layer_route.router_in == block.conv2.spec.in_channels != inplanes or path == "layer1.0"


def test_basic_block_routes_both_convs_on_the_block_input() -> None:
    """ResNet-18 (ours: the release has no BasicBlock DRT): conv2 of the strided layer2.0 pools the 64-channel
    un-strided block input, not its own 128-channel input."""
    m = build_model(ModelSpec(arch="resnet18", variant="sr", num_classes=3)).double().eval()
    block = m.features.layer2[0]
    seen: dict[str, tuple] = {}

    def hook(name: str):  # noqa: ANN202
        def fn(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            seen[name] = tuple(kwargs["route_input"].shape)

        return fn

    for name in ("conv1", "conv2"):
        getattr(block, name).register_forward_pre_hook(hook(name), with_kwargs=True)
    x = torch.randn(2, 64, 16, 16, dtype=torch.float64)
    block(x)
    assert seen == {"conv1": (2, 64, 16, 16), "conv2": (2, 64, 16, 16)}
    assert block.conv2.spec.router_in == 64 and block.conv2.spec.in_channels == 128
