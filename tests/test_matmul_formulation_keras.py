"""The "static conv + per-sample matmul" DRT step in Keras (issue 14): ``residual_agg`` with 1×1 bases.

As ``tests/test_matmul_formulation_torch.py`` for :class:`impl_keras.layers.DRTConv2D` (NHWC, explicit
symmetric padding then 'VALID'): in float64 the output and the gradients of ``Σ y⊙g`` w.r.t. the input, the
routing input and every variable agree between ``residual_agg``, ``output_mix`` and ``kernel_merge`` to 1e-12
relative on the TensorFlow backend (Keras computes 64-bit matmul/einsum in 32-bit on its torch and JAX
backends: 1e-5 there), for kernel sizes 1–4 (even ones included), strides 1–2, every padding the spec
accepts, variants ``sr``, ``comb``, ``sr_uniform``, ``ca``, layer and block routing. Also: the centre-tap
samples are read from the unpadded input where the centre tap never reaches the padding (the TF/CPU speed-up
of the matmul path), ``auto`` times only candidates, and the per-layer choice list of a ResNet-50.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.frameworks import prepare_process

prepare_process()

import keras  # noqa: E402
import twin_check  # noqa: E402

from harness import autotune  # noqa: E402
from harness.drivers.equivalence import layer as eq  # noqa: E402
from harness.spec.layer import FORMULATIONS, DRTConvSpec  # noqa: E402
from impl_keras.layers import DRTConv2D, formulation_choices  # noqa: E402

pytestmark = pytest.mark.keras

BACKEND = keras.backend.backend()
BOUND = 1e-12 if BACKEND == "tensorflow" else 1e-5
GEOMETRIES = [(k, s, p) for k in (1, 2, 3, 4) for s in (1, 2) for p in [None, *range(k)]]


def worst(spec: DRTConvSpec, seed: int, batch: int, h: int, w: int, scale: int = 1) -> float:
    """Largest relative difference of residual_agg and output_mix from kernel_merge (same weights, router
    spread N(0, 1)) over the output and every gradient (inputs and variables, neutral layouts)."""
    ref = eq.keras_layer(spec.replace(formulation="kernel_merge"), "float64")
    ref.reset_parameters(seed)
    eq.spread_keras_router(ref, seed + 1)
    arrays = ref.to_neutral()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, spec.in_channels, h, w))
    g = rng.standard_normal((batch, spec.out_channels, spec.output_size(h), spec.output_size(w)))
    rs = eq.route_shape(spec, batch, h, w, scale)
    r = None if rs is None else rng.standard_normal(rs)
    km = eq.run_keras(ref, x, g, r)
    twin_check.expect_compared(spec, km)

    def run(f: str) -> dict[str, np.ndarray]:
        layer = eq.keras_layer(spec.replace(formulation=f), "float64")
        layer.from_neutral(arrays)
        return eq.run_keras(layer, x, g, r)

    return twin_check.worst_of(km, (run(f) for f in ("residual_agg", "output_mix")))


@pytest.mark.parametrize("route", ["layer", "block"])
@pytest.mark.parametrize("variant", twin_check.MATMUL_VARIANTS)
def test_matmul_path_equals_kernel_merge_every_geometry(variant: str, route: str) -> None:
    errs = twin_check.geometry_errors(worst, GEOMETRIES, variant, route, seed=200, scale=lambda s: s)
    bad = {g: e for g, e in errs.items() if not e <= BOUND}
    assert not bad, bad


def test_resnet50_layer3_shape_class() -> None:
    for spec, size in twin_check.resnet50_layer3_cases():
        assert worst(spec, 9, batch=2, h=size, w=size, scale=spec.stride) <= BOUND


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_centre_taps_read_the_unpadded_input(k: int) -> None:
    """``_centre_taps`` equals the padded reference for every stride and padding; where the centre tap never
    reaches the padding it is sliced from ``x`` (``x`` itself at stride 1 for a "same" odd kernel)."""
    rng = np.random.default_rng(k)
    x = keras.ops.convert_to_tensor(rng.standard_normal((2, 9, 8, 3)))
    c, t = k // 2, k - 1 - k // 2
    for s in (1, 2, 3):
        for p in range(k):
            layer = DRTConv2D(DRTConvSpec(3, 2, k, stride=s, padding=p, variant="sr", K=2), dtype="float64")
            xp = keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
            ho, wo = (9 + 2 * p - k) // s + 1, (8 + 2 * p - k) // s + 1
            ref = keras.ops.convert_to_numpy(xp)[
                :, c : c + s * (ho - 1) + 1 : s, c : c + s * (wo - 1) + 1 : s
            ]
            got = layer._centre_taps(xp, x)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), ref)
            if p == c == t and s == 1:
                assert got is x
            # poisoned padding: the result must not depend on xp where the tap never reaches the padding
            if p <= min(c, t):
                np.testing.assert_array_equal(
                    keras.ops.convert_to_numpy(layer._centre_taps(xp * 0.0, x)), ref
                )


# ---- auto -------------------------------------------------------------------------------------------------
@pytest.fixture
def fast_cache(monkeypatch: pytest.MonkeyPatch, tmp_path):  # noqa: ANN201, ANN001
    yield from twin_check.fast_autotune_cache(monkeypatch, tmp_path)


def test_keras_measure_times_only_candidates(fast_cache) -> None:  # noqa: ANN001
    from impl_keras.layers.drt_conv import measure_formulations

    spec = DRTConvSpec(4, 4, variant="ca", formulation="auto")
    assert tuple(measure_formulations(spec, "cpu", 2, 5, 5)) == ("kernel_merge", "residual_agg")
    layer = DRTConv2D(spec)
    layer(np.zeros((2, 5, 5, 4), "float32"))
    assert layer.formulation in autotune.candidates(spec)


def test_formulation_choices_resnet50(fast_cache, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Keras ResNet-50, ``auto`` with a fake calibration (the matmul path fastest): 16 rows, torch paths, keys
    from the build-time calibration shape (the backbones build with unknown spatial size: default size per
    C_in, batch 8)."""
    from harness.spec.model import ModelSpec
    from impl_keras.backbones import build_model
    from impl_keras.layers import drt_conv

    def fake_measure(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
        return {"kernel_merge": 2.0, "residual_agg": 1.0, "output_mix": 3.0}

    monkeypatch.setattr(drt_conv, "measure_formulations", fake_measure)
    model = build_model(ModelSpec(arch="resnet50", num_classes=5, formulation="auto"))
    rows = formulation_choices(model)
    assert len(rows) == 16 and all(c == "residual_agg" for _, _, c in rows)
    by = dict((n, k) for n, k, _ in rows)
    assert [n for n, _, _ in rows][0] == "features.layer1.0.conv2"
    assert by["features.layer3.1.conv2"] == "256>256 k3 s1 p1 sr K4 b1 r16 m4 route=block(1024)|14x14|B8"
    fixed = build_model(ModelSpec(arch="resnet50", num_classes=5, formulation="residual_agg"))
    assert {c for _, _, c in formulation_choices(fixed)} == {"residual_agg"}
    assert set(FORMULATIONS) >= {c for _, _, c in rows}
