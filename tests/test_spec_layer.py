"""DRTConvSpec: defaults, derived quantities, JSON round trip, bad values rejected with the field named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import SpecError
from harness.spec.layer import FORMULATION_CHOICES, VARIANTS, DRTConvSpec


@st.composite
def specs(draw: st.DrawFn) -> DRTConvSpec:
    k = draw(st.integers(1, 15))
    return DRTConvSpec(
        in_channels=draw(st.integers(1, 4096)),
        out_channels=draw(st.integers(1, 4096)),
        kernel_size=k,
        stride=draw(st.integers(1, 8)),
        padding=draw(st.one_of(st.none(), st.integers(0, k - 1))),
        variant=draw(st.sampled_from(VARIANTS)),
        K=draw(st.integers(1, 64)),
        reduction=draw(st.integers(1, 64)),
        min_hidden=draw(st.integers(1, 64)),
        basis_kernel=draw(st.sampled_from([1, "full"])),
        formulation=draw(st.sampled_from(FORMULATION_CHOICES)),
        **draw(
            st.one_of(
                st.just({}),
                st.fixed_dictionaries({"route": st.just("block"), "route_channels": st.integers(1, 4096)}),
            )
        ),
    )


def test_defaults_and_derived() -> None:
    s = DRTConvSpec(64, 128)
    assert (s.kernel_size, s.stride, s.padding, s.variant, s.K) == (3, 1, 1, "sr", 4)
    assert s.hidden == 4 and DRTConvSpec(256, 8).hidden == 16
    assert s.branch_out == 4
    assert s.replace(variant="ca").branch_out == 128
    assert s.replace(variant="comb").branch_out == 132
    assert s.replace(variant="static").branch_out == 0 and not s.replace(variant="static").dynamic
    assert s.basis_size == 1 and s.replace(basis_kernel="full").basis_size == 3
    assert s.output_size(32) == 32 and s.replace(stride=2).output_size(32) == 16
    assert DRTConvSpec(3, 3, kernel_size=5, stride=2).output_size(33) == 17


@given(specs())
def test_json_round_trip(spec: DRTConvSpec) -> None:
    assert DRTConvSpec.from_json(spec.to_json()) == spec
    assert DRTConvSpec.from_dict(spec.to_dict()) == spec
    assert spec.output_size(40) == (40 + 2 * spec.padding - spec.kernel_size) // spec.stride + 1


BAD = [
    ("in_channels", 0),
    ("in_channels", 2.0),
    ("in_channels", True),
    ("out_channels", -1),
    ("kernel_size", 0),
    ("kernel_size", 16),
    ("stride", 0),
    ("padding", 3),
    ("padding", -1),
    ("variant", "dynamic"),
    ("K", 0),
    ("K", 65),
    ("reduction", 0),
    ("min_hidden", 0),
    ("basis_kernel", 3),
    ("basis_kernel", True),
    ("basis_kernel", "1"),
    ("formulation", "fast"),
    ("route", "conv"),
    ("route_channels", 0),
]


@pytest.mark.parametrize("field,value", BAD)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    kw = {"in_channels": 4, "out_channels": 4, field: value}
    with pytest.raises(SpecError) as e:
        DRTConvSpec(**kw)
    assert e.value.field == field
    assert field in str(e.value) and repr(value) in str(e.value)


def test_from_dict_unknown_and_missing_fields() -> None:
    with pytest.raises(SpecError, match="bogus"):
        DRTConvSpec.from_dict({"in_channels": 1, "out_channels": 1, "bogus": 1})
    with pytest.raises(SpecError, match="out_channels"):
        DRTConvSpec.from_dict({"in_channels": 1})


def test_route_fields() -> None:
    s = DRTConvSpec(64, 64)
    assert s.route == "layer" and s.route_channels is None and s.router_in == 64
    assert "route" not in s.to_dict() and "route_channels" not in s.to_dict()  # dicts as before the field
    b = s.replace(route="block", route_channels=256)
    assert b.router_in == 256 and b.hidden == 16 and s.hidden == 4  # max(256 // 16, 4) vs max(64 // 16, 4)
    assert b.to_dict()["route"] == "block" and b.to_dict()["route_channels"] == 256
    assert DRTConvSpec.from_json(b.to_json()) == b
    assert DRTConvSpec(8, 8, route="block").route_channels == 8  # default: the layer's own width
    assert DRTConvSpec(8, 8, route_channels=8).route_channels is None  # layer routing: C_in only
    with pytest.raises(SpecError) as e:
        DRTConvSpec(8, 8, route_channels=16)
    assert e.value.field == "route_channels"


def test_sr_uniform_is_sr_with_frozen_routing() -> None:
    """The capacity control has sr's structure (bases, router of K outputs) but no input-dependent
    coefficients; adding it leaves the existing variants (and their JSON) unchanged."""
    from harness.spec.layer import VARIANTS

    assert VARIANTS == ("static", "ca", "sr", "sr_uniform", "comb")
    sr = DRTConvSpec(64, 128, K=5, route="block", route_channels=256)
    u = sr.replace(variant="sr_uniform")
    assert u.dynamic and u.has_routing and not u.has_attention and u.uniform_routing
    assert (u.branch_out, u.hidden, u.router_in, u.basis_size) == (5, 16, 256, 1)
    assert (sr.branch_out, sr.hidden, sr.router_in, sr.basis_size) == (5, 16, 256, 1)
    assert not u.has_coefficients and sr.has_coefficients
    assert [v for v in VARIANTS if DRTConvSpec(4, 4, variant=v).has_coefficients] == ["ca", "sr", "comb"]
    assert not any(DRTConvSpec(4, 4, variant=v).uniform_routing for v in VARIANTS if v != "sr_uniform")
    assert DRTConvSpec.from_json(u.to_json()) == u
    d = sr.to_dict()
    assert d["variant"] == "sr" and u.to_dict() == {**d, "variant": "sr_uniform"}
