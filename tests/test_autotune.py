"""harness.autotune without a framework: cache location, atomic writes, choice rule, forced modes, and the
inverted calibration (the caller supplies ``measure`` and ``describe``; a fake one here, no layer built)."""

from __future__ import annotations

import json
import threading

import pytest

from harness import autotune
from harness.errors import DrtBenchError
from harness.spec.layer import FORMULATIONS, DRTConvSpec


def test_cache_path_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "x.json"))
    assert autotune.cache_path() == tmp_path / "x.json"
    monkeypatch.delenv("DRT_AUTOTUNE_CACHE")
    assert autotune.cache_path().parts[-3:] == (".cache", "drt-bench", "autotune.json")


def test_atomic_concurrent_writes(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "sub" / "cache.json"

    def writer(i: int) -> None:
        with autotune._lock:
            autotune._write(path, f"k{i}", {"choice": "kernel_merge", "i": i})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = json.loads(path.read_text())
    assert set(data) == {f"k{i}" for i in range(16)}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".autotune-")]  # no temp files left


def test_choice_prefers_cheaper_on_ties() -> None:
    assert autotune._choose({"output_mix": 1.0, "residual_agg": 1.02, "kernel_merge": 1.01}) == "kernel_merge"
    assert autotune._choose({"output_mix": 1.0, "residual_agg": 1.5, "kernel_merge": 1.2}) == "output_mix"
    assert autotune._choose({"output_mix": 2.0, "residual_agg": 1.0, "kernel_merge": 1.5}) == "residual_agg"


def test_fixed_static_and_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DRTConvSpec(8, 8, variant="sr", formulation="auto")
    for f in FORMULATIONS:
        assert autotune.resolve_formulation(spec.replace(formulation=f), "torch") == f
    assert autotune.resolve_formulation(spec.replace(variant="static"), "torch") == "kernel_merge"
    monkeypatch.setenv("DRT_AUTOTUNE", "off")
    assert autotune.resolve_formulation(spec, "torch") == "kernel_merge"
    monkeypatch.setenv("DRT_AUTOTUNE", "output_mix")
    assert autotune.resolve_formulation(spec, "torch") == "output_mix"


def _describe(device: str) -> tuple[str, str]:
    return "cpu:test", "v0"


def test_cached_entry_is_used_without_measuring(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    spec = DRTConvSpec(8, 8, variant="sr", formulation="auto")
    key = autotune.cache_key(spec, "torch", "cpu", (4, 8, 6, 6), describe=_describe)
    assert "|6x6|B4" in key and key.startswith("torch|cpu:test|v0|8>8 k3")
    autotune._write(tmp_path / "c.json", key, {"choice": "residual_agg"})
    autotune.clear_memory_cache()

    def boom(*a: object, **k: object) -> dict[str, float]:
        raise AssertionError("must not measure when cached")

    got = autotune.resolve_formulation(spec, "torch", "cpu", (4, 8, 6, 6), measure=boom, describe=_describe)
    assert got == "residual_agg"
    autotune.clear_memory_cache()


def test_supplied_measure_is_called_and_cached(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """The framework's ``measure`` gets the calibration shape (NHWC for keras); its medians decide and are
    cached; a second resolution (memory, then file) does not measure again."""
    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    autotune.clear_memory_cache()
    calls: list[tuple] = []

    def measure(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
        calls.append((spec.formulation, device, b, h, w))
        return {"kernel_merge": 2.0, "residual_agg": 1.0, "output_mix": 1.5}

    spec = DRTConvSpec(8, 8, variant="sr", formulation="auto")
    shape = (32, 5, 7, 8)  # NHWC: batch 32 -> calibration batch 16

    def resolve() -> str:
        return autotune.resolve_formulation(spec, "keras", "cpu", shape, measure=measure, describe=_describe)

    assert resolve() == "residual_agg" and calls == [("auto", "cpu", 16, 5, 7)]
    (entry,) = json.loads((tmp_path / "c.json").read_text()).values()
    assert entry["choice"] == "residual_agg" and entry["medians_ms"]["output_mix"] == 1500.0
    assert entry["batch"] == 16 and entry["size"] == [5, 7]
    assert resolve() == "residual_agg"  # in-process memo
    autotune.clear_memory_cache()
    assert resolve() == "residual_agg"  # file cache
    assert len(calls) == 1
    autotune.clear_memory_cache()


def test_meta_device_uses_the_cpu_choice(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    autotune.clear_memory_cache()
    devices: list[str] = []

    def measure(spec: DRTConvSpec, device: str, b: int, h: int, w: int) -> dict[str, float]:
        devices.append(device)
        return dict.fromkeys(FORMULATIONS, 1.0)

    spec = DRTConvSpec(8, 8, variant="ca", formulation="auto")
    assert autotune.resolve_formulation(spec, "torch", "meta", None, measure=measure, describe=_describe) == (
        "kernel_merge"  # a tie goes to the cheapest formulation
    )
    assert devices == ["cpu"]
    autotune.clear_memory_cache()


def test_auto_without_measure_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    with pytest.raises(DrtBenchError, match="measure"):
        autotune.resolve_formulation(DRTConvSpec(8, 8, variant="sr", formulation="auto"), "torch")


def test_incomplete_measure_is_rejected() -> None:
    with pytest.raises(ValueError, match="output_mix"):
        autotune.calibrate(
            DRTConvSpec(8, 8, variant="sr"),
            "torch",
            measure=lambda *a: {"kernel_merge": 1.0, "residual_agg": 1.0},
        )


def test_default_size() -> None:
    sizes = [autotune.default_size(DRTConvSpec(c, c)) for c in (64, 128, 256, 512, 3, 2048)]
    assert sizes == [56, 28, 14, 7, 56, 7]
