"""Keras methods: a few updates lower the training loss on the smoke suite; NaN losses are reported; the
training loop checkpoints, resumes and emits the documented records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import checkpoint
from harness.spec.method import METHODS, MethodSpec
from harness.spec.model import ModelSpec

keras = pytest.importorskip("keras")
from impl_keras.methods import NonFiniteLoss, build_algorithm  # noqa: E402

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def smoke_batch() -> dict[str, np.ndarray]:
    """One fixed batch from the smoke suite: 8 source images (2 sources, balanced) and 8 target images
    (NHWC)."""
    from harness.data import get_suite
    from impl_keras.data import make_loader

    p = get_suite("smoke").protocol("colour", seed=0)
    xs, ys, ds = next(
        iter(make_loader(p.source_train, p.transform_train, 8, train=True, seed=0, sampler="balanced"))
    )
    xt, _, _ = next(iter(make_loader(p.target_train, p.transform_train, 8, train=True, seed=1)))
    return {
        "xs": np.asarray(xs, np.float32),
        "ys": np.asarray(ys, np.int64),
        "ds": np.asarray(ds, np.int64),
        "xt": np.asarray(xt, np.float32),
    }


@pytest.mark.parametrize("method", METHODS)
def test_few_updates_lower_the_training_loss(method: str, smoke_batch: dict[str, np.ndarray]) -> None:
    keras.utils.set_random_seed(0)
    spec = MethodSpec.create(method, "smoke", num_sources=2)
    algo = build_algorithm(spec, ModelSpec(arch="digits_cnn", num_classes=10, variant="static", width=0.25))
    ce = []
    for i in range(3):
        algo.set_progress(i, 100)
        m = algo.update(smoke_batch)
        assert all(np.isfinite(v) for v in m.values()), m
        ce.append(m["ce"] if "ce" in m else m["loss"])
    assert ce[-1] < ce[0], ce
    p = keras.ops.convert_to_numpy(algo.predict(smoke_batch["xt"]))
    assert p.shape == (8, 10) and np.allclose(p.sum(-1), 1.0, atol=1e-5)
    if len(spec.stages()) > 1:
        algo.set_progress(90, 100)
        assert algo.stage == 1
        m = algo.update(smoke_batch)
        assert all(np.isfinite(v) for v in m.values()), m


def test_nan_loss_raises_a_clear_error(smoke_batch: dict[str, np.ndarray]) -> None:
    algo = build_algorithm(
        MethodSpec.create("source_only", "smoke"),
        ModelSpec(arch="digits_cnn", num_classes=10, variant="static", width=0.25),
    )
    with pytest.raises(NonFiniteLoss, match="source_only"):
        algo.update(dict(smoke_batch, xs=np.full_like(smoke_batch["xs"], np.nan)))


def _job(method: str, epochs: int) -> dict:
    return {
        "framework": "keras",
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
    from impl_keras.train import run_job

    records: list[dict] = []
    steps: list[tuple[int, int]] = []
    final = run_job(
        _job("m3sda", 1), tmp_path, on_epoch=records.append, on_step=lambda i, n: steps.append((i, n))
    )
    assert steps == [(1, 2), (2, 2)]
    assert checkpoint.path_in(tmp_path).exists()  # safetensors + JSON: no pickle
    assert not any((tmp_path / "checkpoint").glob("*.p*"))
    rec = records[0]
    assert {"epoch", "losses", "source_acc", "target_acc", "lr", "seconds", "stage"} <= set(rec)
    assert rec["epoch"] == 1 and 0.0 <= rec["target_acc"] <= 1.0 and "moment" in rec["losses"]
    json.dumps(rec)
    assert final["epoch"] == 1 and final["framework"] == "keras"
    more: list[dict] = []
    assert final["resumed_from_epoch"] == 0
    final2 = run_job(_job("m3sda", 2), tmp_path, on_epoch=more.append)
    assert [r["epoch"] for r in more] == [2] and final2["epoch"] == 2
    assert final2["resumed_from_epoch"] == 1
