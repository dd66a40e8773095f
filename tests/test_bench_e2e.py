"""``python -m harness.bench e2e`` and its synthetic DomainNet tree (:mod:`harness.data.jpeg_tree`).

* the generated tree is in the exact layout the DomainNet suite reads (loaded and fully checked by the
  project's own loader), deterministic (same bytes twice, with or without worker processes), cached
  (reused when complete, regenerated when a file is damaged), 345 classes by default;
* the CLI: a dry run prints the plan without importing a framework; bad flags give one ``error:`` line
  naming the flag and exit 2; a tiny real torch run (ResNet-18, 32×32 crops, 2 steps, 1 round) reports
  data-only, compute-only and e2e images/s and which side bounds the step;
* ``scripts/gpu_bench.sh`` in its seconds-long dry-run mode.

Only the tiny real run needs torch (``@pytest.mark.torch``); everything else is framework-neutral.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.data import get_suite
from harness.data.domains import DOMAINNET
from harness.data.jpeg_tree import (
    MANIFEST,
    TreeSpec,
    cache_root,
    ensure_tree,
    file_plan,
    read_manifest,
    render_jpeg,
)
from harness.drivers import bench_e2e

ROOT = Path(__file__).resolve().parents[1]
SMALL = TreeSpec(classes=4, train_per_domain=4, test_per_domain=4)
_NAME = re.compile(r"^(?P<d>[a-z]+)/class_(?P<c>\d{3})/(?P=d)_(?P<n>\d{3})_\d{6}\.jpg$")


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root, manifest, reused = ensure_tree(SMALL, root=tmp_path_factory.mktemp("tree") / "t", workers=1)
    assert not reused
    return root, manifest


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- the tree
def test_tree_is_read_by_the_domainnet_loader(small_tree: tuple[Path, dict]) -> None:
    root, manifest = small_tree
    suite = get_suite("domainnet", str(root), num_classes=SMALL.classes, expected=SMALL.expected())
    rep = suite.check(images="full", workers=1)  # every split line parsed, every image decoded
    assert rep.ok, rep.format()
    assert [(r.domain, r.split, r.found) for r in rep.rows] == [
        (d, s, SMALL.count(s)) for d in DOMAINNET for s in ("train", "test")
    ]
    proto = suite.protocol("clipart", seed=0)
    assert proto.num_classes == SMALL.classes
    assert len(proto.source_train) == 5 * SMALL.train_per_domain
    from harness.data.pipeline import load_batch

    b = load_batch(
        proto.source_train, np.arange(6), bench_e2e.train_transform(32), seed=0, epoch=0, layout="HWC"
    )
    assert b.x.shape == (6, 32, 32, 3) and not b.skipped and np.isfinite(b.x).all()
    assert manifest["images"] == SMALL.num_images and manifest["counts"] == SMALL.expected()


def test_tree_layout_is_the_published_one(small_tree: tuple[Path, dict]) -> None:
    root, _ = small_tree
    for d in DOMAINNET:
        for s in ("train", "test"):
            lines = (root / f"{d}_{s}.txt").read_text().splitlines()
            assert len(lines) == SMALL.count(s) and lines == sorted(lines)
            for line in lines:
                path, label = line.split(" ")
                m = _NAME.match(path)
                assert m and m["d"] == d, path
                assert int(m["c"]) == int(label) and int(m["n"]) == int(label) + 1  # NNN is 1-based
                data = (root / path).read_bytes()
                assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"  # a complete JPEG
    assert (root / MANIFEST).is_file()


def test_images_are_varied_and_domainnet_sized() -> None:
    import io

    from PIL import Image

    spec = TreeSpec()
    for d in DOMAINNET:
        data = render_jpeg(spec, d, "train", 0)
        im = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert 180 <= min(im.shape[:2]) and max(im.shape[:2]) <= 1000, (d, im.shape)
        assert im.reshape(-1, 3).std(0).max() > 10, d  # not a flat colour
        colours = len(np.unique(im.reshape(-1, 3)[::7], axis=0))
        assert colours > (10 if d == "quickdraw" else 100), (d, colours)  # quickdraw: black strokes on white
    assert render_jpeg(spec, "quickdraw", "train", 3)[:2] == b"\xff\xd8"


def test_tree_is_deterministic_and_cached(tmp_path: Path, small_tree: tuple[Path, dict]) -> None:
    spec = TreeSpec(classes=3, train_per_domain=2, test_per_domain=1, domains=("clipart", "real", "sketch"))
    a, ma, _ = ensure_tree(spec, root=tmp_path / "a", workers=1)
    b, mb, _ = ensure_tree(spec, root=tmp_path / "b", workers=2)  # worker processes: same bytes
    assert ma["sha256"] == mb["sha256"] and ma["bytes"] == mb["bytes"]
    assert {k: v for k, v in _files(a).items() if k != MANIFEST} == {
        k: v for k, v in _files(b).items() if k != MANIFEST
    }
    # a complete tree is reused (nothing rewritten); a damaged one is regenerated
    one = a / file_plan(spec)[0][3]
    mtime = one.stat().st_mtime_ns
    _, _, reused = ensure_tree(spec, root=a)
    assert reused and one.stat().st_mtime_ns == mtime
    good = one.read_bytes()
    one.write_bytes(good[:100])
    assert read_manifest(a, spec) is None
    _, _, reused = ensure_tree(spec, root=a)
    assert not reused and one.read_bytes() == good
    # the cache folder is keyed by the spec
    assert cache_root(spec, tmp_path).parent == tmp_path / "domainnet-synth"
    assert cache_root(spec, tmp_path) != cache_root(TreeSpec(classes=3, train_per_domain=3), tmp_path)
    # another spec's manifest is not taken for this one
    assert read_manifest(a, TreeSpec(classes=3, train_per_domain=2)) is None


def test_default_is_345_classes_in_six_domains() -> None:
    spec = TreeSpec()
    assert spec.classes == 345 and spec.domains == DOMAINNET and spec.train_per_domain == 345
    plan = bench_e2e.plan_from_args(bench_e2e.build_parser().parse_args([]))
    assert plan.classes == 345 and plan.tree_spec() == spec
    labels = {y for d, s, _, _, y in file_plan(spec) if d == "real" and s == "train"}
    assert labels == set(range(345))  # every class present in every domain's training split


# ---------------------------------------------------------------------------------------------- CLI
def test_dry_run_prints_the_plan_and_imports_no_framework(tmp_path: Path) -> None:
    argv = [
        "--dry-run", "--arch", "resnet50,resnet101", "--precision", "fp32,bf16", "--workers", "0,2,4",
        "--memory-format", "default,channels_last", "--data-root", str(tmp_path),
    ]  # fmt: skip
    frameworks = ("torch", "tensorflow", "keras", "jax", "impl_torch", "impl_keras")
    code = (
        "import sys\n"
        "from harness.drivers.bench_e2e import main\n"
        f"rc = main({argv!r})\n"
        f"bad = [m for m in {frameworks!r} if m in sys.modules]\n"
        "assert rc == 0 and not bad, (rc, bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout and "2952 JPEGs" in r.stdout and "345 classes" in r.stdout
    assert "16 model(s)" in r.stdout and "loader workers 0, 2, 4" in r.stdout
    assert not list(tmp_path.iterdir())  # nothing generated


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--workers", "0,x"], "--workers"),
        (["--workers", "-1"], "--workers"),
        (["--arch", "vgg16"], "--arch"),
        (["--variants", "static,,sr"], "--variants"),
        (["--precision", "fp8"], "--precision"),
        (["--device", "tpu"], "--device"),
        (["--frameworks", "jax"], "--frameworks"),
        (["--steps", "0"], "--steps"),
        (["--rounds", "two"], "--rounds"),
        (["--batch-size", "0"], "--batch-size"),
        (["--classes", "1"], "--classes"),
        (["--images-per-domain", "0"], "--images-per-domain"),
        (["--memory-format", "nchw"], "--memory-format"),
        (["--method", "nope"], "--method"),
        (["--target", "mars"], "--target"),
        (["--budget", "-3"], "--budget"),
        (["--crop", "8"], "--crop"),
        (["--bogus"], "--bogus"),
        (["--steps"], "--steps"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv: list[str], flag: str, capsys: pytest.CaptureFixture) -> None:
    from harness.bench.__main__ import main

    try:
        rc = main(["e2e", "--dry-run", *argv])
    except SystemExit as e:  # argparse's own errors (unknown flag, missing value)
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and flag in err, err


def test_bound_by_is_the_slower_side() -> None:
    def cand(path: str, ips: float | None, workers: int | None = None, status: str = "ok") -> dict:
        model = (
            None
            if path == "data"
            else {
                "framework": "torch",
                "arch": "resnet50",
                "variant": "sr",
                "precision": "fp32",
                "memory_format": "default",
            }
        )
        key = f"{path}|" + ("torch|resnet50|sr|fp32|default" if model else "torch")
        key += "" if workers is None else f"|w{workers}"
        d = {
            "key": key,
            "path": path,
            "framework": "torch",
            "workers": workers,
            "model": model,
            "status": status,
            "note": "" if status == "ok" else "why",
        }
        return d | ({"images_per_s": ips} if ips is not None else {})

    rows = bench_e2e.rows_of(
        [
            cand("data", 50.0, 0),
            cand("data", 400.0, 4),
            cand("compute", 200.0),
            cand("e2e", 40.0, 0),
            cand("e2e", 190.0, 4),
        ]
    )
    assert [(r["workers"], r["bound_by"], r["e2e_over_bound"]) for r in rows] == [
        (0, "data", 0.8),
        (4, "compute", 0.95),
    ]
    rows = bench_e2e.rows_of(
        [cand("data", None, 2, "unsupported"), cand("compute", 200.0), cand("e2e", None, 2, "unsupported")]
    )
    assert rows[0]["bound_by"] is None and rows[0]["status"] == "incomplete" and rows[0]["note"] == "why"


@pytest.mark.torch
def test_tiny_torch_run_reports_three_figures_and_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from harness.bench.__main__ import main

    out = tmp_path / "out"
    rc = main(
        [
            "e2e",
            "--arch",
            "resnet18",
            "--variants",
            "static",
            "--crop",
            "32",
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--classes",
            "4",
            "--images-per-domain",
            "3",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--frameworks",
            "torch",
            "--formulation",
            "kernel_merge",
            "--tree",
            str(tmp_path / "t"),
            "--gen-workers",
            "1",
            "--out",
            str(out),
            "--json",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    doc = json.loads((out / "e2e.json").read_text())
    (run,) = doc["runs"]
    (row,) = run["rows"]
    for k in ("data_img_s", "compute_img_s", "e2e_img_s"):
        assert row[k] is not None and row[k] > 0, row
    assert row["bound_by"] in ("data", "compute") and row["status"] == "ok"
    assert row["bound_by"] == ("data" if row["data_img_s"] < row["compute_img_s"] else "compute")
    assert {c["path"] for c in run["candidates"]} == {"data", "compute", "e2e"}
    assert all(c["rounds"] == 1 and len(c["samples_s"]) == 1 for c in run["candidates"])
    assert run["hardware"]["versions"]["torch"] and run["hardware"]["machine"] and not run["partial"]
    assert doc["data"]["sha256"] and doc["plan"]["steps"] == 2
    md = (out / "e2e.md").read_text()
    assert "bound by" in md and "data-only" in md and "compute-only" in md
    assert re.search(r"\| torch +\| resnet18 +\| static +\| fp32 +\| default +\| 0 +\|", md), md


def test_gpu_bench_script_dry_run(tmp_path: Path) -> None:
    env = dict(os.environ, GPU_BENCH_DRY_RUN="1", OUT=str(tmp_path / "perf"), PYTHON=sys.executable)
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_bench.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "dry run" in out and "harness.bench e2e" in out and "--memory-format default,channels_last" in out
    assert "--precision fp32,bf16" in out and "harness.bench --gpu" in out
    assert out.count("harness.bench e2e plan (dry run") >= 3
    assert not [p for p in (tmp_path / "perf").rglob("*") if p.is_file()]  # nothing measured or written
