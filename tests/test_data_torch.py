"""impl_torch.data: DataLoader adapter (NCHW float32, int64 y/d, seeded epochs, samplers, corrupt policy)."""

from __future__ import annotations

import pytest
import torch

from harness.data import get_suite
from harness.data.fixtures import write_domainnet_tree
from harness.errors import DataError
from impl_torch.data import make_loader

pytestmark = pytest.mark.torch  # collected only where torch is installed (tests/conftest.py)


@pytest.fixture(scope="module")
def proto():
    return get_suite("smoke").protocol("colour")


def test_batches_shapes_and_types(proto):
    loader = make_loader(proto.source_train, proto.transform_train, 32, train=True, seed=0)
    assert isinstance(loader, torch.utils.data.DataLoader)
    batches = list(loader)
    assert len(batches) == len(loader) == 240 // 32
    x, y, d = batches[0]
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.dtype == torch.int64 and d.dtype == torch.int64
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert set(torch.cat([b[2] for b in batches]).tolist()) == {0, 1}


def test_epochs_reshuffle_and_resume(proto):
    loader = make_loader(proto.source_train, proto.transform_train, 16, train=True, seed=5)
    e0 = torch.cat([y for _, y, _ in loader])
    e1 = torch.cat([y for _, y, _ in loader])
    assert loader.epoch == 2 and not torch.equal(e0, e1)
    loader.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y, _ in loader]), e1)


def test_eval_loader_in_order_keeps_last_batch(proto):
    loader = make_loader(proto.target_test, proto.transform_test, 16, train=False)
    ys = torch.cat([y for _, y, _ in loader])
    assert torch.equal(ys, torch.from_numpy(proto.target_test.labels))
    assert [len(y) for _, y, _ in loader] == [16, 16, 8]


def test_balanced_sampler(proto):
    loader = make_loader(
        proto.source_train, proto.transform_train, 20, train=True, sampler="balanced", num_batches=5
    )
    for _, _, d in loader:
        assert torch.bincount(d).tolist() == [10, 10]


def test_workers_give_the_same_batches(proto):
    a = [x for x, _, _ in make_loader(proto.source_train, proto.transform_train, 64, train=True, seed=2)]
    b = [
        x
        for x, _, _ in make_loader(
            proto.source_train, proto.transform_train, 64, train=True, seed=2, num_workers=2
        )
    ]
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and len(a) == len(b)


def test_file_split_train_transform_and_corrupt_policy(tmp_path):
    counts = write_domainnet_tree(tmp_path, ("a", "b"), 3, (2, 1), size_range=(230, 260))
    s = get_suite("domainnet", root=tmp_path, num_classes=3, expected=counts, domains=("a", "b"))
    p = s.protocol("b")
    bad = p.source_train.path(2)
    bad.write_bytes(b"broken")
    loader = make_loader(p.source_train, p.transform_train, 3, train=False)
    xs = [x for x, _, _ in loader]
    assert xs[0].shape[1:] == (3, 224, 224) and sum(len(x) for x in xs) == 5
    assert loader.skipped == 1 and str(bad) in loader.skipped_files()[0]
    with pytest.raises(DataError, match=str(bad).replace("/", ".")):
        list(make_loader(p.source_train, p.transform_train, 3, train=False, on_corrupt="fail"))
