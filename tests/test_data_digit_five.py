"""digit-five loader on .mat files written in the published formats (keys, shapes, dtypes), defects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from harness.data import get_suite
from harness.data.fixtures import write_digit_five
from harness.errors import DataError

N_TR, N_TE = 40, 20


@pytest.fixture()
def d5root(tmp_path: Path) -> tuple[Path, dict]:
    counts = write_digit_five(tmp_path / "d5", N_TR, N_TE)
    return tmp_path / "d5", counts


def _suite(root: Path, counts: dict, **kw):
    return get_suite(
        "digit-five",
        root=root,
        expected=counts,
        n_train=kw.pop("n_train", 30),
        n_test=kw.pop("n_test", 15),
        **kw,
    )


def test_clean_fixture_passes_with_exact_counts(d5root):
    root, counts = d5root
    rep = _suite(root, counts).check()
    assert rep.ok, rep.format()
    assert {(r.domain, r.split): r.found for r in rep.rows} == {
        (d, s): counts[d][s] for d in counts for s in ("train", "test")
    }


def test_published_counts_are_the_default_expectation(d5root):
    root, _ = d5root
    rep = get_suite("digit-five", root=root).check()
    assert not rep.ok
    mism = {(r.domain, r.split): r.expected for r in rep.rows if not r.ok}
    assert mism[("mnist", "train")] == 55000 and mism[("svhn", "test")] == 26032
    assert mism[("usps", "train")] == 7438 and mism[("syn", "test")] == 9000


def test_protocol_sizes_formats_and_label_mapping(d5root):
    root, counts = d5root
    s = _suite(root, counts)
    for d in s.domains:
        tr, te = s.split(d, "train"), s.split(d, "test")
        assert tr.images.shape[1:] == (32, 32, 3) and tr.images.dtype == np.uint8
        assert len(tr) == 30 and len(te) == (N_TE if d == "usps" else 15)
        assert set(np.unique(tr.labels)) <= set(range(10))
    # SVHN: label 10 in the file is digit 0; the bar pattern sits at row 2 + label
    sv = s.raw("svhn")["train"]
    assert (sv[1] == np.arange(N_TR) % 10).all()
    assert sv[0][0, 2, 5, 0] == 255 and (sv[1][0] == 0)
    # mnistm 28 -> 32 and usps cell layout / float [0, 1] -> uint8
    assert s.raw("mnistm")["train"][0].shape == (N_TR, 32, 32, 3)
    assert s.raw("usps")["test"][0].shape == (N_TE, 32, 32, 3)
    assert (s.raw("usps")["train"][1] == np.arange(N_TR) % 10).all()


def test_usps_train_is_tiled_to_protocol_size(d5root):
    root, counts = d5root
    s = _suite(root, counts, n_train=100)
    tr = s.split("usps", "train")
    assert len(tr) == 100
    assert s.expected_counts()["usps"] == {"train": 100, "test": N_TE}


def test_protocol_pools_sources_with_domain_ids(d5root):
    root, counts = d5root
    p = _suite(root, counts).protocol("svhn")
    assert p.sources == ("mnist", "mnistm", "usps", "syn")
    assert np.bincount(p.source_train.domains).tolist() == [30, 30, 30, 30]
    assert (p.target_train.domains == 4).all() and (p.target_test.domains == 4).all()


def _rewrite(path: Path, **changes):
    m = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    for k, v in changes.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    scipy.io.savemat(path, m)


def test_missing_root_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("DRT_DIGIT_FIVE_ROOT", raising=False)
    s = get_suite("digit-five", root=tmp_path / "nope")
    rep = s.check()
    assert rep.kinds() == {"missing-root"}
    msg = rep.problems[0].message
    assert str(tmp_path / "nope") in msg and "DRT_DIGIT_FIVE_ROOT" in msg and "--root" in msg
    assert "svhn_train_32x32.mat" in msg
    with pytest.raises(DataError, match="DRT_DIGIT_FIVE_ROOT"):
        s.split("mnist", "train")


def test_env_var_sets_root(d5root, monkeypatch):
    root, counts = d5root
    monkeypatch.setenv("DRT_DIGIT_FIVE_ROOT", str(root))
    s = get_suite("digit-five", expected=counts)
    assert s.root == root and s.check().ok


@pytest.mark.parametrize(
    "defect,kind,where",
    [
        ("missing_file", "missing-file", "syn_number.mat"),
        ("missing_key", "bad-format", "mnist_data.mat"),
        ("bad_shape", "bad-format", "mnistm_with_label.mat:train"),
        ("not_onehot", "label-out-of-range", "mnist_data.mat:label_test[3]"),
        ("svhn_label", "label-out-of-range", "svhn_test_32x32.mat:y[5]"),
        ("usps_label", "label-out-of-range", "usps_28x28.mat:dataset[0][1][7]"),
        ("missing_class", "missing-class", "syn_number.mat"),
        ("corrupt_mat", "bad-format", "svhn_train_32x32.mat"),
        ("usps_not_cell", "bad-format", "usps_28x28.mat:dataset"),
    ],
)
def test_planted_defect_is_reported_with_location(d5root, defect, kind, where):
    root, counts = d5root
    if defect == "missing_file":
        (root / "syn_number.mat").unlink()
    elif defect == "missing_key":
        _rewrite(root / "mnist_data.mat", label_train=None)
    elif defect == "bad_shape":
        _rewrite(root / "mnistm_with_label.mat", train=np.zeros((N_TR, 32, 32, 3), np.uint8))
    elif defect == "not_onehot":
        lab = scipy.io.loadmat(root / "mnist_data.mat")["label_test"]
        lab[3] = 0
        _rewrite(root / "mnist_data.mat", label_test=lab)
    elif defect == "svhn_label":
        y = scipy.io.loadmat(root / "svhn_test_32x32.mat")["y"]
        y[5] = 11
        _rewrite(root / "svhn_test_32x32.mat", y=y)
    elif defect == "usps_label":
        cell = scipy.io.loadmat(root / "usps_28x28.mat")["dataset"]
        cell[0, 1][7] = 12
        _rewrite(root / "usps_28x28.mat", dataset=cell)
    elif defect == "missing_class":
        y = scipy.io.loadmat(root / "syn_number.mat")["test_label"]
        y[y == 4] = 5
        _rewrite(root / "syn_number.mat", test_label=y)
    elif defect == "corrupt_mat":
        (root / "svhn_train_32x32.mat").write_bytes(b"MATLAB 5.0 garbage" * 3)
    elif defect == "usps_not_cell":
        _rewrite(root / "usps_28x28.mat", dataset=np.zeros((3, 3)))
    rep = _suite(root, counts).check()
    assert not rep.ok
    hits = [p for p in rep.problems if p.kind == kind]
    assert hits, rep.format()
    assert any(where in p.where for p in hits), [str(p) for p in hits]
    if kind != "missing-class":
        dom = {
            "syn_number": "syn",
            "mnist_data": "mnist",
            "mnistm_with": "mnistm",
            "svhn": "svhn",
            "usps": "usps",
        }
        d = next(v for k, v in dom.items() if where.startswith(k))
        with pytest.raises(DataError, match=where.split(":")[0].replace(".", r"\.")):
            _suite(root, counts).split(d, "train" if defect != "not_onehot" else "test")
