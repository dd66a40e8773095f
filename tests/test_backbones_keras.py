"""Keras backbones and primitives: torch semantics (BatchNorm, max-pool padding), names, strict loading."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import WeightsError
from harness.spec.model import ARCHS, ModelSpec, conv_specs, count_parameters
from harness.spec.names import is_drt_tensor, is_drt_variable_path
from impl_keras.backbones import build_model, split_variables
from impl_keras.layers.basic import (
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    Sequential,
    ZeroPadding2d,
)

pytestmark = pytest.mark.keras  # collected only where Keras is installed (tests/conftest.py)


def test_batchnorm_torch_semantics_train_and_eval() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6))
    bn = BatchNorm2d(6, dtype="float64")
    w, b = rng.uniform(0.5, 1.5, 6), rng.standard_normal(6)
    rm, rv = rng.standard_normal(6), rng.uniform(0.5, 1.5, 6)
    bn.from_neutral(
        {"weight": w, "bias": b, "running_mean": rm, "running_var": rv, "num_batches_tracked": np.array(5)}
    )
    y = np.asarray(bn(x, training=True))
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * w + b, rtol=1e-12, atol=1e-12)
    n = 3 * 4 * 5
    state = bn.to_neutral()
    np.testing.assert_allclose(state["running_mean"], 0.9 * rm + 0.1 * mean, rtol=1e-13)
    np.testing.assert_allclose(
        state["running_var"], 0.9 * rv + 0.1 * var * n / (n - 1), rtol=1e-13
    )  # unbiased
    assert state["num_batches_tracked"] == 6 and state["num_batches_tracked"].dtype == np.int64
    y = np.asarray(bn(x, training=False))
    rm2, rv2 = state["running_mean"], state["running_var"]
    np.testing.assert_allclose(y, (x - rm2) / np.sqrt(rv2 + 1e-5) * w + b, rtol=1e-12, atol=1e-12)
    assert bn.eps == 1e-5 and bn.momentum == 0.1


def test_batchnorm1d() -> None:
    x = np.random.default_rng(1).standard_normal((4, 3))
    bn = BatchNorm1d(3, dtype="float64")
    y = np.asarray(bn(x, training=True))
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), atol=1e-12)


def test_maxpool_pads_with_minus_inf() -> None:
    x = -1.0 - np.random.default_rng(2).random((1, 5, 5, 2))  # all negative: zero padding would win
    y = np.asarray(MaxPool2d(3, 2, 1, dtype="float64")(x))
    assert y.shape == (1, 3, 3, 2)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    ref = np.array(
        [
            [[xp[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, c].max() for c in range(2)] for j in range(3)]
            for i in range(3)
        ]
    )
    np.testing.assert_array_equal(y[0], ref)
    assert np.all(y < 0)


def test_padding_pool_dropout() -> None:
    x = np.ones((2, 3, 3, 1))
    assert np.asarray(ZeroPadding2d(1, dtype="float64")(x)).shape == (2, 5, 5, 1)
    np.testing.assert_array_equal(np.asarray(GlobalAvgPool2d(dtype="float64")(x)), np.ones((2, 1)))
    d = Dropout(0.5, seed=1, dtype="float64")
    np.testing.assert_array_equal(np.asarray(d(x, training=False)), x)
    z = np.asarray(d(np.ones((1000,)), training=True))
    assert set(np.unique(z)) <= {0.0, 2.0} and 0.4 < (z > 0).mean() < 0.6
    np.testing.assert_array_equal(np.asarray(Dropout(0.0)(x, training=True)), x)


def test_linear_layout_and_strict_errors() -> None:
    lin = Linear(5, 3, dtype="float64")
    w, b = np.arange(15.0).reshape(3, 5), np.arange(3.0)
    lin.from_neutral({"weight": w, "bias": b})
    x = np.random.default_rng(3).standard_normal((2, 5))
    np.testing.assert_allclose(np.asarray(lin(x)), x @ w.T + b, rtol=1e-14)
    np.testing.assert_array_equal(lin.to_neutral()["weight"], w)
    with pytest.raises(WeightsError, match="bias") as e:
        lin.from_neutral({"weight": np.zeros((3, 4)), "extra": np.zeros(1)})
    assert "weight" in str(e.value) and "extra" in str(e.value)


def test_sequential_names() -> None:
    s = Sequential([Linear(4, 3), BatchNorm1d(3)])
    assert list(s.to_neutral()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]


def _expected_names(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Neutral names/shapes derived from the spec alone (torchvision names for ResNets)."""
    out: dict[str, tuple[int, ...]] = {}
    for path, c in conv_specs(spec).items():
        k, b = c.kernel_size, c.basis_size
        out[f"features.{path}.weight"] = (c.out_channels, c.in_channels, k, k)
        if c.has_routing:
            out[f"features.{path}.bases"] = (c.K, c.out_channels, c.in_channels, b, b)
        if c.dynamic:
            out[f"features.{path}.router.fc1.weight"] = (c.hidden, c.router_in)  # block input for ResNets
            out[f"features.{path}.router.fc2.weight"] = (c.branch_out, c.hidden)
        bn = (
            path[: -len("downsample.0")] + "downsample.1"
            if path.endswith("downsample.0")
            else (
                path[: -len("conv1")] + "bn1"
                if path.endswith("conv1")
                else path[: -len("conv2")] + "bn2"
                if path.endswith("conv2")
                else path[: -len("conv3")] + "bn3"
            )
        )
        for n in ("weight", "bias", "running_mean", "running_var"):
            out[f"features.{bn}.{n}"] = (c.out_channels,)
        out[f"features.{bn}.num_batches_tracked"] = ()
    return out


