"""Cross-framework step equivalence (float64, digits CNN): identical initial weights (ported through the
neutral
format) and batch, one update per stage in PyTorch and in Keras; losses equal to 1e-10 relative and every
parameter to 1e-9 relative (see :mod:`harness.drivers.equivalence.step`). Also the optimisers alone.

Routing: the digit CNN has layer routing only (each conv is its own block). Block routing (the ResNet default)
is checked on ResNet-18 at 64×64 (``slow``: one update takes 20-40 s on two CPU cores, measured 40 s for
``source_only``/``sr``), both routings."""

from __future__ import annotations

import numpy as np
import pytest

from harness.spec.method import METHODS, OptimSpec

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

pytestmark = pytest.mark.cross

#: The digit CNN at width 0.25 (2 M parameters, same layers) keeps every method x {static, sr} fast; the
#: full-width network (32 M parameters in float64) runs in the slow set, and
#: ``python -m harness.equivalence step --method all`` runs the full matrix at full width.
WIDTH = 0.25
CASES = [pytest.param(m, v, WIDTH, id=f"{m}-{v}") for v in ("static", "sr") for m in METHODS] + [
    pytest.param(m, "sr", 1.0, id=f"{m}-sr-full", marks=pytest.mark.slow) for m in METHODS
]


@pytest.mark.parametrize("method, variant, width", CASES)
def test_one_update_is_the_same_in_both_frameworks(method: str, variant: str, width: float) -> None:
    from harness.drivers.equivalence.step import run_check

    r = run_check(method, variant, "float64", updates=1, width=width)
    assert r["width"] == width
    stages = {c["stage"] for c in r["checks"]}
    assert len(stages) == (2 if method in ("adda", "drt_st") else 1)
    for c in r["checks"]:
        assert not c["metrics_missing"], c["metrics_missing"]
        assert c["loss_rel_max"] <= 1e-10, (c["stage"], c["metric_rel"])
        assert c["param_rel_max"] <= 1e-9, (c["stage"], c["param_worst"], c["param_rel_max"])
        assert c["buffer_rel_max"] <= 1e-9, c["stage"]
        assert c["params_changed"] > 0
        for name, diff in c["noise_params"].items():  # biases before BatchNorm: rounding noise only
            assert diff < 1e-12, name
    if method == "dann":  # the GRL schedule at a mid-training step (p = 0.25)
        assert r["checks"][0]["metrics_torch"]["grl_lambda"] == pytest.approx(2 / (1 + np.exp(-2.5)) - 1)


@pytest.mark.slow
@pytest.mark.parametrize("route", ["block", "layer"])
@pytest.mark.parametrize("method", ["source_only", "mcd_grl"])
def test_one_update_resnet18_both_routings(method: str, route: str) -> None:
    from harness.drivers.equivalence.step import run_check

    r = run_check(method, "sr", "float64", arch="resnet18", updates=1, route=route)
    assert r["route"] == route and r["arch"] == "resnet18"
    for c in r["checks"]:
        assert not c["metrics_missing"], c["metrics_missing"]
        assert c["loss_rel_max"] <= 1e-10, (c["stage"], c["metric_rel"])
        assert c["param_rel_max"] <= 1e-9, (c["stage"], c["param_worst"], c["param_rel_max"])
        assert c["buffer_rel_max"] <= 1e-9, c["stage"]
        assert c["params_changed"] > 0


def test_digits_step_spec_has_layer_routing() -> None:
    """The digit CNN jobs keep layer routing, and an unset route is not part of any dict (job identities)."""
    from harness.spec.model import ModelSpec

    spec = ModelSpec(arch="digits_cnn", variant="sr", width=0.25)
    assert spec.resolved_route == "layer" and "route" not in spec.to_dict()


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimisers_match_torch(kind: str) -> None:
    from impl_keras.optim import KOptimizer

    rng = np.random.default_rng(0)
    spec = OptimSpec(kind, 0.05, 0.5, 0.9, 5e-4, (0.5, 0.9), 1e-8)
    p0 = [rng.standard_normal((7, 5)), rng.standard_normal(5)]
    tps = [torch.nn.Parameter(torch.tensor(p.copy())) for p in p0]
    groups = [{"params": [tps[0]], "lr": spec.lr}, {"params": [tps[1]], "lr": spec.lr_new}]
    if kind == "sgd":
        topt = torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    else:
        topt = torch.optim.Adam(
            groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay
        )
    kvs = [keras.Variable(p.copy(), dtype="float64") for p in p0]
    kopt = KOptimizer(spec, kvs, [False, True])
    T = keras.ops.convert_to_tensor
    for step, factor in enumerate([1.0, 1.0, 0.1, 0.1]):
        grads = [rng.standard_normal(p.shape) for p in p0]
        for g, base in zip(topt.param_groups, (spec.lr, spec.lr_new)):
            g["lr"] = base * factor
        for t, g in zip(tps, grads):
            t.grad = torch.tensor(g)
        topt.step()
        new, state = kopt.apply(
            [v.value for v in kvs],
            [T(g) for g in grads],
            [s.value for s in kopt.variables],
            T(np.float64(factor)),
        )
        for v, x in zip(kvs, new):
            v.assign(x)
        for s, x in zip(kopt.variables, state):
            s.assign(x)
        for t, v in zip(tps, kvs):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(v),
                t.detach().numpy(),
                rtol=1e-13,
                atol=1e-15,
                err_msg=f"{kind} step {step}",
            )
