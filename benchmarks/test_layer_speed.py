"""One DRT layer vs the static conv: forward and forward+backward(+SGD), torch and Keras, every formulation.

Run: ``tox -e bench`` or ``pytest benchmarks/test_layer_speed.py --benchmark-only``. Rounds/warm-up:
``DRT_BENCH_ROUNDS`` (3) / ``DRT_BENCH_WARMUP`` (1). Layers: the digit CNN's conv2 (64→64, 5×5, 16×16, full
bases, batch 128) and ResNet-50's layer3 conv2 (256→256, 3×3, 14×14, 1×1 bases, batch 8).
"""

from __future__ import annotations

import importlib.util

import pytest

from harness.frameworks import prepare_process

prepare_process()  # torch before TensorFlow

from _drt_speed import CANDIDATES, run_benchmark  # noqa: E402

from harness.drivers.bench import default_workloads  # noqa: E402

LAYERS = [w for w in default_workloads() if w.layer is not None]
FWS = [
    pytest.param(
        fw,
        marks=[getattr(pytest.mark, fw)]
        + ([] if importlib.util.find_spec(fw) else [pytest.mark.skip(reason=f"{fw} not installed")]),
    )
    for fw in ("torch", "keras")
]


@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("mode", ["forward", "train"])
@pytest.mark.parametrize("wl", LAYERS, ids=lambda w: w.name.split()[1])
@pytest.mark.parametrize("framework", FWS)
def test_layer_speed(benchmark, framework: str, wl, mode: str, candidate: str) -> None:  # noqa: ANN001
    run_benchmark(benchmark, framework, wl, mode, candidate)
