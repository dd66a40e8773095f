"""Mixed precision, Keras trainer (TensorFlow on the CPU in CI): a bf16 smoke job trains like the fp32 one,
the mixed policy reaches the DRT layers only inside training steps (BatchNorm stays float32, predictions and
variables float32, policies restored), dynamic loss scaling skips non-finite steps, a bf16 job resumes
bit-exactly, and fp16 is refused by the trainer on a CPU."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.keras
keras = pytest.importorskip("keras")

import twin_check  # noqa: E402

from harness.spec.method import MethodSpec  # noqa: E402
from harness.spec.model import ModelSpec  # noqa: E402
from impl_keras.methods import base  # noqa: E402
from impl_keras.train import run_job  # noqa: E402


def test_bf16_smoke_job_trains_like_fp32(tmp_path: Path) -> None:
    twin_check.run_fp32_and_bf16(run_job, tmp_path)
    assert keras.config.dtype_policy().name == keras.config.floatx()  # the global policy was never touched


def smoke_batch(n: int = 8) -> dict[str, np.ndarray]:
    from harness.data import get_suite
    from impl_keras.data import make_loader

    p = get_suite("smoke").protocol("colour", seed=0)
    xs, ys, ds = next(iter(make_loader(p.source_train, p.transform_train, n, train=True, sampler="balanced")))
    xt, _, _ = next(iter(make_loader(p.target_train, p.transform_train, n, train=True, seed=1)))
    return {"xs": xs, "ys": ys.astype(np.int64), "ds": ds.astype(np.int64), "xt": xt}


def algorithm(precision: str, method: str = "dann", compiled: bool = False):
    from impl_keras.methods import build_algorithm

    keras.utils.set_random_seed(0)
    spec = MethodSpec.create(method, "smoke", num_sources=2)
    ms = ModelSpec(arch="digits_cnn", num_classes=10, variant="sr", width=0.25)
    algo = build_algorithm(spec, ms, compiled=compiled)
    algo.set_precision(precision)
    return algo


def test_mixed_policy_reaches_the_layers_only_inside_training_steps(monkeypatch) -> None:
    from impl_keras.layers import DRTConv2D
    from impl_keras.layers.basic import BatchNorm

    seen: list[tuple[str, str]] = []
    for cls in (DRTConv2D, BatchNorm):
        orig = cls.call

        @functools.wraps(orig)  # the same signature: Keras passes ``training`` as before
        def call(self, x, *args, _orig=orig, **kwargs):
            out = _orig(self, x, *args, **kwargs)
            seen.append((type(self).__name__, keras.backend.standardize_dtype(out.dtype)))
            return out

        monkeypatch.setattr(cls, "call", call)
    algo = algorithm("bf16")
    algo.set_progress(0, 10)
    metrics = algo.update(smoke_batch())
    assert all(math.isfinite(v) for v in metrics.values())
    assert {d for n, d in seen if n == "DRTConv2D"} == {"bfloat16"}
    assert {d for n, d in seen if n != "DRTConv2D"} == {"float32"}  # BatchNorm layers stay float32
    seen.clear()
    p = algo.predict(smoke_batch()["xt"])
    assert {d for _, d in seen} == {"float32"} and keras.backend.standardize_dtype(p.dtype) == "float32"
    layers = [la for net in algo.nets.values() for la in net._flatten_layers()]
    assert {la.dtype_policy.name for la in layers} == {"float32"}
    floats = {v.dtype for net in algo.nets.values() for v in net.variables if "float" in v.dtype}
    assert floats == {"float32"}


def test_loss_scaling_skips_a_non_finite_step_and_adapts_the_scale() -> None:
    p, new_p = {"n": [np.ones(3, np.float32)]}, {"n": [np.zeros(3, np.float32)]}
    o, new_o = {"n": [np.ones(3, np.float32)]}, {"n": [np.full(3, 2.0, np.float32)]}
    scale = [np.float32(1024.0), np.float32(5.0)]
    bad = [np.array([1.0, np.inf, 0.0], np.float32), None]
    tv, opt, (s, good) = base._skip_unless_finite(bad, p, new_p, o, new_o, scale)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tv["n"][0]), p["n"][0])  # skipped
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(opt["n"][0]), o["n"][0])
    assert float(s) == 512.0 and float(good) == 0.0
    ok = [np.zeros(3, np.float32)]
    tv, opt, (s, good) = base._skip_unless_finite(ok, p, new_p, o, new_o, scale)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tv["n"][0]), new_p["n"][0])
    assert float(s) == 1024.0 and float(good) == 6.0
    full = [np.float32(1024.0), np.float32(base.LOSS_SCALE_INTERVAL - 1)]
    _, _, (s, good) = base._skip_unless_finite(ok, p, new_p, o, new_o, full)
    assert float(s) == 2048.0 and float(good) == 0.0


def test_fp16_loss_scaled_step_at_the_algorithm_level() -> None:
    algo = algorithm("fp16", method="source_only")
    assert [float(v.numpy()) for v in algo.loss_scale] == [base.LOSS_SCALE_INIT, 0.0]
    algo.set_progress(0, 10)
    before = algo.to_neutral()
    assert math.isfinite(algo.update(smoke_batch(4))["ce"])
    trained = {k for k, v in algo.to_neutral().items() if not np.array_equal(v, before[k])}
    trained -= {k for k in trained if "running_" in k or "num_batches" in k}  # BatchNorm statistics
    scale = [float(v.numpy()) for v in algo.loss_scale]
    # a finite step updates the weights and counts; an overflow (fp16 max 65504) skips it and halves S
    assert scale == ([base.LOSS_SCALE_INIT, 1.0] if trained else [base.LOSS_SCALE_INIT / 2, 0.0])
    arrays, _ = algo.checkpoint_state()
    assert [float(arrays[f"loss_scale/{i}"]) for i in range(2)] == scale


def test_fp16_on_cpu_is_refused_and_float64_is_not_mixed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision.*fp16.*cpu.*bf16"):
        run_job(twin_check.precision_job("fp16", epochs=1, steps=1), tmp_path)
    from impl_keras.methods import build_algorithm

    spec = MethodSpec.create("source_only", "smoke", num_sources=2)
    ms = ModelSpec(arch="digits_cnn", num_classes=10, variant="static", width=0.25)
    algo = build_algorithm(spec, ms, dtype="float64", compiled=False)
    with pytest.raises(ValueError, match="dtype.*float64"):
        algo.set_precision("bf16")


def test_bf16_job_resumes_bit_exactly(tmp_path: Path) -> None:
    spec = twin_check.precision_job("bf16", epochs=2, steps=3, bs=8)
    twin_check.check_resumes_bit_exactly(run_job, tmp_path, spec)


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_bf16_update_of_a_residual_network(arch: str) -> None:
    """Basic (ResNet-18) and bottleneck (ResNet-50) blocks add the shortcut (in the block's bf16 input dtype)
    to BatchNorm's float32 output: the add must not fail (it did: ``AddV2`` of bfloat16 and float32) and the
    update stays finite."""
    from impl_keras.methods import build_algorithm

    keras.utils.set_random_seed(0)
    spec = MethodSpec.create("source_only", "smoke", num_sources=2)
    ms = ModelSpec(arch=arch, num_classes=10, variant="sr")
    algo = build_algorithm(spec, ms)
    algo.set_precision("bf16")
    algo.set_progress(0, 10)
    rng = np.random.default_rng(0)
    batch = {"xs": rng.standard_normal((2, 32, 32, 3)).astype("float32"), "ys": np.array([1, 2]),
             "ds": np.array([0, 1]), "xt": rng.standard_normal((2, 32, 32, 3)).astype("float32")}  # fmt: skip
    metrics = algo.update(batch)
    assert metrics and all(math.isfinite(float(v)) for v in metrics.values())
