"""ModelSpec: validation, JSON round trip, conv layout / DRT placement and analytic parameter counts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import SpecError
from harness.spec.model import (
    ARCHS,
    HEADS,
    PLACEMENTS,
    ModelSpec,
    conv_specs,
    count_parameters,
    drt_conv_paths,
    stage_names,
    stage_of,
)

specs = st.builds(
    ModelSpec,
    arch=st.sampled_from(ARCHS),
    num_classes=st.integers(1, 400),
    variant=st.sampled_from(("static", "ca", "sr", "comb")),
    placement=st.sampled_from(PLACEMENTS),
    K=st.integers(1, 8),
    basis_kernel=st.sampled_from((None, 1, "full")),
    formulation=st.sampled_from(("output_mix", "residual_agg", "kernel_merge", "auto")),
    reduction=st.integers(1, 32),
    min_hidden=st.integers(1, 8),
    head=st.sampled_from(HEADS),
    head_hidden=st.integers(1, 2048),
    dropout=st.floats(0.0, 0.99),
    route=st.sampled_from((None, "layer")),
)


@given(specs)
def test_json_round_trip(spec: ModelSpec) -> None:
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(again.to_json()) == json.loads(spec.to_json())


def test_explicit_placement_round_trip() -> None:
    spec = ModelSpec(arch="resnet50", placement=["layer4.0.conv2", "layer4.2.conv2"])
    assert spec.placement == ("layer4.0.conv2", "layer4.2.conv2")
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert drt_conv_paths(spec) == ["layer4.0.conv2", "layer4.2.conv2"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("arch", "resnet34"),
        ("num_classes", 0),
        ("num_classes", True),
        ("variant", "dynamic"),
        ("placement", "everywhere"),
        ("placement", ["layer9.0.conv2"]),
        ("K", 0),
        ("basis_kernel", 3),
        ("formulation", "fast"),
        ("reduction", 0),
        ("head", "mlp"),
        ("head_hidden", 0),
        ("dropout", 1.0),
        ("dropout", "half"),
        ("width", 0),
        ("width", -0.5),
        ("width", True),
        ("width", "wide"),
    ],
)
def test_invalid_field_is_named(field: str, value: object) -> None:
    with pytest.raises(SpecError) as e:
        ModelSpec(**{field: value})
    assert e.value.field == field
    assert f"ModelSpec.{field}" in str(e.value)


def test_unknown_field_is_named() -> None:
    with pytest.raises(SpecError) as e:
        ModelSpec.from_dict({"arch": "resnet18", "depth": 18})
    assert e.value.field == "depth"


def test_basis_kernel_default_per_arch() -> None:
    assert ModelSpec(arch="digits_cnn").basis_kernel == "full"
    assert ModelSpec(arch="resnet101").basis_kernel == 1


@pytest.mark.parametrize(
    "arch, n_convs, n_drt",
    [("digits_cnn", 3, 3), ("resnet18", 20, 16), ("resnet50", 53, 16), ("resnet101", 104, 33)],
)
def test_default_placement(arch: str, n_convs: int, n_drt: int) -> None:
    spec = ModelSpec(arch=arch, variant="sr")
    convs = conv_specs(spec)
    assert len(convs) == n_convs
    dyn = [p for p, c in convs.items() if c.dynamic]
    assert dyn == drt_conv_paths(spec)
    assert len(dyn) == n_drt
    if arch in ("resnet50", "resnet101"):
        assert all(p.endswith(".conv2") and convs[p].kernel_size == 3 for p in dyn)
    assert not any(c.dynamic for c in conv_specs(spec.replace(variant="static")).values())
    assert not any(c.dynamic for c in conv_specs(spec.replace(placement="none")).values())
    assert all(c.dynamic for c in conv_specs(spec.replace(placement="all")).values())


def test_resnet_v15_stride_on_3x3_and_downsample() -> None:
    convs = conv_specs(ModelSpec(arch="resnet50", variant="static"))
    assert convs["conv1"].stride == 2 and convs["conv1"].kernel_size == 7 and convs["conv1"].padding == 3
    assert convs["layer2.0.conv1"].stride == 1
    assert convs["layer2.0.conv2"].stride == 2
    assert convs["layer2.0.downsample.0"].stride == 2
    assert convs["layer1.0.downsample.0"].stride == 1  # 64 -> 256 channels
    assert "layer1.1.downsample.0" not in convs
    r18 = conv_specs(ModelSpec(arch="resnet18", variant="static"))
    assert "layer1.0.downsample.0" not in r18 and r18["layer3.0.conv1"].stride == 2


def test_drt_layers_carry_the_model_fields() -> None:
    spec = ModelSpec(
        arch="resnet18",
        variant="comb",
        K=6,
        basis_kernel="full",
        reduction=8,
        formulation="output_mix",
        min_hidden=2,
    )
    c = conv_specs(spec)["layer3.1.conv2"]
    assert (c.variant, c.K, c.basis_kernel, c.reduction, c.formulation, c.min_hidden) == (
        "comb",
        6,
        "full",
        8,
        "output_mix",
        2,
    )


@pytest.mark.parametrize(
    "arch, torchvision_total",
    [("resnet18", 11_689_512), ("resnet50", 25_557_032), ("resnet101", 44_549_160)],
)
def test_static_counts_match_torchvision(arch: str, torchvision_total: int) -> None:
    c = count_parameters(ModelSpec(arch=arch, variant="static"))
    assert c["features_drt"] == 0
    assert c["features_static"] + c["torchvision_fc"] == torchvision_total


def test_drt_counts() -> None:
    static = count_parameters(ModelSpec(arch="resnet101", variant="static"))
    sr = count_parameters(ModelSpec(arch="resnet101", variant="sr"))
    assert sr["features_static"] == static["features_static"]
    # 33 bottleneck 3x3 convs, K=4 centre-tap bases (P*P each) + two router Linears on the block input
    # (inplanes channels, hidden inplanes // 16: the release's BottleneckKDRA).
    expected = 0
    inplanes = 64
    for planes, n in ((64, 3), (128, 4), (256, 23), (512, 3)):
        for _ in range(n):
            h = max(inplanes // 16, 4)
            expected += 4 * planes * planes + h * inplanes + 4 * h
            inplanes = 4 * planes
    assert sr["features_drt"] == expected == 11_603_664
    # layer routing: the branch on conv2's own input (planes channels)
    layer = count_parameters(ModelSpec(arch="resnet101", variant="sr", route="layer"))
    expected = 0
    for planes, n in ((64, 3), (128, 4), (256, 23), (512, 3)):
        h = max(planes // 16, 4)
        expected += n * (4 * planes * planes + h * planes + 4 * h)
    assert layer["features_drt"] == expected == 9_636_592
    digits = count_parameters(ModelSpec(arch="digits_cnn", variant="sr", num_classes=10))
    assert digits["head"] == 2048 * 10 + 10


def test_stages() -> None:
    assert stage_names(ModelSpec(arch="resnet18")) == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "pool",
        "head",
    ]
    assert stage_of("features.conv1.weight", "resnet18") == "stem"
    assert stage_of("features.layer3.1.conv2.bases", "resnet18") == "layer3"
    assert stage_of("head.fc.weight", "resnet18") == "head"
    assert stage_of("features.conv1.weight", "digits_cnn") == "block1"
    assert stage_of("features.bn2_fc.running_var", "digits_cnn") == "fc2"


def test_width_scales_the_digit_cnn_only() -> None:
    from harness.spec.model import digits_dims

    assert digits_dims(1.0) == ((64, 64, 128), (3072, 2048))
    assert digits_dims(0.25) == ((16, 16, 32), (768, 512))
    narrow = ModelSpec(arch="digits_cnn", variant="sr", num_classes=10, width=0.25)
    assert narrow.feature_dim == 512
    assert [c.out_channels for c in conv_specs(narrow).values()] == [16, 16, 32]
    assert (
        count_parameters(narrow)["features_static"]
        < count_parameters(narrow.replace(width=1.0))["features_static"] / 10
    )
    with pytest.raises(SpecError) as e:
        ModelSpec(arch="resnet18", width=0.5)
    assert e.value.field == "width" and "1.0 for ResNets" in str(e.value)


def test_route_default_per_arch_and_block_specs() -> None:
    """ResNets route every DRT conv of a block on the block input (the release); digits on the layer input."""
    assert ModelSpec(arch="resnet50").resolved_route == "block"
    assert ModelSpec(arch="digits_cnn").resolved_route == "layer"
    assert "route" not in ModelSpec(arch="digits_cnn").to_dict()  # unset: not written (job identities)
    assert "route" not in ModelSpec(arch="resnet101").to_dict()
    assert ModelSpec(arch="resnet18", route="layer").to_dict()["route"] == "layer"
    assert ModelSpec.from_json(ModelSpec(arch="resnet50", route="block").to_json()).route == "block"
    with pytest.raises(SpecError) as e:
        ModelSpec(arch="digits_cnn", route="block")
    assert e.value.field == "route"
    with pytest.raises(SpecError):
        ModelSpec(arch="resnet18", route="stage")
    r50 = conv_specs(ModelSpec(arch="resnet50", variant="sr"))
    # conv2 of every bottleneck: the block input (inplanes), hidden inplanes // 16
    assert (r50["layer1.0.conv2"].route, r50["layer1.0.conv2"].route_channels) == ("block", 64)
    assert r50["layer1.1.conv2"].route_channels == 256 and r50["layer1.1.conv2"].hidden == 16
    assert r50["layer2.0.conv2"].route_channels == 256 and r50["layer2.1.conv2"].route_channels == 512
    assert r50["layer2.0.conv2"].in_channels == 128
    assert r50["conv1"].route == "layer" and r50["layer1.0.conv1"].route == "layer"  # static convs
    r18 = conv_specs(ModelSpec(arch="resnet18", variant="comb"))
    assert r18["layer2.0.conv1"].route_channels == 64 and r18["layer2.0.conv2"].route_channels == 64
    assert r18["layer2.1.conv2"].route_channels == 128
    every = conv_specs(ModelSpec(arch="resnet50", variant="sr", placement="all"))
    assert every["conv1"].route == "layer"  # the stem is in no block
    assert every["layer2.0.downsample.0"].route_channels == 256 and every["layer2.0.conv3"].router_in == 256
    layer = conv_specs(ModelSpec(arch="resnet50", variant="sr", route="layer"))
    assert all(c.route == "layer" for c in layer.values())
    assert all(c.route == "layer" for c in conv_specs(ModelSpec(arch="digits_cnn")).values())
