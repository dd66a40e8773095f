"""Both adapters produce identical arrays (eval transform, and the seeded train transform) and batch order."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import get_suite
from harness.data.fixtures import write_domainnet_tree
from impl_keras.data import make_loader as keras_loader
from impl_torch.data import make_loader as torch_loader

pytestmark = pytest.mark.cross  # collected only where torch and Keras are installed (tests/conftest.py)


def _same(split, transform, bs, **kw):
    a = list(torch_loader(split, transform, bs, **kw))
    b = list(keras_loader(split, transform, bs, **kw))
    assert len(a) == len(b) > 0
    for (xt, yt, dt), (xk, yk, dk) in zip(a, b):
        assert np.array_equal(xt.numpy().transpose(0, 2, 3, 1), xk)  # bitwise identical, NCHW vs NHWC
        assert np.array_equal(yt.numpy(), yk) and np.array_equal(dt.numpy(), dk)


def test_digits_eval_and_train_identical():
    p = get_suite("smoke").protocol("plain")
    _same(p.target_test, p.transform_test, 16, train=False)
    _same(p.source_train, p.transform_train, 32, train=True, seed=3)
    _same(p.source_train, p.transform_train, 32, train=True, seed=3, sampler="balanced")


def test_domainnet_jpeg_eval_and_seeded_train_identical(tmp_path):
    counts = write_domainnet_tree(tmp_path, ("a", "b"), 3, (2, 2), size_range=(200, 300))
    s = get_suite("domainnet", root=tmp_path, num_classes=3, expected=counts, domains=("a", "b"))
    p = s.protocol("b")
    _same(p.target_test, p.transform_test, 4, train=False)
    _same(p.source_train, p.transform_train, 4, train=True, seed=11)  # random crop + flip, same draws
