"""The framework-neutral shared modules: atomic writes, provenance, DRT tensor names, NonFiniteLoss."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from harness import atomic, provenance
from harness.errors import DrtBenchError, NonFiniteLoss
from harness.spec.names import DRT_TENSOR_SUFFIXES, KERAS_DRT_VARIABLES, is_drt_tensor, is_drt_variable_path


# ---- harness.atomic ----------------------------------------------------------------------------------------
def test_writes_round_trip_and_leave_no_temp_files(tmp_path: Path) -> None:
    atomic.write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    atomic.write_text(tmp_path / "t.txt", "héllo\n")
    atomic.write_json(tmp_path / "j.json", {"b": 1, "a": [1.5, None]})
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    text = (tmp_path / "j.json").read_text()
    assert json.loads(text) == {"a": [1.5, None], "b": 1} and text.endswith("\n") and text.index('"a"') < 10
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.bin", "j.json", "t.txt"]


def test_atomic_open_file_handle_and_permissions(tmp_path: Path) -> None:
    import numpy as np

    with atomic.atomic_open(tmp_path / "x.npz") as fh:
        np.savez(fh, a=np.arange(3))
    with np.load(tmp_path / "x.npz") as z:
        assert z["a"].tolist() == [0, 1, 2]
    with atomic.atomic_open(tmp_path / "x.txt", "w") as fh:
        fh.write("text")
    assert (tmp_path / "x.txt").read_text() == "text"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~umask
    with pytest.raises(ValueError, match="mode"):
        with atomic.atomic_open(tmp_path / "y", "a"):
            pass


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic.write_json(path, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(path) as fh:
            fh.write(b"half")
            raise RuntimeError("killed")
    with pytest.raises(TypeError):
        atomic.write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_interrupted_replace_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_bytes(tmp_path / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []


# ---- harness.provenance ------------------------------------------------------------------------------------
def test_hardware_and_versions() -> None:
    assert provenance.cpu_model().strip()
    desc = provenance.hardware("cpu")
    assert desc == f"{provenance.cpu_model()} ({os.cpu_count()} logical cores)"
    vers = provenance.library_versions()
    assert vers["python"] and vers["numpy"] and "drt-bench" in vers and "keras_backend" not in vers
    assert set(vers) <= {"python", "drt-bench", *provenance.VERSION_PACKAGES}


def test_hardware_names_the_gpu_for_cuda(monkeypatch) -> None:
    monkeypatch.setattr(provenance, "gpu_name", lambda index=0: f"Test GPU {index}")
    assert provenance.hardware("cuda:1").startswith("Test GPU 1; ")
    monkeypatch.setattr(provenance, "gpu_name", lambda index=0: None)
    assert provenance.hardware("cuda").startswith("unknown GPU; ")


def test_keras_backend_in_versions(monkeypatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert provenance.library_versions("keras")["keras_backend"] == "jax"


# ---- harness.spec.names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bases", True),
        ("router.fc1.weight", True),
        ("features.layer1.0.conv2.bases", True),
        ("features.conv1.router.fc2.weight", True),
        ("features.conv1.weight", False),
        ("features.layer1.0.conv2.weight", False),
        ("head.fc.weight", False),
        ("features.mybases", False),
        ("features.conv1.router.fc1.bias", False),
    ],
)
def test_is_drt_tensor(name: str, expected: bool) -> None:
    assert is_drt_tensor(name) is expected


def test_keras_variable_paths() -> None:
    assert len(KERAS_DRT_VARIABLES) == len(DRT_TENSOR_SUFFIXES)
    assert is_drt_variable_path("drt_resnet18/features/layer1.0.conv2/router_fc1")
    assert is_drt_variable_path("bases:0") and is_drt_variable_path("router_fc2")
    assert not is_drt_variable_path("drt_resnet18/features/conv1/kernel")
    assert not is_drt_variable_path("features/my_bases")


# ---- harness.errors ----------------------------------------------------------------------------------------
def test_non_finite_loss() -> None:
    e = NonFiniteLoss.from_value("dann", float("nan"))
    assert isinstance(e, DrtBenchError) and str(e).startswith("dann: the training loss became nan")
