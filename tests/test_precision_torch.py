"""Mixed precision, PyTorch trainer: a bf16 smoke job on the CPU trains like the fp32 one (finite losses,
accuracy within noise), networks compute in bfloat16 only inside training steps, a bf16 job resumes
bit-exactly, and fp16 (GradScaler) works at the algorithm level but is refused by the trainer on a CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

import twin_check  # noqa: E402

from harness import checkpoint  # noqa: E402
from harness.spec.method import MethodSpec  # noqa: E402
from harness.spec.model import ModelSpec  # noqa: E402
from impl_torch.train import run_job  # noqa: E402


def test_bf16_smoke_job_trains_like_fp32(tmp_path: Path) -> None:
    def target_acc_in_range(r: dict) -> None:
        assert 0.0 <= r["target_acc"] <= 1.0

    twin_check.run_fp32_and_bf16(run_job, tmp_path, check=target_acc_in_range)
    weights = checkpoint.load(checkpoint.path_in(tmp_path / "bf16"))[0]
    assert {str(v.dtype) for k, v in weights.items() if k.startswith("algo/nets/")} <= {"float32", "int64"}


def smoke_batch() -> dict[str, torch.Tensor]:
    from harness.data import get_suite
    from impl_torch.data import make_loader

    p = get_suite("smoke").protocol("colour", seed=0)
    xs, ys, ds = next(iter(make_loader(p.source_train, p.transform_train, 8, train=True, sampler="balanced")))
    xt, _, _ = next(iter(make_loader(p.target_train, p.transform_train, 8, train=True, seed=1)))
    return {"xs": xs, "ys": ys, "ds": ds, "xt": xt}


def algorithm(method: str = "dann"):
    from impl_torch.methods import build_algorithm

    torch.manual_seed(0)
    spec = MethodSpec.create(method, "smoke", num_sources=2)
    return build_algorithm(spec, ModelSpec(arch="digits_cnn", num_classes=10, variant="sr", width=0.25))


def test_networks_compute_in_bf16_only_inside_training_steps() -> None:
    from impl_torch.layers import DRTConv2d

    algo = algorithm()
    algo.set_precision("bf16", "cpu")
    seen: list[tuple[str, torch.dtype]] = []
    for m in algo.modules():
        if isinstance(m, DRTConv2d):
            m.register_forward_hook(lambda mod, i, o: seen.append(("drt", o.dtype)))
    outs: list[torch.dtype] = []
    algo.nets["head"].register_forward_hook(lambda mod, i, o: outs.append(o.dtype))
    algo.set_progress(0, 10)
    metrics = algo.update(smoke_batch())
    assert all(math.isfinite(v) for v in metrics.values())
    assert {d for _, d in seen} == {torch.bfloat16} and set(outs) == {torch.float32}  # cast at the boundary
    seen.clear()
    p = algo.predict(smoke_batch()["xt"])
    assert {d for _, d in seen} == {torch.float32} and p.dtype == torch.float32
    assert {q.dtype for q in algo.parameters()} == {torch.float32}
    assert "forward" not in vars(algo.nets["features"])  # unwrapped after the step


def test_fp16_grad_scaler_at_the_algorithm_level() -> None:
    algo = algorithm("source_only")
    algo.set_precision("fp16", "cpu")
    assert algo.scaler is not None
    batch = smoke_batch()
    batch["xs"], batch["xt"] = batch["xs"][:4], batch["xt"][:4]
    batch["ys"], batch["ds"] = batch["ys"][:4], batch["ds"][:4]
    algo.set_progress(0, 10)
    assert math.isfinite(algo.update(batch)["ce"])
    arrays, meta = algo.checkpoint_state()
    assert meta["grad_scaler"]["scale"] > 0 and "_growth_tracker" in meta["grad_scaler"]
    twin = algorithm("source_only")
    twin.set_precision("fp16", "cpu")
    twin.load_checkpoint_state(arrays, meta)
    assert twin.scaler.get_scale() == algo.scaler.get_scale()


def test_fp16_on_cpu_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision.*fp16.*CUDA.*bf16"):
        run_job(twin_check.precision_job("fp16", epochs=1, steps=1), tmp_path)


def test_bf16_job_resumes_bit_exactly(tmp_path: Path) -> None:
    spec = twin_check.precision_job("bf16", method="dann", epochs=2, steps=3, bs=8)
    twin_check.check_resumes_bit_exactly(run_job, tmp_path, spec)
