"""The generated `digits` suite: determinism, leak-free splits, atomic cache, real domain shift."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from harness.data import digits as gen
from harness.data import get_suite
from harness.data.shift import cross_domain_matrix
from harness.errors import DataError


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize("domain", gen.DOMAINS)
def test_same_seed_same_bytes_other_seed_differs(domain):
    a = gen.generate(domain, "train", 24, seed=3)
    b = gen.generate(domain, "train", 24, seed=3)
    c = gen.generate(domain, "train", 24, seed=4)
    assert all(_sha(x) == _sha(y) for x, y in zip(a, b))
    assert _sha(a[0]) != _sha(c[0])
    x, y, _ = a
    assert x.shape == (24, 32, 32, 3) and x.dtype == np.uint8 and y.min() >= 0 and y.max() <= 9


@pytest.mark.parametrize("domain", gen.DOMAINS)
def test_no_test_base_in_train(domain):
    tr, te = gen.base_split(domain, seed=0)
    assert len(set(tr) & set(te)) == 0
    # beyond the base count (jittered copies) the bases still come from the same split only
    n = 30 if domain in ("syn", "svhn") else 900
    _, _, btr = gen.generate(domain, "train", n, seed=0)
    _, _, bte = gen.generate(domain, "test", 60, seed=0)
    assert len(np.intersect1d(btr, bte)) == 0


def test_mnist_and_mnistm_use_disjoint_digits():
    a = np.concatenate(gen.base_split("mnist", 0))
    b = np.concatenate(gen.base_split("mnistm", 0))
    assert len(a) == len(b) == 2500 and len(np.intersect1d(a, b)) == 0


def test_cache_is_atomic_keyed_and_checked(tmp_path: Path):
    s = get_suite("digits", root=tmp_path, n_train=20, n_test=10, verbose=False)
    assert f"v{gen.GENERATOR_VERSION}-20x10-s0-" in s.cache_dir.name
    for k in ("pillow", "freetype", "scikit-image", "numpy", "matplotlib", "generator"):
        assert k in s.key
    info = s.prepare()
    assert sorted(info["built"]) == sorted(gen.DOMAINS) and info["bytes"] > 0
    files = sorted(p.name for p in s.cache_dir.iterdir())
    assert files == sorted([f"{d}.npz" for d in gen.DOMAINS] + ["manifest.json"])  # no temp files left
    rep = s.check()
    assert rep.ok, rep.format()
    # a fresh suite object reads the same bytes back
    s2 = get_suite("digits", root=tmp_path, n_train=20, n_test=10, build=False)
    assert _sha(s2.split("svhn", "test").images) == _sha(s.split("svhn", "test").images)
    assert s2.prepare()["built"] == []
    # tampering is detected
    f = s.domain_file("usps")
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    rep = get_suite("digits", root=tmp_path, n_train=20, n_test=10).check()
    assert rep.kinds() == {"checksum"} and str(f) in rep.problems[0].where


def test_missing_cache_without_build_is_a_clear_error(tmp_path):
    s = get_suite("digits", root=tmp_path, n_train=5, n_test=5, build=False)
    with pytest.raises(DataError, match="prepare --suite digits"):
        s.split("mnist", "train")
    rep = s.check()
    assert rep.kinds() == {"missing-file"} and not rep.ok


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    from harness.data import cache

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.save_npz_atomic(tmp_path / "x.npz", {"a": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_protocol_domain_ids(tmp_path):
    s = get_suite("digits", root=tmp_path, n_train=20, n_test=10, verbose=False)
    p = s.protocol("mnistm", seed=1)
    assert p.sources == ("mnist", "usps", "syn", "svhn") and p.domains[-1] == "mnistm"
    assert np.bincount(p.source_train.domains).tolist() == [20, 20, 20, 20]
    assert (p.target_train.domains == 4).all() and len(p.target_test) == 10
    assert p.source_train.images.shape == (80, 32, 32, 3)
    assert p.summary()["source_train_per_domain"] == {"mnist": 20, "usps": 20, "syn": 20, "svhn": 20}


def test_shift_is_real(tmp_path):
    """Small cross-domain matrix: in-domain accuracy clearly above cross-domain accuracy."""
    s = get_suite("digits", root=tmp_path, n_train=200, n_test=80, verbose=False)
    res = cross_domain_matrix(s, n_train=200, n_test=80)
    m = np.array(res["matrix"])
    assert res["diagonal_mean"] > res["off_diagonal_mean"] + 15, res
    assert (np.diag(m) > 40).all(), res
    i = res["domains"].index
    assert m[i("mnist"), i("mnist")] > m[i("mnist"), i("mnistm")] + 20  # mnist -> mnistm is hard
