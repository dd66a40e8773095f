"""DRTConv2D (Keras): variables, a numpy reference for every formulation, plain-conv special cases, a known
answer, get_config/from_config, tf.function training, the per-backend conv helper, neutral weights."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.frameworks import prepare_process

prepare_process()

import keras  # noqa: E402

from harness.errors import WeightsError  # noqa: E402
from harness.spec.layer import FORMULATIONS, VARIANTS, DRTConvSpec  # noqa: E402
from impl_keras import conv_backend  # noqa: E402
from impl_keras.layers import DRTConv2D  # noqa: E402
from impl_keras.weights import from_neutral, to_neutral  # noqa: E402

pytestmark = pytest.mark.keras

BACKEND = keras.backend.backend()
tf_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow backend only")
#: float64 tolerance: Keras computes 64-bit matmul/einsum in 32-bit on its torch and JAX backends.
F64 = 1e-10 if BACKEND == "tensorflow" else 1e-5


# ---- a numpy reference (neutral layouts: OIHW, Linear (out, in)) ----------------------------------
def np_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Plain convolution by hand: x (B, C, H, W), w (O, C, kh, kw) → (B, O, Ho, Wo)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[-2:]
    ho, wo = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for a in range(kh):
        for c in range(kw):
            tap = xp[:, :, a : a + stride * (ho - 1) + 1 : stride, c : c + stride * (wo - 1) + 1 : stride]
            y += np.einsum("bihw,oi->bohw", tap, w[:, :, a, c])
    return y


def np_drt(
    spec: DRTConvSpec, arrays: dict[str, np.ndarray], x: np.ndarray, r: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """The layer by its formula: W(z) = (1+Λ)W0 + Σ π_k Φ_k per sample (1×1 bases as the centre tap); the
    branch pools ``z`` = ``r`` (block routing) or ``x``."""
    w0 = arrays["weight"]
    if not spec.dynamic:
        return np_conv(x, w0, spec.stride, spec.padding), {}
    z = x if r is None else r
    logits = (
        np.maximum(z.mean(axis=(2, 3)) @ arrays["router.fc1.weight"].T, 0) @ arrays["router.fc2.weight"].T
    )
    coeffs = {}
    if spec.uniform_routing:  # sr_uniform: π = 1/K, not reported as a coefficient
        pi = np.full((x.shape[0], spec.K), 1.0 / spec.K)
    elif spec.has_routing:
        e = np.exp(logits[:, : spec.K] - logits[:, : spec.K].max(1, keepdims=True))
        coeffs["pi"] = e / e.sum(1, keepdims=True)
    if spec.has_attention:
        coeffs["lam"] = 1 / (1 + np.exp(-logits[:, spec.K if spec.has_routing else 0 :]))
    ys = []
    if "pi" in coeffs:
        pi = coeffs["pi"]
    for b in range(x.shape[0]):
        w = w0 * (1 + coeffs["lam"][b])[:, None, None, None] if "lam" in coeffs else w0.copy()
        if spec.has_routing:
            d = np.einsum("k,koihw->oihw", pi[b], arrays["bases"])
            if spec.basis_kernel == "full":
                w = w + d
            else:
                c = spec.kernel_size // 2
                w[:, :, c, c] += d[:, :, 0, 0]
        ys.append(np_conv(x[b : b + 1], w, spec.stride, spec.padding))
    return np.concatenate(ys), coeffs


def randomise(layer: DRTConv2D, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random neutral weights (router N(0,1) so that the coefficients are far from uniform), loaded."""
    arrays = {
        k: rng.standard_normal(v) * (1.0 if "router" in k else 0.5) for k, v in layer.neutral_shapes().items()
    }
    layer.from_neutral(arrays)
    return arrays


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(y: object) -> np.ndarray:
    return keras.ops.convert_to_numpy(y).transpose(0, 3, 1, 2)


@functools.lru_cache(maxsize=16)
def cached_layer(spec: DRTConvSpec, dtype: str) -> DRTConv2D:
    layer = DRTConv2D(spec, dtype=dtype)
    layer.build((None, None, None, spec.in_channels))
    return layer


