"""The "static conv + per-sample matmul" DRT step (issue 14), framework-neutral half: ``harness.autotune``'s
candidate rule, its keys and the per-layer choice table.

With 1×1 bases the existing ``residual_agg`` formulation *is* that step (the static ``k×k`` conv plus one
per-sample ``(C_out, C_in)`` matmul of ``ΔW = Σ π_k Φ_k`` on the centre-tap samples of the input), so no new
formulation name exists; the numerical checks are in ``tests/test_matmul_formulation_{torch,keras,cross}.py``.
"""

from __future__ import annotations

import json

import pytest

from harness import autotune
from harness.spec.layer import FORMULATIONS, VARIANTS, DRTConvSpec


def _describe(device: str) -> tuple[str, str]:
    return "cpu:test", "v0"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("basis_kernel", [1, "full"])
def test_candidates_are_the_distinct_formulations(variant: str, basis_kernel: int | str) -> None:
    spec = DRTConvSpec(8, 8, variant=variant, basis_kernel=basis_kernel, formulation="auto")
    got = autotune.candidates(spec)
    assert set(got) <= set(FORMULATIONS) and got == tuple(f for f in autotune.PREFERENCE if f in got)
    if variant == "static":
        assert got == ("kernel_merge",)
    elif variant == "ca":  # no bases: output_mix and residual_agg run the same code
        assert got == ("kernel_merge", "residual_agg")
    else:  # sr, comb, sr_uniform: the 1×1 matmul path (residual_agg) is always a candidate
        assert got == ("kernel_merge", "residual_agg", "output_mix")


def test_choice_never_leaves_the_candidates(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """A ``ca`` layer: output_mix is the fastest timing offered but not a candidate, so it is not chosen;
    the residual_agg (matmul) timing wins among the candidates and is cached with the candidate list."""
    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    autotune.clear_memory_cache()

    def measure(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
        return {"output_mix": 0.1, "residual_agg": 1.0, "kernel_merge": 2.0}

    spec = DRTConvSpec(8, 8, variant="ca", formulation="auto")
    try:
        got = autotune.resolve_formulation(
            spec, "torch", "cpu", (2, 8, 6, 6), measure=measure, describe=_describe
        )
        assert got == "residual_agg"
        (entry,) = json.loads((tmp_path / "c.json").read_text()).values()
        assert entry["candidates"] == ["kernel_merge", "residual_agg"] and entry["choice"] == "residual_agg"
        # a cached choice outside the candidates (e.g. written by older code) is not trusted: re-measured
        key = autotune.cache_key(spec, "torch", "cpu", (2, 8, 6, 6), describe=_describe)
        autotune._write(tmp_path / "c.json", key, {"choice": "output_mix"})
        autotune.clear_memory_cache()
        assert (
            autotune.resolve_formulation(
                spec, "torch", "cpu", (2, 8, 6, 6), measure=measure, describe=_describe
            )
            == "residual_agg"
        )
    finally:
        autotune.clear_memory_cache()


def test_missing_candidate_timing_is_rejected_extra_is_ignored() -> None:
    ca = DRTConvSpec(8, 8, variant="ca")
    entry = autotune.calibrate(ca, "torch", measure=lambda *a: {"kernel_merge": 2.0, "residual_agg": 1.0})
    assert entry["choice"] == "residual_agg" and set(entry["medians_ms"]) == {"kernel_merge", "residual_agg"}
    with pytest.raises(ValueError, match="residual_agg"):
        autotune.calibrate(ca, "torch", measure=lambda *a: {"kernel_merge": 1.0, "output_mix": 1.0})
    # ties still go to the cheaper formulation in FLOPs
    assert autotune._choose(
        {"kernel_merge": 1.0, "residual_agg": 0.99}, ("kernel_merge", "residual_agg")
    ) == ("kernel_merge")


def test_shape_key_and_cache_key() -> None:
    layer = DRTConvSpec(256, 256, 3, variant="sr", basis_kernel=1, formulation="auto")
    block = layer.replace(route="block", route_channels=1024)
    k_layer = autotune.shape_key(layer, "torch", (8, 256, 14, 14))
    k_block = autotune.shape_key(block, "torch", (8, 256, 14, 14))
    assert k_layer == "256>256 k3 s1 p1 sr K4 b1 r16 m4|14x14|B8"
    assert k_block == "256>256 k3 s1 p1 sr K4 b1 r16 m4 route=block(1024)|14x14|B8"  # routing is in the key
    assert autotune.shape_key(layer, "keras", (8, 14, 14, 256)) == k_layer  # NHWC read as such
    assert autotune.shape_key(layer, "torch", None) == "256>256 k3 s1 p1 sr K4 b1 r16 m4|14x14|B8"  # default
    key = autotune.cache_key(block, "torch", "cpu", (8, 256, 14, 14), describe=_describe)
    assert key == f"torch|cpu:test|v0|{k_block}|rev{autotune.REVISION}"


def test_format_choices() -> None:
    rows = [
        (
            "features.layer1.0.conv2",
            "64>64 k3 s1 p1 sr K4 b1 r16 m4 route=block(64)|56x56|B8",
            "residual_agg",
        ),
        (
            "features.layer2.0.conv2",
            "128>128 k3 s2 p1 sr K4 b1 r16 m4 route=block(256)|56x56|B8",
            "kernel_merge",
        ),
        (
            "features.layer2.1.conv2",
            "128>128 k3 s1 p1 sr K4 b1 r16 m4 route=block(512)|28x28|B8",
            "residual_agg",
        ),
    ]
    text = autotune.format_choices(rows)
    assert text.splitlines()[0] == "| layer | shape key | formulation |"
    assert "| features.layer2.0.conv2 | 128>128 k3 s2" in text
    assert text.splitlines()[-1] == "kernel_merge×1, residual_agg×2"
    assert autotune.format_choices([]).splitlines()[-1] == "no DRT layer"
