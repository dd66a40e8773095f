"""Loader workers, Keras: the batch stream (pixels, labels, domain ids, order, augmentation draws) is
bit-identical with 0 and 2 loading threads over several epochs, a cursor resumes mid-epoch onto the same
batches, unreadable images are still counted, and a worker's error is raised at its batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.keras
keras = pytest.importorskip("keras")

from harness.data import get_suite  # noqa: E402
from harness.data.fixtures import write_domainnet_tree  # noqa: E402
from harness.data.iterate import Cursor  # noqa: E402
from harness.data.transforms import TransformSpec  # noqa: E402
from harness.errors import DataError  # noqa: E402
from impl_keras.data import make_loader  # noqa: E402

#: a random transform on the 32×32 smoke images: random 28×28 crop of a 36×36 resize, random flip
AUGMENT = TransformSpec(resize=(36, 36), crop=(28, 28), random_crop=True, hflip=True, name="augment")


@pytest.fixture(scope="module")
def proto():
    return get_suite("smoke").protocol("colour")


def arrays(batches) -> list[tuple[np.ndarray, ...]]:
    return [tuple(np.asarray(t) for t in b) for b in batches]


def assert_same_stream(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for i, (u, v) in enumerate(zip(a, b)):
        for name, s, t in zip(("x", "y", "d"), u, v):
            assert s.dtype == t.dtype and s.shape == t.shape, (i, name)
            np.testing.assert_array_equal(s, t, err_msg=f"batch {i} {name}")


@pytest.mark.parametrize("sampler", ["pooled", "balanced"])
def test_two_workers_give_the_same_augmented_stream_over_epochs(proto, sampler: str) -> None:
    kw = dict(train=True, seed=11, sampler=sampler)
    serial = make_loader(proto.source_train, AUGMENT, 16, **kw)
    workers = make_loader(proto.source_train, AUGMENT, 16, num_workers=2, **kw)
    try:
        epochs = [(arrays(serial), arrays(workers)) for _ in range(3)]
    finally:
        workers.close()
    for a, b in epochs:
        assert_same_stream(a, b)
    assert not np.array_equal(epochs[0][0][0][0], epochs[1][0][0][0])  # new shuffle and draws per epoch
    assert serial.epoch == workers.epoch == 3


def test_cursor_resumes_mid_epoch_with_workers(proto) -> None:
    ref = Cursor(make_loader(proto.source_train, AUGMENT, 32, train=True, seed=4))
    straight = arrays(next(ref) for _ in range(12))  # 7 batches per pass: crosses into the second pass
    first = make_loader(proto.source_train, AUGMENT, 32, train=True, seed=4, num_workers=2)
    cur = Cursor(first)
    head = arrays(next(cur) for _ in range(4))
    state = cur.state()
    first.close()
    again = make_loader(proto.source_train, AUGMENT, 32, train=True, seed=4, num_workers=2)
    resumed = Cursor(again)
    resumed.restore(state)
    try:
        tail = arrays(next(resumed) for _ in range(8))
    finally:
        again.close()
    assert state == [0, 4]
    assert_same_stream(straight, head + tail)


def test_skipped_images_are_counted_with_workers(tmp_path: Path) -> None:
    counts = write_domainnet_tree(tmp_path, ("a", "b"), 3, (2, 1), size_range=(40, 60))
    s = get_suite("domainnet", root=tmp_path, num_classes=3, expected=counts, domains=("a", "b"))
    p = s.protocol("b")
    bad = p.source_train.path(2)
    bad.write_bytes(b"broken")
    small = TransformSpec(resize=36, crop=(32, 32), random_crop=True, hflip=True, name="small")
    serial = make_loader(p.source_train, small, 2, train=True, seed=1)
    workers = make_loader(p.source_train, small, 2, train=True, seed=1, num_workers=2)
    try:
        for _ in range(2):  # the corrupt image is in every pass
            assert_same_stream(arrays(serial), arrays(workers))
        assert workers.skipped == serial.skipped == 2
        assert str(bad) in workers.skipped_files()[0] and len(workers.skipped_files()) == 2
        strict = make_loader(p.source_train, small, 2, train=False, on_corrupt="fail", num_workers=2)
        with pytest.raises(DataError, match=str(bad).replace("/", ".")):
            list(strict)
        strict.close()
    finally:
        workers.close()


def test_an_abandoned_pass_counts_only_delivered_batches(tmp_path: Path) -> None:
    counts = write_domainnet_tree(tmp_path, ("a", "b"), 3, (2, 1), size_range=(40, 60))
    suite = get_suite("domainnet", root=tmp_path, num_classes=3, expected=counts, domains=("a", "b"))
    p = suite.protocol("b")
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
    from harness import checkpoint
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
    a = checkpoint.load(checkpoint.path_in(tmp_path / "w0"))[0]
    b = checkpoint.load(checkpoint.path_in(tmp_path / "w2"))[0]
    for k in a:  # 9 steps of 32: the pass of 7 batches ends and the next one starts mid-epoch
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
