"""Known-answer tests of the Keras losses, gradient reversal and torch-semantics optimisers.

They run on whichever Keras backend is in use."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import ops

from harness.spec import method as ref
from harness.spec.method import OptimSpec
from impl_keras import losses as L
from impl_keras.grad import value_and_grad
from impl_keras.optim import KOptimizer

pytestmark = pytest.mark.keras  # collected only where Keras is installed (tests/conftest.py)


def T(a: object) -> object:
    return ops.convert_to_tensor(np.asarray(a, dtype=np.float64))


def N(t: object) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(t))


def test_discrepancy_known_answer() -> None:
    assert float(
        N(L.discrepancy(T([[0.5, 0.5], [1.0, 0.0]]), T([[0.25, 0.75], [0.5, 0.5]])))
    ) == pytest.approx(0.375, abs=1e-15)


def test_diversity_entropy_known_answer() -> None:
    assert float(N(L.diversity_entropy(T(np.eye(2))))) == pytest.approx(-math.log(0.500001), abs=1e-15)
    assert float(N(L.diversity_entropy(T([[1.0, 0.0], [1.0, 0.0]])))) == pytest.approx(
        -(math.log(1.000001) + math.log(1e-6)) / 2, abs=1e-12
    )


def test_label_smoothing_known_answer() -> None:
    z = T(np.log([[1.0, 2.0, 1.0]]))
    y = np.array([0])
    assert float(N(L.cross_entropy(z, y, 0.1))) == pytest.approx(1.95 * math.log(2), abs=1e-14)
    assert float(N(L.cross_entropy(z, np.array([1]), 0.0))) == pytest.approx(math.log(2), abs=1e-14)


def test_moment_distance_three_sources_known_answer() -> None:
    fs = T([[0.0], [2.0], [1.0], [3.0], [2.0], [2.0]])
    ds = np.array([0, 0, 1, 1, 2, 2])
    assert float(N(L.moment_distance(fs, ds, 3, T([[0.0], [0.0]])))) == pytest.approx(1.25, abs=1e-15)


def test_gradient_reversal_sign_and_scale() -> None:
    x0 = T([1.0, -2.0, 3.0])

    def fn(params: list, w: object) -> tuple[object, object]:
        y = L.grad_reverse(params[0], 0.5)
        return ops.sum(y * w), y

    (_, y), grads = value_and_grad(fn)([x0], T([1.0, 1.0, 2.0]))
    assert np.array_equal(N(y), N(x0))
    assert np.array_equal(N(grads[0]), np.array([-0.5, -0.5, -1.0]))


def test_bce_and_masked_ce() -> None:
    z = T([0.0, 2.0, -3.0])
    assert float(N(L.bce_with_logits(z, 1.0))) == pytest.approx(ref.bce_with_logits(N(z), 1.0), abs=1e-15)
    zz = T(np.log([[1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]))
    assert float(N(L.masked_cross_entropy(zz, np.array([1, 0]), np.array([True, False])))) == pytest.approx(
        math.log(2)
    )
    assert float(N(L.masked_cross_entropy(zz, np.array([1, 0]), np.array([False, False])))) == 0.0


def _run_opt(spec: OptimSpec, p0: np.ndarray, grads: list[np.ndarray], factors: list[float]) -> np.ndarray:
    v = keras.Variable(p0.copy(), dtype="float64")
    opt = KOptimizer(spec, [v], [True])
    for g, f in zip(grads, factors):
        new, state = opt.apply([v.value], [T(g)], [s.value for s in opt.variables], T(f))
        v.assign(new[0])
        for s, val in zip(opt.variables, state):
            s.assign(val)
    return N(v)


def test_sgd_has_torch_semantics() -> None:
    # torch: g += wd*w; buf = m*buf + g; w -= lr*buf  (lr outside the buffer: a schedule change acts at once)
    lr, m, wd = 0.1, 0.9, 0.01
    w, g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.array([-1.0, 2.0])
    d1 = g1 + wd * w
    w1 = w - lr * d1
    d2 = g2 + wd * w1
    buf = m * d1 + d2
    w2 = w1 - 0.5 * lr * buf
    out = _run_opt(OptimSpec("sgd", lr, lr, m, wd), w, [g1, g2], [1.0, 0.5])
    np.testing.assert_allclose(out, w2, rtol=0, atol=1e-15)
    # keras.optimizers.SGD differs (velocity keeps lr; decoupled decay): that is why KOptimizer exists
    kv = keras.Variable(w.copy(), dtype="float64")
    ks = keras.optimizers.SGD(learning_rate=lr, momentum=m, weight_decay=wd)
    ks.apply_gradients([(T(g1), kv)])
    assert not np.allclose(N(kv), w - lr * d1, rtol=0, atol=1e-12)


def test_adam_has_torch_semantics() -> None:
    b1, b2, lr, eps = 0.5, 0.9, 1e-3, 1e-8
    w, g = np.array([1.0, -2.0, 0.3]), np.array([0.1, -0.4, 2.0])
    m, v = (1 - b1) * g, (1 - b2) * g * g
    expected = w - (lr / (1 - b1)) * m / (np.sqrt(v) / math.sqrt(1 - b2) + eps)
    out = _run_opt(OptimSpec("adam", lr, lr, 0.0, 0.0, (b1, b2), eps), w, [g], [1.0])
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=0)


def test_none_gradient_leaves_parameter_untouched() -> None:
    v = keras.Variable(np.array([1.0, 2.0]), dtype="float64")
    opt = KOptimizer(OptimSpec("sgd", 0.1, 0.1, 0.9, 0.5), [v], [True])
    new, _ = opt.apply([v.value], [None], [s.value for s in opt.variables], T(1.0))
    np.testing.assert_array_equal(N(new[0]), [1.0, 2.0])
