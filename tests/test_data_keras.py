"""impl_keras.data: PyDataset adapter (NHWC float32, int64 y/d, seeded epochs, samplers, corrupt policy)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import get_suite
from harness.data.fixtures import write_domainnet_tree
from harness.errors import DataError
from impl_keras.data import make_loader

pytestmark = pytest.mark.keras  # collected only where Keras is installed (tests/conftest.py)


@pytest.fixture(scope="module")
def proto():
    return get_suite("smoke").protocol("colour")


def test_batches_shapes_and_types(proto):
    import keras

    loader = make_loader(proto.source_train, proto.transform_train, 32, train=True, seed=0)
    assert isinstance(loader, keras.utils.PyDataset)
    batches = list(loader)
    assert len(batches) == 240 // 32 and loader.epoch == 1
    x, y, d = batches[0]
    assert x.shape == (32, 32, 32, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.dtype == np.int64 and d.dtype == np.int64
    assert set(np.concatenate([b[2] for b in batches]).tolist()) == {0, 1}
    # numpy batches convert on the active backend
    t = keras.ops.convert_to_tensor(x)
    assert tuple(t.shape) == x.shape


def test_epochs_reshuffle_and_resume(proto):
    loader = make_loader(proto.source_train, proto.transform_train, 16, train=True, seed=5)
    e0 = np.concatenate([y for _, y, _ in loader])
    e1 = np.concatenate([y for _, y, _ in loader])
    assert not np.array_equal(e0, e1)
    loader.set_epoch(1)
    assert np.array_equal(np.concatenate([y for _, y, _ in loader]), e1)
    loader.set_epoch(0)
    loader.on_epoch_end()  # what model.fit calls
    assert loader.epoch == 1


def test_eval_loader_and_balanced(proto):
    loader = make_loader(proto.target_test, proto.transform_test, 16, train=False)
    assert np.array_equal(np.concatenate([y for _, y, _ in loader]), proto.target_test.labels)
    with pytest.raises(IndexError):
        loader[len(loader)]
    bal = make_loader(
        proto.source_train, proto.transform_train, 20, train=True, sampler="balanced", num_batches=4
    )
    assert len(bal) == 4
    for _, _, d in bal:
        assert np.bincount(d).tolist() == [10, 10]


def test_file_split_and_corrupt_policy(tmp_path):
    counts = write_domainnet_tree(tmp_path, ("a", "b"), 3, (2, 1), size_range=(230, 260))
    s = get_suite("domainnet", root=tmp_path, num_classes=3, expected=counts, domains=("a", "b"))
    p = s.protocol("b")
    bad = p.source_train.path(2)
    bad.write_bytes(b"broken")
    loader = make_loader(p.source_train, p.transform_train, 3, train=False)
    xs = [x for x, _, _ in loader]
    assert xs[0].shape[1:] == (224, 224, 3) and sum(len(x) for x in xs) == 5
    assert loader.skipped == 1 and str(bad) in loader.skipped_files()[0]
    with pytest.raises(DataError, match=str(bad).replace("/", ".")):
        list(make_loader(p.source_train, p.transform_train, 3, train=False, on_corrupt="fail"))
