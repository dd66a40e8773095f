"""PyTorch vs Keras: the DRT layer computes the same function after porting weights in both directions.

Outputs, coefficients, and the gradients of ``Σ y⊙g`` w.r.t. the input and every parameter agree to a max
relative difference ``max|a−b| / max(max|a|, max|b|)`` of 1e-10 (float64) and 1e-4 (float32), with the branch
on the layer input (``route="layer"``) or on a separate routing input (``route="block"``, then ``∂L/∂r`` too).
Layers are cached per (spec, dtype) and re-initialised for every example (cheap examples: the ``ci`` profile's
200 stay fast).
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.frameworks import prepare_process

prepare_process()

import keras  # noqa: E402
import torch  # noqa: E402

from harness.drivers.equivalence import layer as eq  # noqa: E402
from harness.equivalence.__main__ import main as cli_main  # noqa: E402
from harness.spec.layer import FORMULATION_CHOICES, FORMULATIONS, VARIANTS, DRTConvSpec  # noqa: E402

pytestmark = pytest.mark.cross

torch.set_num_threads(1)

#: The bounds (max relative difference). Keras computes 64-bit matmul/einsum in 32-bit on its torch and JAX
#: backends (JAX's x64-off rule), so float64 is held to 1e-10 on the TensorFlow backend (tox) only.
BOUNDS = {"float64": 1e-10 if keras.backend.backend() == "tensorflow" else 1e-5, "float32": 1e-4}


@functools.lru_cache(maxsize=16)
def cached_layers(spec: DRTConvSpec, dtype: str) -> tuple:
    return eq.torch_layer(spec, dtype), eq.keras_layer(spec, dtype)


@st.composite
def cases(draw: st.DrawFn) -> tuple[DRTConvSpec, tuple[int, int, int, int]]:
    k = draw(st.sampled_from([1, 3, 5]))
    route = draw(
        st.one_of(
            st.just({}),
            st.fixed_dictionaries({"route": st.just("block"), "route_channels": st.integers(1, 48)}),
        )
    )
    spec = DRTConvSpec(
        in_channels=draw(st.integers(1, 48)),
        out_channels=draw(st.integers(1, 48)),
        kernel_size=k,
        stride=draw(st.sampled_from([1, 2])),
        padding=draw(st.one_of(st.none(), st.integers(0, k - 1))),
        variant=draw(st.sampled_from(VARIANTS)),
        K=draw(st.integers(1, 8)),
        basis_kernel=draw(st.sampled_from([1, "full"])),
        formulation=draw(st.sampled_from(FORMULATIONS)),
        min_hidden=draw(st.integers(1, 8)),
        **route,
    )
    lo = max(1, k - 2 * spec.padding)
    scale = draw(st.sampled_from([1, 2]))  # routing input: the input's size, or twice it (strided conv2)
    return spec, (draw(st.integers(1, 5)), draw(st.integers(lo, 33)), draw(st.integers(lo, 33)), scale)


@given(cases(), st.sampled_from(["float64", "float32"]), st.integers(0, 2**30))
def test_torch_and_keras_agree_after_porting_both_ways(case: tuple, dtype: str, seed: int) -> None:
    spec, (batch, h, w, scale) = case
    t_layer, k_layer = cached_layers(spec, dtype)
    for i, direction in enumerate(eq.DIRECTIONS):
        diffs = eq.compare_layers(
            spec,
            dtype,
            direction,
            seed + i,
            batch=batch,
            height=h,
            width=w,
            t_layer=t_layer,
            k_layer=k_layer,
            bound=BOUNDS[dtype],
            route_scale=scale,
        )
        expected = {"output", "grad input", "grad weight"}
        expected |= {"grad route_input"} if spec.route == "block" else set()
        expected |= {"grad bases"} if spec.has_routing else set()
        expected |= {"pi"} if spec.has_routing and spec.has_coefficients else set()  # sr_uniform: none
        expected |= {"lam"} if spec.has_attention else set()
        expected |= {"grad router.fc1.weight", "grad router.fc2.weight"} if spec.dynamic else set()
        assert {d.what for d in diffs} == expected
        bad = [d for d in diffs if not d.ok]
        assert not bad, f"{spec} {dtype} {direction} x=({batch},{h},{w}): {bad}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_every_gradient_is_compared_and_nonzero(dtype: str, formulation: str) -> None:
    spec = DRTConvSpec(6, 7, stride=2, variant="comb", K=3, basis_kernel="full", formulation=formulation)
    t_layer, k_layer = cached_layers(spec, dtype)
    eq.compare_layers(
        spec, dtype, "torch->keras", 3, batch=3, height=9, width=8, t_layer=t_layer, k_layer=k_layer
    )
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 6, 9, 8)), rng.standard_normal((3, 7, 5, 4))
    out = eq.run_keras(k_layer, x, g)
    for name in (
        "grad input",
        "grad weight",
        "grad bases",
        "grad router.fc1.weight",
        "grad router.fc2.weight",
    ):
        assert np.abs(out[name]).max() > 0, name


@pytest.mark.parametrize("formulation", FORMULATION_CHOICES)
@pytest.mark.parametrize("variant", ["ca", "sr", "comb"])
def test_block_routing_every_formulation_float64(
    variant: str, formulation: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # noqa: ANN001
    """Block routing (the ResNet default): a 3×3 stride-2 conv2 routed on a 2× larger block input with more
    channels, every variant and formulation (``auto`` calibrated in each framework), float64, both ways."""
    from harness import autotune

    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    monkeypatch.setattr(autotune, "WARMUP", 1)
    monkeypatch.setattr(autotune, "REPEATS", 3)
    autotune.clear_memory_cache()
    spec = DRTConvSpec(
        6, 8, stride=2, variant=variant, K=3, formulation=formulation, route="block", route_channels=24
    )
    worst = 0.0
    try:
        for i, direction in enumerate(eq.DIRECTIONS):
            diffs = eq.compare_layers(
                spec, "float64", direction, 11 + i, batch=3, height=7, width=6, route_scale=2
            )
            assert "grad route_input" in {d.what for d in diffs}
            assert all(d.ok for d in diffs), [d for d in diffs if not d.ok]
            worst = max(worst, max(d.max_rel for d in diffs))
    finally:
        autotune.clear_memory_cache()
    assert worst <= BOUNDS["float64"]


@pytest.mark.parametrize("basis_kernel", [1, "full"])
@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("route", ["layer", "block"])
def test_sr_uniform_agrees_float64(route: str, formulation: str, basis_kernel: int | str) -> None:
    """The capacity control (π = 1/K): torch and Keras agree after porting both ways, float64, to 1e-12 (TF
    backend); the router and the routing input get no gradient in either framework (both compared as 0)."""
    kw = {"route": "block", "route_channels": 24} if route == "block" else {}
    spec = DRTConvSpec(
        6, 8, stride=2, variant="sr_uniform", K=3, basis_kernel=basis_kernel, formulation=formulation, **kw
    )
    bound = 1e-12 if keras.backend.backend() == "tensorflow" else BOUNDS["float64"]
    t_layer, k_layer = cached_layers(spec, "float64")
    for i, direction in enumerate(eq.DIRECTIONS):
        diffs = eq.compare_layers(
            spec,
            "float64",
            direction,
            21 + i,
            batch=3,
            height=7,
            width=6,
            t_layer=t_layer,
            k_layer=k_layer,
            bound=bound,
            route_scale=2,
        )
        by = {d.what: d for d in diffs}
        assert "pi" not in by and {"grad bases", "grad router.fc1.weight"} <= set(by)
        assert by["grad router.fc1.weight"].max_abs == 0 and by["grad router.fc2.weight"].max_abs == 0
        assert all(d.ok for d in diffs), [d for d in diffs if not d.ok]
    out = eq.run_keras(k_layer, *_inputs(spec))
    assert not np.abs(out["grad router.fc1.weight"]).any() and not np.abs(out["grad router.fc2.weight"]).any()
    assert np.abs(out["grad bases"]).max() > 0


def _inputs(spec: DRTConvSpec) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, spec.in_channels, 7, 6))
    g = rng.standard_normal((2, spec.out_channels, spec.output_size(7), spec.output_size(6)))
    rs = eq.route_shape(spec, 2, 7, 6, 2)
    return (x, g) if rs is None else (x, g, rng.standard_normal(rs))


def test_cli_layer_json_subset(capsys: pytest.CaptureFixture[str]) -> None:
    dtype = "float64" if keras.backend.backend() == "tensorflow" else "float32"
    argv = [
        "layer",
        "--variant",
        "comb",
        "--formulation",
        "kernel_merge",
        "--trials",
        "1",
        "--json",
        "--dtype",
        dtype,
    ]
    assert cli_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["max_rel"] <= BOUNDS[dtype] and report["dtype"] == dtype
    assert report["routes"] == ["layer", "block"]  # default: both
    assert {r["config"] for r in report["rows"]} == {
        f"comb/kernel_merge/b={b}{r}" for b in ("1", "full") for r in ("", "/block")
    }
    assert "max|a-b|" in report["relative_difference"]
    assert {r["what"] for r in report["rows"]} >= {
        "output",
        "grad input",
        "grad bases",
        "grad router.fc1.weight",
    }


def test_cli_layer_table_and_failure_exit(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["layer", "--variant", "sr", "--formulation", "output_mix", "--basis-kernel", "1", "--trials", "1"]
    if keras.backend.backend() != "tensorflow":
        argv += ["--bound", "1e-5"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "| config" in out and "sr/output_mix/b=1" in out and "grad bases" in out
    assert cli_main([*argv, "--dtype", "float32", "--bound", "0"]) == 1  # float32 cannot be exact


def test_cli_names_a_missing_framework(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import harness.frameworks as fw

    real = fw.available
    monkeypatch.setattr(fw, "available", lambda name: False if name == "keras" else real(name))
    assert cli_main(["layer", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "keras is not installed" in err and "pip install" in err


def test_keras_backend_is_exercised() -> None:
    assert keras.backend.backend() in ("tensorflow", "torch", "jax")
