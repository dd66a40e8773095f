"""Shared by ``test_pairing_torch.py`` and ``test_pairing_keras.py`` (issue 13, real pairing): every
variant of a seed starts from the static model's tensors (same ``init_fingerprint``), its process generators
are in the same state when training starts (same dropout masks), and another seed gives another
fingerprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness import loop, method_table
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec

VARIANTS = ("static", "ca", "sr", "comb")


def start(backend: Any, method: str, variant: str, seed: int) -> tuple[Any, str]:
    """Build a job's algorithm as the loop does and pair its initialisation; ``(algo, fingerprint)``."""
    row = method_table.TABLE[method]
    spec = MethodSpec.create(method, "smoke", num_sources=max(2, row.min_sources), num_classes=10)
    model = ModelSpec(arch="digits_cnn", variant=variant, num_classes=10, width=0.25)
    job = {"seed": seed, "init": "paired"}
    backend.seed(seed)
    algo = backend.build(spec, model, job)
    return algo, loop.pair_init(backend, algo, spec, model, job, seed)


def check_method(backend: Any, method: str, rng_state: Callable[[Any], np.ndarray]) -> None:
    """Fingerprints and shared tensors equal across variants; generator states equal after pairing."""
    prints, shared, states = {}, {}, {}
    for variant in VARIANTS:
        algo, prints[variant] = start(backend, method, variant, seed=5)
        shared[variant] = backend.neutral_weights(algo)
        states[variant] = rng_state(algo)
    assert len(set(prints.values())) == 1, prints
    static = shared["static"]
    for variant in VARIANTS[1:]:
        assert set(static) < set(shared[variant])  # the DRT model has more tensors: bases, routers
        for name, value in static.items():
            np.testing.assert_array_equal(shared[variant][name], value, err_msg=f"{variant}: {name}")
        np.testing.assert_array_equal(states[variant], states["static"], err_msg=variant)
    assert start(backend, method, "sr", seed=6)[1] != prints["sr"]
