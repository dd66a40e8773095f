"""Neutral weight files (framework-free): save/load round trip, metadata, strict validation messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import WeightsError
from harness.weights import load, load_metadata, save, validate
from harness.weights.neutral import prefixed, sub

NAMES = st.sampled_from(
    [
        "weight",
        "bases",
        "router.fc1.weight",
        "router.fc2.weight",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "layer1.0.conv2.weight",
        "fc.bias",
        "head.3.weight",
        "a",
    ]
)
DTYPES = st.sampled_from([np.float32, np.float64, np.int64, np.float16])


@st.composite
def weight_dicts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """Cheap to generate: names, dtypes and shapes are drawn; values come from a seeded numpy generator."""
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = {}
    for n in names:
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=5)))
        out[n] = (rng.standard_normal(shape) * 100).astype(draw(DTYPES))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("neutral")


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@given(arrays=weight_dicts())
def test_round_trip(scratch: Path, suffix: str, arrays: dict[str, np.ndarray]) -> None:
    path = scratch / f"weights{suffix}"  # overwritten by every example
    save(path, arrays, {"arch": "digits_cnn", "epoch": 3})
    back = load(path)
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    assert load_metadata(path) == {"arch": "digits_cnn", "epoch": "3"}


def test_non_contiguous_and_layout_preserved(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4).transpose(2, 0, 1)  # a non-contiguous view
    for suffix in (".safetensors", ".npz"):
        save(tmp_path / f"x{suffix}", {"conv.weight": a})
        np.testing.assert_array_equal(load(tmp_path / f"x{suffix}")["conv.weight"], a)
        assert load_metadata(tmp_path / f"x{suffix}") == {}


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"\.pt"):
        save(tmp_path / "w.pt", {"a": np.zeros(1)})
    with pytest.raises(WeightsError, match="no such weight file"):
        load(tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError, match="__metadata__"):
        save(tmp_path / "w.npz", {"__metadata__": np.zeros(1)})


def test_validate_lists_every_problem() -> None:
    expected = {
        "weight": (4, 3, 3, 3),
        "bases": (2, 4, 3, 1, 1),
        "router.fc1.weight": (4, 3),
        "bn.bias": (4,),
    }
    arrays = {
        "weight": np.zeros((4, 3, 3, 3)),
        "bases": np.zeros((2, 4, 3, 3, 3)),  # mis-shaped
        "router.fc1.weight": np.zeros((3, 4)),  # mis-shaped (transposed)
        "extra": np.zeros(1),  # unexpected
        "other.extra": np.zeros(1),  # unexpected
    }  # bn.bias missing
    with pytest.raises(WeightsError) as e:
        validate(expected, arrays, context="DRTConv2d")
    msg = str(e.value)
    for needle in (
        "DRTConv2d",
        "bases: expected (2, 4, 3, 1, 1), got (2, 4, 3, 3, 3)",
        "router.fc1.weight",
        "missing: bn.bias",
        "unexpected: extra, other.extra",
    ):
        assert needle in msg, needle
    with pytest.raises(WeightsError) as e:
        validate(expected, arrays, strict=False)
    assert "bases" in str(e.value) and "bn.bias" not in str(e.value) and "extra" not in str(e.value)
    ok = {k: np.zeros(v) for k, v in expected.items()}
    assert validate(expected, ok) == set(expected)
    assert validate(expected, {"weight": ok["weight"], "zzz": np.zeros(2)}, strict=False) == {"weight"}


def test_prefix_helpers() -> None:
    arrays = {"weight": np.zeros(1), "router.fc1.weight": np.ones(2)}
    p = prefixed(arrays, "layer1.0.conv2")
    assert set(p) == {"layer1.0.conv2.weight", "layer1.0.conv2.router.fc1.weight"}
    assert set(sub({**p, "layer1.0.bn2.bias": np.zeros(1)}, "layer1.0.conv2")) == set(arrays)
    assert prefixed(arrays, "") == arrays and sub(arrays, "") == arrays
