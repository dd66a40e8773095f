"""Whole models, static vs each DRT formulation: forward and a full training step, torch and Keras.

digits_cnn at batch 128 (32×32) and resnet50 at batch 8 (224×224) on CPU — heavy: rounds are small
(``DRT_BENCH_ROUNDS``, default 3). Run: ``tox -e bench`` or ``pytest benchmarks/test_model_speed.py
--benchmark-only``; ``-k digits`` for the quick half. Targets (reported, not asserted): kernel_merge training
step <= 1.15× static in torch and <= 1.3× in Keras-TF (see ``results/perf/README.md``).
"""

from __future__ import annotations

import importlib.util

import pytest

from harness.frameworks import prepare_process

prepare_process()  # torch before TensorFlow

from _drt_speed import CANDIDATES, run_benchmark  # noqa: E402

from harness.drivers.bench import default_workloads  # noqa: E402

MODELS = [w for w in default_workloads() if w.spec is not None]
FWS = [
    pytest.param(
        fw,
        marks=[getattr(pytest.mark, fw)]
        + ([] if importlib.util.find_spec(fw) else [pytest.mark.skip(reason=f"{fw} not installed")]),
    )
    for fw in ("torch", "keras")
]


@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("mode", ["train", "forward"])
@pytest.mark.parametrize("wl", MODELS, ids=lambda w: w.name)
@pytest.mark.parametrize("framework", FWS)
def test_model_speed(benchmark, framework: str, wl, mode: str, candidate: str) -> None:  # noqa: ANN001
    run_benchmark(benchmark, framework, wl, mode, candidate)
