"""formulation="auto" in torch: a valid choice, cached, numerically equal to the fixed formulations."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from harness import autotune  # noqa: E402
from harness.spec.layer import FORMULATIONS, DRTConvSpec  # noqa: E402
from impl_torch.layers import DRTConv2d, resolve_formulation  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture
def fast_cache(monkeypatch: pytest.MonkeyPatch, tmp_path):  # noqa: ANN201, ANN001
    path = tmp_path / "autotune.json"
    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(path))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    monkeypatch.setattr(autotune, "WARMUP", 1)
    monkeypatch.setattr(autotune, "REPEATS", 3)
    autotune.clear_memory_cache()
    yield path
    autotune.clear_memory_cache()


def test_resolve_returns_valid_and_caches(fast_cache) -> None:  # noqa: ANN001
    spec = DRTConvSpec(8, 8, variant="comb", formulation="auto", basis_kernel="full")
    choice = resolve_formulation(spec, "cpu", (2, 8, 6, 6))  # harness.autotune with the torch measure
    assert choice in FORMULATIONS
    data = json.loads(fast_cache.read_text())
    (entry,) = data.values()
    assert entry["choice"] == choice and set(entry["medians_ms"]) == set(FORMULATIONS)
    assert next(iter(data)).startswith("torch|cpu:")


@pytest.mark.parametrize("variant", ["sr", "comb", "ca"])
def test_auto_layer_agrees_with_fixed(fast_cache, variant: str) -> None:  # noqa: ANN001
    spec = DRTConvSpec(
        6, 10, kernel_size=3, stride=2, variant=variant, K=3, basis_kernel=1, formulation="auto"
    )
    auto = DRTConv2d(spec).double()
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64)
    y = auto(x)
    assert auto._formulation in FORMULATIONS
    for f in FORMULATIONS:
        fixed = DRTConv2d(spec.replace(formulation=f)).double()
        fixed.load_state_dict(auto.state_dict())
        torch.testing.assert_close(fixed(x), y, rtol=1e-10, atol=1e-10)


def test_calibration_inside_flop_counter_is_not_counted(fast_cache) -> None:  # noqa: ANN001
    from harness.drivers.flops.torch_counter import count

    spec = DRTConvSpec(8, 8, variant="sr", basis_kernel=1, formulation="auto")
    layer = DRTConv2d(spec)
    x = torch.randn(2, 8, 6, 6)
    got = count(layer, x).total_flops  # resolves (calibrates) on this first call, inside the counter
    fixed = DRTConv2d(spec.replace(formulation=layer._formulation))
    assert got == count(fixed, x).total_flops