@st.composite
def cases(draw: st.DrawFn, max_channels: int = 48, max_size: int = 33) -> tuple[DRTConvSpec, tuple]:
    k = draw(st.sampled_from([1, 3, 5]))
    spec = DRTConvSpec(
        in_channels=draw(st.integers(1, max_channels)),
        out_channels=draw(st.integers(1, max_channels)),
        kernel_size=k,
        stride=draw(st.sampled_from([1, 2])),
        padding=draw(st.one_of(st.none(), st.integers(0, k - 1))),
        variant=draw(st.sampled_from(VARIANTS)),
        K=draw(st.integers(1, 8)),
        basis_kernel=draw(st.sampled_from([1, "full"])),
        formulation="output_mix",
        min_hidden=draw(st.integers(1, 8)),
    )
    lo = max(1, k - 2 * spec.padding)
    shape = (
        draw(st.integers(1, 5)),
        spec.in_channels,
        draw(st.integers(lo, max_size)),
        draw(st.integers(lo, max_size)),
    )
    return spec, shape


# ---- structure ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_variables_and_neutral_shapes(variant: str) -> None:
    spec = DRTConvSpec(32, 24, variant=variant, K=3, basis_kernel="full")
    layer = cached_layer(spec, "float32")
    shapes = {v.name: tuple(v.shape) for v in layer.weights}
    expected = {"kernel": (3, 3, 32, 24)}
    if spec.has_routing:
        expected["bases"] = (3, 3, 3, 32, 24)
    if spec.dynamic:
        expected |= {"router_fc1": (32, 4), "router_fc2": (4, spec.branch_out)}
    assert shapes == expected
    assert {k: v.shape for k, v in layer.to_neutral().items()} == layer.neutral_shapes()


def test_initialisation_statistics() -> None:
    keras.utils.set_random_seed(0)
    spec = DRTConvSpec(256, 128, variant="comb", K=8, basis_kernel="full", reduction=4)
    layer = DRTConv2D(spec)
    layer.build((None, 8, 8, 256))
    std0 = math.sqrt(2 / (128 * 9))
    for var, std in (
        (layer.kernel, std0),
        (layer.bases, std0),
        (layer.router_fc1, 0.01),
        (layer.router_fc2, 0.01),
    ):
        assert abs(np.std(keras.ops.convert_to_numpy(var)) / std - 1) < 0.05, var.name
    layer.reset_parameters(seed=1)
    assert abs(np.std(keras.ops.convert_to_numpy(layer.bases)) / std0 - 1) < 0.05


def test_wrong_channel_count_rejected() -> None:
    with pytest.raises(ValueError, match="input channels"):
        DRTConv2D(DRTConvSpec(3, 4))(np.zeros((1, 5, 5, 2), "float32"))


# ---- every formulation equals the formula (numpy), and they agree with each other -----------------
@given(cases(), st.integers(0, 2**31 - 1))
def test_formulations_match_numpy_reference(case: tuple, seed: int) -> None:
    spec, shape = case
    rng = np.random.default_rng(seed)
    layer = cached_layer(spec, "float64")
    arrays = randomise(layer, rng)
    x = rng.standard_normal(shape)
    ref, coeffs = np_drt(spec, arrays, x)
    outs = []
    for form in FORMULATIONS:
        layer.formulation = form if spec.dynamic else "static"
        y = nchw(layer(nhwc(x)))
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() <= F64 * max(np.abs(ref).max(), 1e-300), form
        for k, v in coeffs.items():
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(layer.last_coefficients[k]), v, rtol=100 * F64, atol=F64
            )
        outs.append(y)
    scale = max(np.abs(outs[0]).max(), 1e-300)
    assert max(np.abs(o - outs[0]).max() for o in outs) <= F64 * scale


# ---- special cases equal a plain (hand) convolution -----------------------------------------------
@given(cases(max_channels=12, max_size=13), st.integers(0, 2**31 - 1))
def test_static_and_zero_bases_are_plain_conv(case: tuple, seed: int) -> None:
    spec, shape = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    static = cached_layer(spec.replace(variant="static"), "float64")
    w0 = randomise(static, rng)["weight"]
    plain = np_conv(x, w0, spec.stride, spec.padding)
    np.testing.assert_allclose(nchw(static(nhwc(x))), plain, rtol=10 * F64, atol=10 * F64)
    dyn = cached_layer(spec.replace(variant="sr", formulation="output_mix"), "float64")
    arrays = randomise(dyn, rng)
    dyn.from_neutral({**arrays, "weight": w0, "bases": np.zeros_like(arrays["bases"])})
    for form in FORMULATIONS:
        dyn.formulation = form
        np.testing.assert_allclose(nchw(dyn(nhwc(x))), plain, rtol=10 * F64, atol=10 * F64)


