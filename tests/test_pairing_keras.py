"""Real pairing in Keras: every method, every variant (see ``pairing_check.py``); the dropout seed states of
every network are part of what is paired."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.keras
pytest.importorskip("keras")

from harness.frameworks import prepare_process  # noqa: E402

prepare_process()
from pairing_check import check_method  # noqa: E402

from harness import method_table  # noqa: E402
from impl_keras.train import KerasBackend  # noqa: E402


def _seed_states(algo) -> np.ndarray:
    import keras

    vals = [
        keras.ops.convert_to_numpy(v.value).ravel()
        for net in algo.nets.values()
        for v in net.non_trainable_variables
        if "seed_generator_state" in v.path
    ]
    return np.concatenate(vals) if vals else np.zeros(0)


@pytest.mark.parametrize("method", method_table.METHODS)
def test_variants_of_a_seed_start_from_the_static_model(method: str) -> None:
    check_method(KerasBackend(), method, _seed_states)
