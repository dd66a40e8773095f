"""Loader workers, Keras: the batch stream (pixels, labels, domain ids, order, augmentation draws) is
bit-identical with 0 and 2 loading threads over several epochs, a cursor resumes mid-epoch onto the same
batches, unreadable images are still counted, and a worker's error is raised at its batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.keras
keras = pytest.importorskip("keras")

import twin_check  # noqa: E402

from harness.data.transforms import TransformSpec  # noqa: E402
from harness.errors import DataError  # noqa: E402
from impl_keras.data import make_loader  # noqa: E402


@pytest.fixture(scope="module")
def proto():
    return twin_check.smoke_protocol()


def arrays(batches) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.asarray(t) for t in b) for b in batches]


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
        assert workers.skipped == serial.skipped == 2
        assert str(bad) in workers.skipped_files()[0] and len(workers.skipped_files()) == 2
        strict = make_loader(data, twin_check.SMALL, 2, train=False, on_corrupt="fail", num_workers=2)
        with pytest.raises(DataError, match=str(bad).replace("/", ".")):
            list(strict)
        strict.close()
    finally:
        workers.close()


def test_an_abandoned_pass_counts_only_delivered_batches(tmp_path: Path) -> None:
    p = twin_check.tiny_domainnet(tmp_path)
    p.source_train.path(5).write_bytes(b"broken")  # in the last batch of the in-order pass
    loader = make_loader(p.source_train, TransformSpec(resize=(32, 32)), 2, train=False, num_workers=2)
    try:
        it = iter(loader)
        next(it)  # the threads load the later batches ahead
        it.close()
        assert loader.skipped == 0
        assert sum(len(y) for _, y, _ in loader) == 5 and loader.skipped == 1
    finally:
        loader.close()


def test_a_job_trains_identically_with_loader_workers(tmp_path: Path) -> None:
    from harness import hparams as H
    from impl_keras.train import run_job

    def job(workers: int) -> dict:
        return {
            "suite": "smoke", "root": None, "target": "plain", "method": "source_only", "variant": "sr",
            "arch": "digits_cnn", "formulation": "kernel_merge", "seed": 5, "epochs": 1, "steps_per_epoch": 9,
            "batch_size": 32, "device": "cpu", "model": {"width": 0.25}, "loader_workers": workers,
            "hparams": H.resolve("source_only", "smoke", {"optimizer": "adam"}, ignore_foreign=True),
        }  # fmt: skip

    ra, rb = run_job(job(0), tmp_path / "w0"), run_job(job(2), tmp_path / "w2")
    assert (ra["loader_workers"], rb["loader_workers"]) == (0, 2)
    assert ra["target_acc"] == rb["target_acc"] and ra["losses"] == rb["losses"]
    # 9 steps of 32: the pass of 7 batches ends and the next one starts mid-epoch
    twin_check.assert_same_checkpoint(tmp_path / "w0", tmp_path / "w2")