@pytest.mark.parametrize("arch", [*ARCHS, "digits_cnn@0.25", "resnet50:layer"])
def test_neutral_names_and_counts(arch: str) -> None:
    arch, _, route = arch.partition(":")
    arch, _, width = arch.partition("@")
    spec = ModelSpec(arch=arch, variant="sr", num_classes=7, width=float(width or 1.0), route=route or None)
    m = build_model(spec)
    shapes = m.neutral_shapes()
    expected = _expected_names(spec)
    feats = {k: v for k, v in shapes.items() if k.startswith("features.") and "fc" not in k.split(".")[1]}
    assert feats == expected
    n_params = sum(int(np.prod(v.shape)) for v in m.trainable_variables)
    counts = count_parameters(spec)
    assert n_params == counts["total"]
    static, drt = split_variables(m)
    assert sum(int(np.prod(v.shape)) for v in drt) == counts["features_drt"]
    assert len(static) + len(drt) == len(m.trainable_variables)
    # the shared name lists agree with the layer: neutral names and Keras variable paths
    assert sum(int(np.prod(s)) for k, s in shapes.items() if is_drt_tensor(k)) == counts["features_drt"]
    assert all(is_drt_variable_path(v.path) for v in drt)
    assert not any(is_drt_variable_path(v.path) for v in static)
    assert shapes["head.fc.weight"] == (7, spec.feature_dim)


def test_forward_shapes_and_neutral_round_trip() -> None:
    m = build_model(ModelSpec(arch="resnet18", variant="comb", num_classes=4, head="mcd"))
    out = m.forward_stages(np.zeros((2, 64, 64, 3), "float32"), training=False)
    assert tuple(out["stem"].shape) == (2, 16, 16, 64) and tuple(out["pool"].shape) == (2, 512)
    assert tuple(out["head"].shape) == (2, 4)
    arrays = m.to_neutral()
    m2 = build_model(ModelSpec(arch="resnet18", variant="comb", num_classes=4, head="mcd"))
    m2.from_neutral(arrays)
    again = m2.to_neutral()
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    d = build_model(ModelSpec(arch="digits_cnn", variant="sr", num_classes=10))
    assert tuple(d(np.zeros((2, 32, 32, 3), "float32")).shape) == (2, 10)


def test_strict_loading_lists_every_problem() -> None:
    m = build_model(ModelSpec(arch="digits_cnn", variant="static", num_classes=10))
    arrays = m.to_neutral()
    del arrays["features.bn2.running_var"]
    arrays["features.conv3.weight"] = np.zeros((128, 64, 3, 3), "float32")
    arrays["features.fc9.weight"] = np.zeros(1, "float32")
    with pytest.raises(WeightsError) as e:
        m.from_neutral(arrays)
    msg = str(e.value)
    assert (
        "features.bn2.running_var" in msg and "features.conv3.weight" in msg and "features.fc9.weight" in msg
    )


def test_keras_native_weights_file(tmp_path) -> None:
    spec = ModelSpec(arch="digits_cnn", variant="comb", num_classes=10)
    m = build_model(spec)
    path = tmp_path / "m.weights.h5"
    m.save_weights(str(path))
    m2 = build_model(spec)
    m2.load_weights(str(path))
    a, b = m.to_neutral(), m2.to_neutral()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_float64_build() -> None:
    m = build_model(ModelSpec(arch="resnet18", variant="sr", num_classes=2), dtype="float64")
    assert all(v.dtype == "float64" for v in m.trainable_variables)
    out = m.forward_stages(np.zeros((1, 64, 64, 3)), training=False)
    assert out["stem"].dtype == "float64" and out["head"].dtype == "float64"
