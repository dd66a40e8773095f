"""Hostile data inputs (issue 15) replayed on small DomainNet-format trees: each is refused or counted.

Attacks: corrupt images skipped silently (counted now: ``loader.skipped``) and a zero-byte or truncated JPEG
passing the pre-run check (the default level now reads headers); image/class symlinks leaving the data root;
labels that ``int()`` accepts (``+0``, ``0_0``, Arabic-Indic digits, ...); a 13000×13000 JPEG header (a
~0.5 GB decode) passing both check levels. Framework-neutral tests are unmarked; the loader tests are marked
``torch`` / ``keras`` and import their framework lazily (the module is collected in both tox envs).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from harness.data import get_suite, load_batch
from harness.data.__main__ import main as data_main
from harness.data.fixtures import write_domainnet_tree
from harness.data.images import DEFAULT_MAX_PIXELS, OutsideRootError
from harness.data.transforms import TransformSpec
from harness.errors import DataError

DOMAINS = ("clipart", "real", "sketch")
NC = 4
TF = TransformSpec(resize=32, crop=(32, 32))
NO_BOMB_WARNING = "ignore::PIL.Image.DecompressionBombWarning"  # PIL warns when it opens the bomb's header


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("DRT_ALLOW_OUTSIDE_ROOT", raising=False)
    monkeypatch.delenv("DRT_MAX_IMAGE_PIXELS", raising=False)


@pytest.fixture()
def dnroot(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "dn"
    counts = write_domainnet_tree(root, DOMAINS, NC, (3, 2), size_range=(40, 60))
    return root, counts


def _suite(root: Path, counts: dict, **kw):
    return get_suite("domainnet", root=root, num_classes=NC, expected=counts, domains=DOMAINS, **kw)


def _listed(root: Path, split_file: str, line: int) -> Path:
    """The image listed at ``line`` (1-based) of ``split_file``."""
    return root / (root / split_file).read_text().splitlines()[line - 1].split()[0]


def bomb_jpeg(side: int = 13000) -> bytes:
    """A valid ~1 KB JPEG whose frame header declares ``side``×``side`` pixels (a ~0.5 GB RGB decode)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: marker, length(2), precision(1), h(2), w(2)
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


