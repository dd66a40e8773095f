"""Shared helpers of the DRT speed benchmarks (not a test module): build one candidate's step, record ratios.

The step callables come from :mod:`harness.drivers.bench` (same workloads and training step as
``python -m harness.bench``). pytest-benchmark times each candidate in its own benchmark; the ratio to the
static model of the same group (measured earlier in the same session: ``static`` is parametrised first) is
stored in ``extra_info["ratio_to_static"]``. For ratios measured strictly side by side
(interleaved rounds) use ``python -m harness.bench``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from harness.drivers.bench import CANDIDATES, Workload, _keras_candidates, _torch_candidates

ROUNDS = int(os.environ.get("DRT_BENCH_ROUNDS", "3"))
WARMUP = int(os.environ.get("DRT_BENCH_WARMUP", "1"))
MEDIANS: dict[tuple[str, str, str], float] = {}


def step_for(framework: str, wl: Workload, mode: str, candidate: str) -> Callable[[], Any]:
    if framework == "torch":
        c, sync = _torch_candidates(wl, mode, "cpu", (candidate,))
    else:
        c, sync = _keras_candidates(wl, mode, (candidate,))
    fn = c["fns"][candidate]

    def run() -> None:
        fn()
        sync()

    return run


def run_benchmark(benchmark: Any, framework: str, wl: Workload, mode: str, candidate: str) -> None:
    fn = step_for(framework, wl, mode, candidate)
    benchmark.group = f"{framework} {wl.name} {mode} b{wl.batch}"
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    med = benchmark.stats.stats.median
    key = (framework, wl.name, mode)
    if candidate == "static":
        MEDIANS[key] = med
    elif key in MEDIANS:
        benchmark.extra_info["ratio_to_static"] = round(med / MEDIANS[key], 3)


__all__ = ["CANDIDATES", "MEDIANS", "ROUNDS", "WARMUP", "Workload", "run_benchmark", "step_for"]