# ---- known answer (the same hand computation as in test_layer_torch) ------------------------------
KA_X = np.array([1.0, -2.0])
KA_FC1 = np.array([[0.5, -0.25], [0.25, -0.5]])
KA_FC2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.4, 0.0], [0.0, -0.8]])
KA_W0C = np.array([[1.0, 2.0], [3.0, 4.0]])
KA_PHI = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
# π = [0.4378234991, 0.5621765009], Λ = [0.5986876601, 0.2689414214], y = W(x)·x:
KA_Y = np.array([-5.482592483, -6.658177606])


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("basis_kernel", [1, "full"])
def test_known_answer(basis_kernel: int | str, formulation: str) -> None:
    spec = DRTConvSpec(
        2, 2, variant="comb", K=2, min_hidden=2, basis_kernel=basis_kernel, formulation=formulation
    )
    layer = DRTConv2D(spec, dtype="float64")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((2, 2, 3, 3))
    w0[:, :, 1, 1] = KA_W0C
    bases = KA_PHI[:, :, :, None, None]
    if basis_kernel == "full":
        bases = rng.standard_normal((2, 2, 2, 3, 3))
        bases[:, :, :, 1, 1] = KA_PHI
    layer.from_neutral(
        {"weight": w0, "bases": bases, "router.fc1.weight": KA_FC1, "router.fc2.weight": KA_FC2}
    )
    y = keras.ops.convert_to_numpy(layer(KA_X.reshape(1, 1, 1, 2)))
    np.testing.assert_allclose(y.reshape(2), KA_Y, atol=1e-8)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.last_coefficients["pi"])[0], [0.4378234991, 0.5621765009]
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.last_coefficients["lam"])[0], [0.5986876601, 0.2689414214]
    )


# ---- config round trip ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_get_config_from_config_round_trip(variant: str) -> None:
    spec = DRTConvSpec(4, 6, stride=2, variant=variant, K=2, basis_kernel="full", formulation="residual_agg")
    layer = DRTConv2D(spec, dtype="float64", name="drt")
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 4))
    y = keras.ops.convert_to_numpy(layer(x))
    config = layer.get_config()
    assert config["spec"] == spec.to_dict()
    clone = DRTConv2D.from_config(config)
    assert clone.spec == spec and clone.name == "drt" and clone.dtype_policy.name == "float64"
    clone.build((None, None, None, 4))
    from_neutral(clone, to_neutral(layer))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), y)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(again, DRTConv2D) and again.spec == spec


def test_inside_a_functional_model_with_unknown_sizes() -> None:
    spec = DRTConvSpec(3, 5, stride=2, variant="comb", K=2, formulation="kernel_merge")
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, DRTConv2D(spec)(inp))
    y = model(np.zeros((2, 9, 8, 3), "float32"))
    assert tuple(y.shape) == (2, 5, 4, 5)  # NHWC: H 9 → 5, W 8 → 4
    assert model.output.shape[-1] == 5


# ---- training in float32: eager and tf.function agree, every variable gets a gradient -------------
@tf_only
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_float32_gradients_eager_and_tf_function(formulation: str) -> None:
    import tensorflow as tf

    spec = DRTConvSpec(8, 8, stride=2, variant="comb", K=3, basis_kernel="full", formulation=formulation)
    layer = DRTConv2D(spec)
    x = tf.constant(np.random.default_rng(1).standard_normal((4, 10, 10, 8)).astype("float32"))
    layer(x)

    def step(x: tf.Tensor) -> list:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    eager = step(x)
    traced = tf.function(step, jit_compile=False)(x)
    assert len(eager) == 5 and all(g is not None for g in eager)
    for a, b in zip(eager, traced):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
        assert np.abs(a.numpy()).max() > 0
    assert layer.supports_jit == (formulation == "output_mix")


