"""formulation="auto" in Keras: a valid choice, numerically equal to the fixed formulations."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import twin_check  # noqa: E402

from harness.spec.layer import FORMULATIONS, DRTConvSpec  # noqa: E402
from impl_keras.layers import DRTConv2D  # noqa: E402

pytestmark = pytest.mark.keras


@pytest.fixture
def fast_cache(monkeypatch: pytest.MonkeyPatch, tmp_path):  # noqa: ANN201, ANN001
    yield from twin_check.fast_autotune_cache(monkeypatch, tmp_path)


@pytest.mark.parametrize("variant", ["sr", "comb"])
def test_auto_layer_agrees_with_fixed(fast_cache, variant: str) -> None:  # noqa: ANN001
    spec = DRTConvSpec(6, 8, kernel_size=3, variant=variant, K=3, basis_kernel="full", formulation="auto")
    auto = DRTConv2D(spec)
    x = np.random.default_rng(0).standard_normal((3, 7, 7, 6)).astype("float32")
    y = keras.ops.convert_to_numpy(auto(x))  # resolved in build(), calibrated on this input shape
    assert auto.formulation in FORMULATIONS
    assert fast_cache.exists() and "|7x7|B3" in fast_cache.read_text()
    for f in FORMULATIONS:
        fixed = DRTConv2D(spec.replace(formulation=f))
        fixed.build(x.shape)
        fixed.from_neutral(auto.to_neutral())
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fixed(x)), y, rtol=1e-4, atol=1e-4)
