"""`python -m harness.data`: check/prepare/show/shift, exit codes, JSON, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness.data import get_suite
from harness.data.__main__ import main
from harness.data.fixtures import write_digit_five, write_domainnet_tree


def test_check_clean_and_defective_domainnet(tmp_path, capsys):
    counts = write_domainnet_tree(tmp_path, ("clipart", "real"), 3, (2, 1), size_range=(40, 60))
    exp = tmp_path / "expected.json"
    exp.write_text(json.dumps(counts))
    args = [
        "check",
        "--suite",
        "domainnet",
        "--root",
        str(tmp_path),
        "--num-classes",
        "3",
        "--expected",
        str(exp),
    ]
    # domains default to all six: the four absent ones are reported as missing split files
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "painting_train.txt" in out and "FAILED" in out
    args += ["--domains", "clipart,real"]
    assert main(args + ["--images", "full"]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    (tmp_path / "real_test.txt").write_text("real/class_000/x.jpg\n")
    assert main(args + ["--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is False
    assert any(
        p["kind"] == "malformed-line" and p["where"].endswith("real_test.txt:1") for p in rep["problems"]
    )


def test_check_digit_five_fixture_ok(tmp_path, capsys):
    counts = write_digit_five(tmp_path, 20, 10)
    exp = tmp_path / "expected.json"
    exp.write_text(json.dumps(counts))
    assert (
        main(
            [
                "check",
                "--suite",
                "digit-five",
                "--root",
                str(tmp_path),
                "--expected",
                str(exp),
                "--n-train",
                "20",
                "--n-test",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.strip().endswith("OK") and "usps" in out


def test_prepare_check_show_digits(tmp_path, capsys):
    common = ["--suite", "digits", "--root", str(tmp_path), "--n-train", "12", "--n-test", "10"]
    assert main(["check", *common]) == 1  # not built yet
    assert "prepare --suite digits" in capsys.readouterr().out
    assert main(["prepare", *common]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] > 0 and len(info["built"]) == 5

    assert main(["check", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    out = tmp_path / "grid.png"
    assert main(["show", *common, "--out", str(out), "--per-domain", "4"]) == 0
    with Image.open(out) as im:
        assert im.size[0] > 4 * 64 and im.size[1] >= 5 * 64


@pytest.mark.slow
def test_parallel_prepare_gives_the_same_bytes(tmp_path, capsys):
    """Spawned workers (``prepare --workers 2``) build byte-identical files (slow: process start-up)."""
    common = ["--suite", "digits", "--n-train", "12", "--n-test", "10"]
    assert main(["prepare", *common, "--root", str(tmp_path / "par"), "--workers", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    serial = get_suite("digits", root=tmp_path / "serial", n_train=12, n_test=10, verbose=False)
    serial.prepare(workers=1)
    manifest = json.loads((Path(info["cache_dir"]) / "manifest.json").read_text())
    assert json.loads((serial.cache_dir / "manifest.json").read_text())["files"] == manifest["files"]


def test_bad_input_exits_2_without_traceback(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.data",
            "show",
            "--suite",
            "domainnet",
            "--root",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "does not exist" in r.stderr and "DRT_DOMAINNET_ROOT" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "harness.data", "check", "--suite", "nope"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 2 and "unknown suite" in r.stderr and "Traceback" not in r.stderr


def test_option_not_accepted_by_suite(capsys):
    assert main(["check", "--suite", "domainnet", "--seed", "5"]) == 2
    assert "not an option" in capsys.readouterr().err


def test_shift_on_smoke(capsys):
    assert (
        main(["shift", "--suite", "smoke", "--train-per-domain", "100", "--test-per-domain", "40", "--json"])
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["domains"] == ["plain", "inverse", "colour"] and len(res["matrix"]) == 3