@pytest.fixture()
def no_big_decode(monkeypatch) -> list[tuple[int, int]]:
    """Record the size of every image PIL decodes (load); the test asserts none exceeds the limit."""
    decoded: list[tuple[int, int]] = []
    orig = ImageFile.ImageFile.load

    def load(self):  # noqa: ANN001, ANN202
        decoded.append(tuple(self.size))
        return orig(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return decoded


# -- 1. empty / truncated images: caught by the default (pre-run) check, with the split file's line --------
def test_default_check_catches_empty_and_truncated_jpegs(dnroot, tmp_path, capsys):
    root, counts = dnroot
    empty, trunc = _listed(root, "sketch_train.txt", 1), _listed(root, "sketch_train.txt", 2)
    empty.write_bytes(b"")
    trunc.write_bytes(trunc.read_bytes()[:-200])  # header intact, scan data and FFD9 end marker cut off
    with Image.open(trunc) as im:
        assert im.size[0] > 0  # the header alone still reads
    s = _suite(root, counts)
    assert s.check(images="exists").ok  # the old default let both through
    for rep in (s.check(), s.check(full=False)):  # full=False is what harness/run.py calls before a run
        hits = {p.where: p.message for p in rep.problems if p.kind == "corrupt-image"}
        assert set(hits) == {str(empty), str(trunc)}, rep.format()
        assert "empty file" in hits[str(empty)] and "sketch_train.txt:1" in hits[str(empty)]
        assert "sketch_train.txt:2" in hits[str(trunc)]
    (tmp_path / "exp.json").write_text(json.dumps(counts))
    argv = ["check", "--suite", "domainnet", "--root", str(root), "--domains", ",".join(DOMAINS)]
    argv += ["--num-classes", str(NC), "--expected", str(tmp_path / "exp.json")]
    assert data_main(argv) == 1
    out = capsys.readouterr().out
    assert "sketch_train.txt:1" in out and "sketch_train.txt:2" in out


# -- 2. symlinks leaving the data root ------------------------------------------------------------------
def test_image_symlink_outside_root_refused_unless_allowed(dnroot, tmp_path, monkeypatch):
    root, counts = dnroot
    secret = tmp_path / "outside" / "secret.jpg"
    secret.parent.mkdir()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(secret)
    link = _listed(root, "real_train.txt", 3)
    link.unlink()
    link.symlink_to(secret)
    split_file = root / "real_train.txt"
    rep = _suite(root, counts).check()
    hits = [p for p in rep.problems if p.kind == "outside-root"]
    assert [p.where for p in hits] == [f"{split_file}:3"], rep.format()
    assert str(link) in hits[0].message and str(secret) in hits[0].message
    sp = _suite(root, counts).split("real", "train")  # parsing alone opens no image
    for policy in ("skip", "fail"):  # never skipped as "corrupt": always an error
        with pytest.raises(OutsideRootError, match=f"{split_file}:3"):
            load_batch(sp, np.arange(len(sp)), TF, on_corrupt=policy)
    # a symlink that stays inside the root is fine, and so is a root that is itself a symlink
    link.unlink()
    link.symlink_to(_listed(root, "real_train.txt", 4))
    (tmp_path / "alias").symlink_to(root)
    assert _suite(tmp_path / "alias", counts).check().ok
    # explicit opt-in: suite option or environment
    link.unlink()
    link.symlink_to(secret)
    assert _suite(root, counts, allow_outside_root=True).check().ok
    monkeypatch.setenv("DRT_ALLOW_OUTSIDE_ROOT", "1")
    s = _suite(root, counts)
    assert s.check().ok
    assert len(load_batch(s.split("real", "train"), np.arange(12), TF).y) == 12


def test_class_folder_symlink_outside_root_refused_at_parse(dnroot, tmp_path, monkeypatch):
    root, counts = dnroot
    cdir = root / "sketch" / "class_001"
    cdir.rename(tmp_path / "elsewhere")
    cdir.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    split_file = root / "sketch_train.txt"
    lines = [i for i, ln in enumerate(split_file.read_text().splitlines(), 1) if "class_001" in ln]
    rep = _suite(root, counts).check(images="none")
    hits = [p for p in rep.problems if p.kind == "outside-root" and str(split_file) in p.where]
    assert [p.where for p in hits] == [f"{split_file}:{i}" for i in lines], rep.format()
    assert str(tmp_path / "elsewhere") in hits[0].message
    with pytest.raises(DataError, match=f"{split_file}:{lines[0]}"):
        _suite(root, counts).split("sketch", "train")
    monkeypatch.setenv("DRT_ALLOW_OUTSIDE_ROOT", "1")
    assert _suite(root, counts).check().ok
    monkeypatch.setenv("DRT_ALLOW_OUTSIDE_ROOT", "maybe")
    with pytest.raises(DataError, match="DRT_ALLOW_OUTSIDE_ROOT"):
        _suite(root, counts)


def test_split_file_symlink_outside_root_refused(dnroot, tmp_path):
    root, counts = dnroot
    f = root / "clipart_test.txt"
    (tmp_path / "list.txt").write_text(f.read_text())
    f.unlink()
    f.symlink_to(tmp_path / "list.txt")
    rep = _suite(root, counts).check()
    assert [p.where for p in rep.problems if p.kind == "outside-root"] == [str(f)], rep.format()


# -- 3. labels that int() accepts but are not plain ASCII digits -------------------------------------------
@pytest.mark.parametrize(
    "label",
    ["+0", "0_0", "\u0660", "\u00a01", "1\u00a0", "1.0", "-0", "\uff11", "0x1", "1e0", "\u20281"],
    ids=["plus", "underscore", "arabic-indic", "nbsp-inner", "nbsp-trailing", "float", "minus",
         "fullwidth", "hex", "exp", "line-separator"],
)  # fmt: skip
def test_label_must_be_ascii_digits(dnroot, label):
    root, counts = dnroot
    f = root / "clipart_train.txt"
    lines = f.read_text().splitlines()
    path0, lab0 = lines[0].split()
    lines[0] = f"{path0} {label}"
    f.write_text("\n".join(lines) + "\n")
    where = f"{f}:1"
    rep = _suite(root, counts).check(images="none")
    assert [p.where for p in rep.problems if p.kind == "malformed-line"] == [where], rep.format()
    with pytest.raises(DataError, match=f"{f}:1:"):
        _suite(root, counts).split("clipart", "train")


def test_plain_labels_and_ascii_spacing_still_parse(dnroot):
    root, counts = dnroot
    f = root / "clipart_train.txt"
    lines = [ln.split() for ln in f.read_text().splitlines()]
    text = [f"{p}\t{'0' + lab}  " for p, lab in lines[:2]] + [f"{p} {lab}\r" for p, lab in lines[2:]]
    f.write_text("\n".join(text) + "\n")  # leading zeros, tabs, trailing spaces and CRLF are plain ASCII
    sp = _suite(root, counts).split("clipart", "train")
    assert sp.labels.tolist() == [int(lab) for _, lab in lines]
    assert sp.sources[-1] == f"{f}:{len(lines)}"


# -- 4. a 13000x13000 header: refused from the header, never decoded ---------------------------------------
@pytest.mark.filterwarnings(NO_BOMB_WARNING)
def test_pixel_bomb_refused_by_check_and_never_decoded(dnroot, no_big_decode, monkeypatch):
    root, counts = dnroot
    bomb = _listed(root, "sketch_test.txt", 2)
    bomb.write_bytes(bomb_jpeg(13000))
    assert bomb.stat().st_size < 4096
    with Image.open(bomb) as im:
        assert im.size == (13000, 13000)
    for rep in (_suite(root, counts).check(), _suite(root, counts).check(full=True)):
        hits = [p for p in rep.problems if p.kind == "image-too-large"]
        assert [p.where for p in hits] == [str(bomb)], rep.format()
        assert "sketch_test.txt:2" in hits[0].message and "13000x13000" in hits[0].message
        assert rep.kinds() == {"image-too-large"}
    # during loading: skipped (and reported), not decoded
    sp = _suite(root, counts).split("sketch", "test")
    b = load_batch(sp, np.arange(len(sp)), TF)
    assert len(b.y) == len(sp) - 1 and len(b.skipped) == 1 and "exceeds the limit" in b.skipped[0]
    with pytest.raises(DataError, match="sketch_test.txt:2"):
        load_batch(sp, np.arange(len(sp)), TF, on_corrupt="fail")
    assert no_big_decode and max(w * h for w, h in no_big_decode) <= DEFAULT_MAX_PIXELS
    # the knob: a higher limit lets the header check pass (still not decoded: the file ends with FFD9)
    assert _suite(root, counts, max_pixels=170_000_000).check().ok
    monkeypatch.setenv("DRT_MAX_IMAGE_PIXELS", "170000000")
    assert _suite(root, counts).check().ok
    assert max(w * h for w, h in no_big_decode) <= DEFAULT_MAX_PIXELS
    monkeypatch.setenv("DRT_MAX_IMAGE_PIXELS", "1000")  # smaller than every fixture image
    rep = _suite(root, counts).check()
    assert len([p for p in rep.problems if p.kind == "image-too-large"]) == sum(
        c for d in counts.values() for c in d.values()
    )
    monkeypatch.setenv("DRT_MAX_IMAGE_PIXELS", "64e6")
    with pytest.raises(DataError, match="DRT_MAX_IMAGE_PIXELS"):
        _suite(root, counts)


def test_fifo_named_like_an_image_does_not_hang(dnroot):
    root, counts = dnroot
    img = _listed(root, "real_test.txt", 1)
    img.unlink()
    os.mkfifo(img)
    rep = _suite(root, counts).check()
    assert [p.where for p in rep.problems] == [str(img)] and "not a regular file" in rep.problems[0].message
    sp = _suite(root, counts).split("real", "test")
    assert len(load_batch(sp, np.arange(len(sp)), TF).skipped) == 1


# -- skipped images are counted by both frameworks' loaders ------------------------------------------------
BATCH = 4
CORRUPT = {0: "empty", 2: "truncated", 5: "garbage", 7: "bomb"}  # split positions; batches of 4, in order


def _corrupt_split(root: Path, counts: dict):
    sp = _suite(root, counts).split("clipart", "train")
    assert len(sp) == 12
    for i, kind in CORRUPT.items():
        p = sp.path(i)
        data = p.read_bytes()
        bad = {"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"GIF89a", "bomb": bomb_jpeg()}
        p.write_bytes(bad[kind])
    return sp


def _expect_pass(loader, sp, ys, skipped_before: int, first: int = 0) -> None:
    good = [i for i in range(first * BATCH, len(sp)) if i not in CORRUPT]
    assert np.concatenate(ys).tolist() == sp.labels[good].tolist()  # the sample stream is unchanged
    n_bad = sum(1 for i in CORRUPT if i >= first * BATCH)
    assert loader.skipped == skipped_before + n_bad and isinstance(loader.skipped, int)


def _check_loader(make_loader, sp, to_numpy) -> None:
    loader = make_loader(sp, TF, BATCH, train=False)
    assert loader.skipped == 0 and loader.skipped_files() == []
    _expect_pass(loader, sp, [to_numpy(y) for _, y, _ in loader], 0)
    assert loader.skipped == len(CORRUPT)  # one pass: the number of corrupt images in the split
    files = loader.skipped_files()
    assert len(files) == len(CORRUPT)
    for i, msg in zip(sorted(CORRUPT), files):
        assert msg.startswith(str(sp.path(i))) and f"clipart_train.txt:{i + 1}" in msg
    assert "exceeds the limit" in files[-1]
    _expect_pass(loader, sp, [to_numpy(y) for _, y, _ in loader], len(CORRUPT))  # cumulative over epochs
    loader.set_epoch(5, start=1)  # resume mid-pass: batch 0 is not loaded, so not counted
    _expect_pass(loader, sp, [to_numpy(y) for _, y, _ in loader], 2 * len(CORRUPT), first=1)
    assert loader.skipped == 2 * len(CORRUPT) + 2
    assert len(loader.skipped_files()) == len(CORRUPT) * 2 + 2  # all kept (under the cap)


@pytest.mark.torch
@pytest.mark.filterwarnings(NO_BOMB_WARNING)
def test_torch_loader_counts_skipped(dnroot, no_big_decode):
    from impl_torch.data import make_loader

    sp = _corrupt_split(*dnroot)
    _check_loader(make_loader, sp, lambda t: t.numpy())
    assert max(w * h for w, h in no_big_decode) <= DEFAULT_MAX_PIXELS
    loader = make_loader(sp, TF, BATCH, train=False, num_workers=2)  # skips travel back from workers
    assert sum(len(y) for _, y, _ in loader) == len(sp) - len(CORRUPT) and loader.skipped == len(CORRUPT)


@pytest.mark.keras
@pytest.mark.filterwarnings(NO_BOMB_WARNING)
def test_keras_loader_counts_skipped(dnroot, no_big_decode):
    from impl_keras.data import make_loader

    sp = _corrupt_split(*dnroot)
    _check_loader(make_loader, sp, np.asarray)
    assert max(w * h for w, h in no_big_decode) <= DEFAULT_MAX_PIXELS
    loader = make_loader(sp, TF, BATCH, train=False)
    _ = (loader[0], loader[0])  # what model.fit does: peek at batch 0, then serve the epoch
    for i in range(len(loader)):
        _ = loader[i]
    assert loader.skipped == len(CORRUPT)
    loader.on_epoch_end()
    _ = loader[0]
    assert loader.skipped == len(CORRUPT) + 2