# ---- the per-backend conv helper ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("stride", [1, 2])
def test_per_sample_conv_matches_per_sample_loop(dtype: str, stride: int) -> None:
    rng = np.random.default_rng(stride)
    x = keras.ops.convert_to_tensor(rng.standard_normal((3, 9, 8, 4)).astype(dtype))
    w = keras.ops.convert_to_tensor(rng.standard_normal((3, 3, 3, 4, 5)).astype(dtype))
    g = keras.ops.convert_to_tensor(
        rng.standard_normal((3, (9 - 3) // stride + 1, (8 - 3) // stride + 1, 5)).astype(dtype)
    )

    def grouped(x: object, w: object) -> object:
        return conv_backend.per_sample_conv2d(x, w, stride)

    def loop(x: object, w: object) -> object:
        return keras.ops.concatenate(
            [conv_backend.conv2d(x[b : b + 1], w[b], stride) for b in range(3)], axis=0
        )

    tol = 1e-12 if dtype == "float64" else 1e-4
    results = []
    for fn in (grouped, loop):
        results.append(_value_and_grads(fn, x, w, g))
    for a, b in zip(*results):
        scale = np.abs(b).max()
        assert np.abs(a - b).max() <= tol * scale


def _value_and_grads(fn: object, x: object, w: object, g: object) -> list[np.ndarray]:
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = fn(x, w)
            loss = tf.reduce_sum(y * g)
        gx, gw = tape.gradient(loss, [x, w])
        return [y.numpy(), gx.numpy(), gw.numpy()]
    if BACKEND == "torch":
        import torch

        x, w = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
        y = fn(x, w)
        gx, gw = torch.autograd.grad((y * g).sum(), [x, w])
        return [y.detach().cpu().numpy(), gx.cpu().numpy(), gw.cpu().numpy()]
    pytest.skip(f"no gradient helper for backend {BACKEND}")


# ---- neutral weights ------------------------------------------------------------------------------
def test_neutral_round_trip_strict_errors_and_container_prefixes() -> None:
    spec = DRTConvSpec(5, 6, variant="comb", K=3, basis_kernel="full")
    a, b = DRTConv2D(spec), DRTConv2D(spec)
    a.build((None, None, None, 5))
    arrays = to_neutral(a)
    assert {k: v.shape for k, v in arrays.items()} == {
        "weight": (6, 5, 3, 3),
        "bases": (3, 6, 5, 3, 3),
        "router.fc1.weight": (4, 5),
        "router.fc2.weight": (9, 4),
    }
    from_neutral(b, arrays)
    for k, v in to_neutral(b).items():
        np.testing.assert_array_equal(v, arrays[k])
    bad = {**arrays, "extra.weight": np.zeros(1), "router.fc1.weight": np.zeros((1, 1))}
    del bad["bases"]
    with pytest.raises(WeightsError) as e:
        from_neutral(b, bad)
    assert all(n in str(e.value) for n in ("bases", "extra.weight", "router.fc1.weight"))

    seq = keras.Sequential(
        [keras.Input((None, None, 5)), DRTConv2D(spec), DRTConv2D(DRTConvSpec(6, 2, variant="static"))]
    )
    names = to_neutral(seq)
    assert set(names) == {"0.weight", "0.bases", "0.router.fc1.weight", "0.router.fc2.weight", "1.weight"}
    from_neutral(seq, names)
    with pytest.raises(WeightsError, match="2.weight"):
        from_neutral(seq, {**names, "2.weight": np.zeros(1)})


def test_auto_formulation_resolved_at_build(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DRTConvSpec(3, 4, variant="sr", formulation="auto")
    monkeypatch.setenv("DRT_AUTOTUNE", "residual_agg")  # harness.autotune's override: no calibration run
    layer = DRTConv2D(spec)
    assert layer.formulation is None
    layer(np.zeros((2, 5, 5, 3), "float32"))
    assert layer.formulation == "residual_agg"


# ---- block routing: the branch reads a separate routing input (the residual block's input) -----------------
@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("variant", ["ca", "sr", "comb"])
def test_block_routing_pools_the_route_input(variant: str, formulation: str) -> None:
    spec = DRTConvSpec(
        5, 6, stride=2, variant=variant, K=3, formulation=formulation, route="block", route_channels=11
    )
    layer = cached_layer(spec, "float64")
    assert tuple(layer.router_fc1.shape) == (11, spec.hidden)
    assert layer.neutral_shapes()["router.fc1.weight"] == (spec.hidden, 11)
    rng = np.random.default_rng(1)
    arrays = randomise(layer, rng)
    x = rng.standard_normal((3, 5, 9, 9))
    r = rng.standard_normal((3, 11, 18, 18))  # e.g. the block input of a strided conv2
    y = layer(nhwc(x), route_input=nhwc(r))
    want, coeffs = np_drt(spec, arrays, x, r)
    np.testing.assert_allclose(nchw(y), want, rtol=F64, atol=F64)
    for k, v in coeffs.items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.last_coefficients[k]), v, atol=F64)
    with pytest.raises(ValueError, match="route_input"):
        layer(nhwc(x))
    with pytest.raises(ValueError, match="11"):
        layer(nhwc(x), route_input=nhwc(x))


def test_layer_routing_ignores_a_route_input() -> None:
    layer = cached_layer(DRTConvSpec(4, 4, variant="comb", K=2), "float64")
    x = nhwc(np.random.default_rng(2).standard_normal((2, 4, 6, 6)))
    other = np.zeros((2, 3, 3, 9))
    np.testing.assert_array_equal(nchw(layer(x, route_input=other)), nchw(layer(x)))


def test_block_routing_neutral_weights_and_hint() -> None:
    block = cached_layer(DRTConvSpec(8, 8, variant="sr", route="block", route_channels=64), "float32")
    arrays = to_neutral(block)
    assert arrays["router.fc1.weight"].shape == (4, 64)
    layer = cached_layer(DRTConvSpec(8, 8, variant="sr"), "float32")
    with pytest.raises(WeightsError, match="routing") as e:
        from_neutral(layer, arrays)
    assert "router.fc1.weight: expected (4, 8), got (4, 64)" in str(e.value)
    cfg = DRTConv2D.from_config(block.get_config())
    assert cfg.spec == block.spec and cfg.spec.route_channels == 64


@tf_only
def test_auto_calibration_with_block_routing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    from harness import autotune

    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    monkeypatch.setattr(autotune, "WARMUP", 1)
    monkeypatch.setattr(autotune, "REPEATS", 3)
    autotune.clear_memory_cache()
    try:
        spec = DRTConvSpec(6, 6, variant="sr", K=2, formulation="auto", route="block", route_channels=12)
        layer = DRTConv2D(spec, dtype="float64")
        rng = np.random.default_rng(3)
        x, r = rng.standard_normal((2, 6, 5, 5)), rng.standard_normal((2, 12, 5, 5))
        layer.build((None, 5, 5, 6))  # the calibration builds its own routing input
        assert layer.formulation in FORMULATIONS
        arrays = randomise(layer, rng)
        np.testing.assert_allclose(
            nchw(layer(nhwc(x), route_input=nhwc(r))), np_drt(spec, arrays, x, r)[0], rtol=F64, atol=F64
        )
    finally:
        autotune.clear_memory_cache()


# ---- sr_uniform: the capacity control (sr's parameters, routing frozen to π = 1/K) -----------------------
def merged_static_conv(spec: DRTConvSpec, arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """A plain (hand) conv with the kernel ``W0 + mean_k Φ_k`` (1×1 bases on the centre tap)."""
    w = arrays["weight"].copy()
    mean_phi = arrays["bases"].mean(axis=0)
    if spec.basis_kernel == "full":
        w = w + mean_phi
    else:
        c = spec.kernel_size // 2
        w[:, :, c, c] += mean_phi[:, :, 0, 0]
    return np_conv(x, w, spec.stride, spec.padding)


@given(cases(max_channels=12, max_size=13), st.booleans(), st.integers(0, 2**31 - 1))
def test_sr_uniform_is_a_static_conv_with_the_mean_basis(case: tuple, block: bool, seed: int) -> None:
    spec, shape = case
    spec = spec.replace(variant="sr_uniform")
    if block:
        spec = spec.replace(route="block", route_channels=int(seed % 7) + 1)
    rng = np.random.default_rng(seed)
    layer = cached_layer(spec, "float64")
    arrays = randomise(layer, rng)  # a far-from-uniform router must not matter
    x = rng.standard_normal(shape)
    r = nhwc(rng.standard_normal((shape[0], spec.router_in, 5, 4))) if block else None
    ref = merged_static_conv(spec, arrays, x)
    tol = 1e-12 if BACKEND == "tensorflow" else F64
    for form in FORMULATIONS:
        layer.formulation = form
        y = nchw(layer(nhwc(x), route_input=r))
        assert np.abs(y - ref).max() <= tol * max(np.abs(ref).max(), 1e-300), form
        assert layer.last_coefficients == {}
    pi, lam = layer.coefficients(keras.ops.convert_to_tensor(nhwc(x)), r)
    assert lam is None
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pi), np.full((shape[0], spec.K), 1.0 / spec.K))


