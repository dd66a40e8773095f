"""domainnet loader on a DomainNet-shaped tree of real JPEGs with split files; planted defects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.data import get_suite, load_batch
from harness.data.fixtures import write_domainnet_tree
from harness.data.transforms import TransformSpec
from harness.errors import DataError

DOMAINS = ("clipart", "real", "sketch")
NC = 4


@pytest.fixture()
def dnroot(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "dn"
    counts = write_domainnet_tree(root, DOMAINS, NC, (3, 2), size_range=(40, 70))
    return root, counts


def _suite(root: Path, counts: dict):
    return get_suite("domainnet", root=root, num_classes=NC, expected=counts, domains=DOMAINS)


def test_clean_tree_passes_with_exact_counts(dnroot):
    root, counts = dnroot
    rep = _suite(root, counts).check(images="full")
    assert rep.ok, rep.format()
    assert {(r.domain, r.split): r.found for r in rep.rows} == {
        (d, s): counts[d][s] for d in DOMAINS for s in ("train", "test")
    }
    assert all(r.classes == NC for r in rep.rows)


def test_cleaned_release_counts_are_default(dnroot):
    root, _ = dnroot
    s = get_suite("domainnet", root=root)
    assert s.expected_counts()["painting"] == {"train": 50416, "test": 21850}
    assert s.expected_counts()["real"]["test"] == 52041
    assert s.num_classes == 345 and len(s.domains) == 6


def test_protocol_and_files(dnroot):
    root, counts = dnroot
    p = _suite(root, counts).protocol("real")
    assert p.sources == ("clipart", "sketch")
    assert len(p.source_train) == counts["clipart"]["train"] + counts["sketch"]["train"]
    assert set(p.source_train.domains.tolist()) == {0, 1} and set(p.target_test.domains.tolist()) == {2}
    img = p.target_test.load(0)
    assert img.mode == "RGB"
    assert p.transform_train.crop == (224, 224) and p.transform_test.deterministic


def test_missing_root_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DRT_DOMAINNET_ROOT", str(tmp_path / "elsewhere"))
    s = get_suite("domainnet")
    with pytest.raises(DataError) as e:
        s.split("real", "train")
    msg = str(e.value)
    assert str(tmp_path / "elsewhere") in msg and "$DRT_DOMAINNET_ROOT" in msg and "{domain}_train.txt" in msg


def _append(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    lines.append(text)
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


@pytest.mark.parametrize(
    "defect,kind",
    [
        ("missing_image", "missing-file"),
        ("garbage_image", "corrupt-image"),
        ("truncated_jpeg", "corrupt-image"),
        ("three_fields", "malformed-line"),
        ("bad_label_text", "malformed-line"),
        ("wrong_prefix", "malformed-line"),
        ("label_range", "label-out-of-range"),
        ("duplicate", "duplicate"),
        ("missing_class", "missing-class"),
        ("missing_split_file", "missing-file"),
        ("count", "count-mismatch"),
    ],
)
def test_planted_defect_is_reported_with_location(dnroot, defect, kind):
    root, counts = dnroot
    split_file = root / "sketch_train.txt"
    first = split_file.read_text().splitlines()[0].split()[0]
    where = None
    if defect == "missing_image":
        (root / first).unlink()
        where = str(root / first)
    elif defect in ("garbage_image", "truncated_jpeg"):
        data = (root / first).read_bytes()
        (root / first).write_bytes(
            b"not a jpeg at all" if defect == "garbage_image" else data[: len(data) // 2]
        )
        where = str(root / first)
    elif defect == "three_fields":
        where = f"{split_file}:{_append(split_file, 'sketch/class_000/x.jpg 1 2')}"
    elif defect == "bad_label_text":
        where = f"{split_file}:{_append(split_file, 'sketch/class_000/x.jpg one')}"
    elif defect == "wrong_prefix":
        where = f"{split_file}:{_append(split_file, 'real/class_000/x.jpg 0')}"
    elif defect == "label_range":
        where = f"{split_file}:{_append(split_file, f'{first} {NC}')}"
    elif defect == "duplicate":
        where = f"{split_file}:{_append(split_file, f'{first} 0')}"
    elif defect == "missing_class":
        lines = [ln for ln in split_file.read_text().splitlines() if not ln.endswith(" 2")]
        split_file.write_text("\n".join(lines) + "\n")
        where = str(split_file)
    elif defect == "missing_split_file":
        (root / "clipart_test.txt").unlink()
        where = str(root / "clipart_test.txt")
    if defect == "count":
        counts = {d: dict(v) for d, v in counts.items()}
        counts["real"]["test"] += 1
        rep = _suite(root, counts).check()
        bad = [r for r in rep.rows if not r.ok]
        assert [(r.domain, r.split, r.found, r.expected) for r in bad] == [
            ("real", "test", counts["real"]["test"] - 1, counts["real"]["test"])
        ]
        assert not rep.ok and "MISMATCH" in rep.format()
        return
    rep = _suite(root, counts).check(images="header")
    assert not rep.ok
    hits = [p for p in rep.problems if p.kind == kind]
    assert hits, rep.format()
    assert any(p.where == where for p in hits), ([str(p) for p in hits], where)
    if defect in ("missing_image", "garbage_image", "truncated_jpeg"):
        assert "sketch_train.txt:1" in hits[0].message  # says where it was listed
    if kind in ("malformed-line", "label-out-of-range", "duplicate"):
        with pytest.raises(DataError, match=where.replace("/", ".")):
            _suite(root, counts).split("sketch", "train")


def test_subset_option_and_default_check_mode(dnroot):
    root, counts = dnroot
    s = get_suite("domainnet", root=root, num_classes=NC, expected=counts, domains=DOMAINS, n_train=5)
    tr = s.split("clipart", "train")
    assert len(tr) == 5 and len(s.split("clipart", "test")) == counts["clipart"]["test"]
    assert list(tr.paths) == sorted(tr.paths)  # a sorted, fixed subset
    sp = s.split("real", "test")
    sp.path(0).write_bytes(b"garbage")
    assert s.check(images="exists").ok  # existence only
    assert s.check().kinds() == {"corrupt-image"}  # default: headers read (the pre-run check)
    assert s.check(images="header").kinds() == {"corrupt-image"}
    assert s.check(full=True).kinds() == {"corrupt-image"}


def test_known_gap_is_a_note_not_a_problem(dnroot):
    root, counts = dnroot
    f = root / "sketch_train.txt"
    f.write_text("\n".join(ln for ln in f.read_text().splitlines() if not ln.endswith(" 3")) + "\n")
    counts["sketch"]["train"] -= 3
    s = get_suite(
        "domainnet",
        root=root,
        num_classes=NC,
        expected=counts,
        domains=DOMAINS,
        known_missing={("sketch", "train"): (3,)},
    )
    rep = s.check()
    assert rep.ok, rep.format()
    assert any("class 3" in n for n in rep.notes)


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_corrupt_image_during_loading_policy(dnroot, policy):
    root, counts = dnroot
    sp = _suite(root, counts).split("real", "train")
    (sp.path(1)).write_bytes(b"garbage")
    tf = TransformSpec.domainnet(False)
    if policy == "fail":
        with pytest.raises(DataError, match=str(sp.path(1)).replace("/", ".")):
            load_batch(sp, np.arange(4), tf, on_corrupt="fail")
    else:
        b = load_batch(sp, np.arange(4), tf, on_corrupt="skip")
        assert b.x.shape == (3, 224, 224, 3) and b.index.tolist() == [0, 2, 3]
        assert len(b.skipped) == 1 and str(sp.path(1)) in b.skipped[0]
