"""PyTorch methods: a few updates lower the training loss on the smoke suite; NaN losses are reported; the
training loop checkpoints, resumes and emits the documented records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import checkpoint
from harness.spec.method import METHODS, MethodSpec
from harness.spec.model import ModelSpec

torch = pytest.importorskip("torch")
from impl_torch.methods import NonFiniteLoss, build_algorithm  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def smoke_batch() -> dict[str, torch.Tensor]:
    """One fixed batch from the smoke suite: 8 source images (2 sources, balanced) and 8 target images."""
    from harness.data import get_suite
    from impl_torch.data import make_loader

    p = get_suite("smoke").protocol("colour", seed=0)
    xs, ys, ds = next(
        iter(make_loader(p.source_train, p.transform_train, 8, train=True, seed=0, sampler="balanced"))
    )
    xt, _, _ = next(iter(make_loader(p.target_train, p.transform_train, 8, train=True, seed=1)))
    return {"xs": xs, "ys": ys, "ds": ds, "xt": xt}


@pytest.mark.parametrize("method", METHODS)
def test_few_updates_lower_the_training_loss(method: str, smoke_batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    spec = MethodSpec.create(method, "smoke", num_sources=2)
    algo = build_algorithm(spec, ModelSpec(arch="digits_cnn", num_classes=10, variant="static", width=0.25))
    ce = []
    for i in range(3):
        algo.set_progress(i, 100)
        m = algo.update(smoke_batch)
        assert all(np.isfinite(v) for v in m.values()), m
        ce.append(m["ce"])
    assert ce[-1] < ce[0], ce
    p = algo.predict(smoke_batch["xt"])
    assert p.shape == (8, 10) and torch.allclose(p.sum(-1), torch.ones(8, dtype=p.dtype))
    if len(spec.stages()) > 1:  # the second stage runs as well (ADDA stage 2, DRT+ST self-training)
        algo.set_progress(90, 100)
        assert algo.stage == 1
        m = algo.update(smoke_batch)
        assert all(np.isfinite(v) for v in m.values()), m


def test_nan_loss_raises_a_clear_error(smoke_batch: dict[str, torch.Tensor]) -> None:
    algo = build_algorithm(
        MethodSpec.create("source_only", "smoke"),
        ModelSpec(arch="digits_cnn", num_classes=10, variant="static", width=0.25),
    )
    bad = dict(smoke_batch, xs=torch.full_like(smoke_batch["xs"], float("nan")))
    with pytest.raises(NonFiniteLoss, match="source_only"):
        algo.update(bad)


def test_adda_stage_two_freezes_source_model(smoke_batch: dict[str, torch.Tensor]) -> None:
    algo = build_algorithm(
        MethodSpec.create("adda", "smoke"),
        ModelSpec(arch="digits_cnn", num_classes=10, variant="static", width=0.25),
    )
    algo.set_progress(0, 10)
    algo.update(smoke_batch)
    algo.set_progress(6, 10)
    frozen = {
        k: v.clone()
        for k, v in list(algo.nets["features"].state_dict().items())
        + [("head." + k, v) for k, v in algo.nets["head"].state_dict().items()]
    }
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            algo.nets["features"].state_dict().values(), algo.nets["target_features"].state_dict().values()
        )
    )
    algo.update(smoke_batch)
    now = dict(algo.nets["features"].state_dict())
    now.update({"head." + k: v for k, v in algo.nets["head"].state_dict().items()})
    assert all(torch.equal(frozen[k], now[k]) for k in frozen)
    assert isinstance(algo.optimizers["critic"], torch.optim.Adam)


def _job(method: str, epochs: int) -> dict:
    return {
        "framework": "torch",
        "suite": "smoke",
        "root": None,
        "target": "colour",
        "method": method,
        "variant": "sr",
        "arch": "digits_cnn",
        "formulation": None,
        "seed": 0,
        "epochs": epochs,
        "steps_per_epoch": 2,
        "batch_size": 8,
        "hparams": {},
        "device": "cpu",
        "selection": "last",
        "data": {"train_per_domain": 40, "test_per_domain": 20},
        "model": {"width": 0.25},
    }


def test_run_job_records_checkpoints_and_resumes(tmp_path: object) -> None:
    from impl_torch.train import run_job

    records: list[dict] = []
    steps: list[tuple[int, int]] = []
    final = run_job(
        _job("mcd_grl", 1), tmp_path, on_epoch=records.append, on_step=lambda i, n: steps.append((i, n))
    )
    assert steps == [(1, 2), (2, 2)]
    assert checkpoint.path_in(tmp_path).exists()  # safetensors + JSON: no pickle
    assert not any((tmp_path / "checkpoint").glob("*.p*"))
    rec = records[0]
    assert {"epoch", "losses", "source_acc", "target_acc", "lr", "seconds", "stage"} <= set(rec)
    assert rec["epoch"] == 1 and 0.0 <= rec["target_acc"] <= 1.0 and "ce" in rec["losses"]
    json.dumps(rec)
    assert final["epoch"] == 1 and final["framework"] == "torch" and final["best_is_oracle"]
    more: list[dict] = []
    assert final["resumed_from_epoch"] == 0
    final2 = run_job(_job("mcd_grl", 2), tmp_path, on_epoch=more.append)
    assert [r["epoch"] for r in more] == [2] and final2["epoch"] == 2
    assert final2["resumed_from_epoch"] == 1