@pytest.mark.parametrize("route", ["layer", "block"])
@pytest.mark.parametrize("basis_kernel", [1, "full"])
def test_sr_uniform_has_the_variables_and_parameters_of_sr(route: str, basis_kernel: int | str) -> None:
    from harness.flops.analytic import drt_layer

    kw = {"route": "block", "route_channels": 48} if route == "block" else {}
    sr = DRTConvSpec(32, 24, variant="sr", K=3, basis_kernel=basis_kernel, **kw)
    a, u = cached_layer(sr, "float32"), cached_layer(sr.replace(variant="sr_uniform"), "float32")
    assert {v.name: tuple(v.shape) for v in u.weights} == {v.name: tuple(v.shape) for v in a.weights}
    assert u.neutral_shapes() == a.neutral_shapes()
    n_u = sum(int(np.prod(v.shape)) for v in u.trainable_weights)
    assert n_u == sum(int(np.prod(v.shape)) for v in a.trainable_weights) == drt_layer(sr, 8).params
    assert drt_layer(u.spec, 8).params == drt_layer(sr, 8).params
    from_neutral(u, to_neutral(a))  # weights port between sr and sr_uniform
    for k, v in to_neutral(u).items():
        np.testing.assert_array_equal(v, to_neutral(a)[k])


