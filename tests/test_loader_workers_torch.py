"""Loader workers, PyTorch: the batch stream (pixels, labels, domain ids, order, augmentation draws) is
bit-identical with 0 and 2 worker processes over several epochs, a cursor resumes mid-epoch onto the same
batches, unreadable images are still counted, and a whole training job gives the same checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

import twin_check  # noqa: E402

from harness import hparams as H  # noqa: E402
from impl_torch.data import make_loader  # noqa: E402


@pytest.fixture(scope="module")
def proto():
    return twin_check.smoke_protocol()


def arrays(batches) -> list[tuple[np.ndarray, ...]]:
    return [tuple(t.numpy() for t in b) for b in batches]


@pytest.mark.parametrize("sampler", ["pooled", "balanced"])
def test_two_workers_give_the_same_augmented_stream_over_epochs(proto, sampler: str) -> None:
    twin_check.check_same_stream_over_epochs(make_loader, arrays, proto, sampler)


def test_cursor_resumes_mid_epoch_with_workers(proto) -> None:
    twin_check.check_cursor_resumes_mid_epoch(make_loader, arrays, proto)


def test_skipped_images_are_counted_with_workers(tmp_path: Path) -> None:
    data, bad = twin_check.corrupt_source(tmp_path)
    serial, workers = twin_check.loader_pair(make_loader, data, twin_check.SMALL, 2, train=True, seed=1)
    try:
        for _ in range(2):  # the corrupt image is in every pass
            twin_check.assert_same_stream(arrays(serial), arrays(workers))
    finally:
        workers.close()
    assert workers.skipped == serial.skipped == 2
    assert str(bad) in workers.skipped_files()[0] and len(workers.skipped_files()) == 2


def test_an_iterator_of_an_earlier_pass_cannot_steal_batches(proto) -> None:
    loader = make_loader(proto.source_train, twin_check.AUGMENT, 32, train=True, seed=0, num_workers=2)
    try:
        old = iter(loader)
        next(old)
        new = iter(loader)
        first_new = next(new)
        with pytest.raises(RuntimeError, match="earlier pass"):
            next(old)
        assert len(first_new[1]) == 32
    finally:
        loader.close()


def job(workers: int) -> dict:
    """A 2-epoch smoke job (3 steps per epoch: passes end mid-epoch) with ``workers`` loader workers."""
    return {
        "suite": "smoke", "root": None, "target": "plain", "method": "dann", "variant": "sr",
        "arch": "digits_cnn", "formulation": "kernel_merge", "seed": 5, "epochs": 2, "steps_per_epoch": 3,
        "batch_size": 8, "device": "cpu", "model": {"width": 0.25}, "loader_workers": workers,
        "hparams": H.resolve("dann", "smoke", {"optimizer": "adam", "lr": 1e-3}, ignore_foreign=True),
    }  # fmt: skip


def test_a_job_trains_identically_with_loader_workers(tmp_path: Path) -> None:
    from impl_torch.train import run_job

    ra = run_job(job(0), tmp_path / "w0")
    rb = run_job(job(2), tmp_path / "w2")
    assert (ra["loader_workers"], rb["loader_workers"]) == (0, 2)
    assert ra["target_acc"] == rb["target_acc"] and ra["losses"] == rb["losses"]
    twin_check.assert_same_checkpoint(tmp_path / "w0", tmp_path / "w2", same_keys=True)
