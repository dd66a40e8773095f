"""harness.autotune without a framework: cache location, atomic writes, choice rule, forced modes."""

from __future__ import annotations

import json
import threading

import pytest

from harness import autotune
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


def test_cached_entry_is_used_without_measuring(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DRT_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.delenv("DRT_AUTOTUNE", raising=False)
    monkeypatch.setattr(autotune, "_device_and_versions", lambda fw, dev: ("cpu:test", "v0"))
    spec = DRTConvSpec(8, 8, variant="sr", formulation="auto")
    key = autotune.cache_key(spec, "torch", "cpu", (4, 8, 6, 6))
    assert "|6x6|B4" in key and key.startswith("torch|cpu:test|v0|8>8 k3")
    autotune._write(tmp_path / "c.json", key, {"choice": "residual_agg"})
    autotune.clear_memory_cache()

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("must not measure when cached")

    monkeypatch.setattr(autotune, "calibrate", boom)
    assert autotune.resolve_formulation(spec, "torch", "cpu", (4, 8, 6, 6)) == "residual_agg"
    autotune.clear_memory_cache()


def test_default_size() -> None:
    sizes = [autotune.default_size(DRTConvSpec(c, c)) for c in (64, 128, 256, 512, 3, 2048)]
    assert sizes == [56, 28, 14, 7, 56, 7]
