"""``impl_keras.numerics.mean`` keeps float64 (Keras' own ``ops.mean`` computes in float32 on JAX)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.keras
pytest.importorskip("keras")

from harness.frameworks import prepare_process  # noqa: E402

prepare_process()
from keras import ops  # noqa: E402

from impl_keras.numerics import mean  # noqa: E402


@pytest.mark.parametrize("axis", [None, 0, (1, 2), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_mean_matches_numpy_float64(axis, keepdims: bool) -> None:
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 2)) * 1e3 + 1e-3
    got = ops.convert_to_numpy(mean(ops.convert_to_tensor(x, dtype="float64"), axis=axis, keepdims=keepdims))
    want = x.mean(axis=axis, keepdims=keepdims)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


def test_mean_float32_and_symbolic_batch() -> None:
    import keras

    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert ops.convert_to_numpy(mean(x, axis=(1, 2))).tolist() == [5.5, 17.5]
    inp = keras.Input((3, 4))  # unknown batch size: the count comes from the dynamic shape
    out = keras.layers.Lambda(lambda t: mean(t, axis=0))(inp)
    assert tuple(out.shape) == (3, 4)
