"""TensorFlow profiler on the Keras models vs the analytic counts (exact for the ops TF counts)."""

from __future__ import annotations

import os

import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":  # pragma: no cover
    pytest.skip("the TF profiler needs KERAS_BACKEND=tensorflow", allow_module_level=True)

from harness.drivers.flops.tf_counter import count_keras  # noqa: E402
from harness.flops.analytic import drt_layer, model_counts, tf_visible_macs  # noqa: E402
from harness.spec.layer import FORMULATIONS, DRTConvSpec  # noqa: E402
from harness.spec.model import ModelSpec  # noqa: E402
from impl_keras.backbones import build_model  # noqa: E402
from impl_keras.layers import DRTConv2D  # noqa: E402

pytestmark = pytest.mark.keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAST = (
    [("digits_cnn", 32, "static", "kernel_merge", None)]
    + [("digits_cnn", 32, "sr", f, None) for f in FORMULATIONS]
    + [("resnet18", 32, "comb", f, 1) for f in FORMULATIONS]
)
SLOW = [(a, 64, "sr", f, 1) for a in ("resnet50", "resnet101") for f in FORMULATIONS]


def _check(arch: str, size: int, variant: str, formulation: str, basis: object) -> None:
    ms = ModelSpec(arch=arch, variant=variant, formulation=formulation, basis_kernel=basis, num_classes=10)
    tc = count_keras(build_model(ms), (2, size, size, 3))
    mc = model_counts(ms, input_size=size)
    assert tc.dense_flops == 2 * tf_visible_macs(mc, 2)
    assert tc.profiler_total == tc.total_flops
    missed = 2 * mc.macs(2) - tc.dense_flops
    if variant != "static":
        assert missed > 0 and tc.uncounted.get("Einsum", 0) > 0  # einsum counts 0 in TF
    else:
        assert missed == 0


@pytest.mark.parametrize(("arch", "size", "variant", "formulation", "basis"), FAST)
def test_dense_ops_equal_analytic(
    arch: str, size: int, variant: str, formulation: str, basis: object
) -> None:
    _check(arch, size, variant, formulation, basis)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "size", "variant", "formulation", "basis"), SLOW)
def test_dense_ops_equal_analytic_big(
    arch: str, size: int, variant: str, formulation: str, basis: object
) -> None:
    _check(arch, size, variant, formulation, basis)


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_single_layer(formulation: str) -> None:
    spec = DRTConvSpec(16, 8, kernel_size=3, variant="sr", K=4, basis_kernel="full", formulation=formulation)
    layer = DRTConv2D(spec)
    inp = keras.Input((8, 8, 16), batch_size=3)
    model = keras.Model(inp, layer(inp))
    tc = count_keras(model, (3, 8, 8, 16))
    lc = drt_layer(spec, 8)
    einsum = lc.macs.get("mix", 0) + lc.macs.get("aggregation", 0)
    assert tc.dense_flops == 3 * 2 * (lc.total_macs - einsum)