@tf_only
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_sr_uniform_router_gets_no_gradient_and_traces(formulation: str) -> None:
    import tensorflow as tf

    spec = DRTConvSpec(6, 6, stride=2, variant="sr_uniform", K=3, formulation=formulation, route="block")
    layer = DRTConv2D(spec)
    rng = np.random.default_rng(4)
    x = tf.constant(rng.standard_normal((3, 9, 9, 6)).astype("float32"))
    r = tf.constant(rng.standard_normal((3, 9, 9, 6)).astype("float32"))

    def step(x: tf.Tensor) -> list:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x, route_input=r)))
        return tape.gradient(loss, [layer.kernel, layer.bases, layer.router_fc1, layer.router_fc2])

    for grads in (
        step(x),
        tf.function(step, jit_compile=False, input_signature=[tf.TensorSpec((None, 9, 9, 6))])(x),
    ):
        assert grads[2] is None and grads[3] is None
        assert all(np.abs(g.numpy()).max() > 0 for g in grads[:2])


def test_sr_uniform_model_parameters_equal_sr() -> None:
    from harness.spec.model import ModelSpec, count_parameters
    from impl_keras.backbones import build_model

    counts, init = {}, {}
    for v in ("sr", "sr_uniform"):
        ms = ModelSpec(arch="digits_cnn", variant=v, width=0.125, num_classes=10)
        keras.utils.set_random_seed(0)
        net = build_model(ms)
        counts[v] = (sum(int(np.prod(w.shape)) for w in net.trainable_weights), count_parameters(ms)["total"])
        init[v] = to_neutral(net)
        counts[v] += (tuple(sorted(init[v])),)
    assert counts["sr"] == counts["sr_uniform"] and counts["sr"][0] == counts["sr"][1]
    # the same seed draws the same tensors: sr and sr_uniform of a seed start from the same weights
    assert all(np.array_equal(a, init["sr_uniform"][k]) for k, a in init["sr"].items())
