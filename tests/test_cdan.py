"""CDAN (table row ``cdan``) in both frameworks.

* Known-answer loss: the real ``CDAN.step`` of each framework on fixed float64 arrays (identity features
  network, given head/critic/map weights) against a NumPy reference written here, for the multilinear and
  the randomized map, with and without entropy conditioning; relative tolerance 1e-12.
* The randomized map is used iff ``d·C > 4096``, the critic's input width follows, and the map's tensors have
  the same neutral names in both frameworks.
* A few updates on the smoke batch (CDAN+E; plain CDAN runs in ``test_methods_*``) lower the CE, and a
  job resumes exactly (the fixed matrices come back from the checkpoint).
* Step equivalence of the paths ``test_step_equivalence`` does not reach (its width-0.25 CNN has d·C = 5120:
  randomized, no entropy): the multilinear map and CDAN+E.

The module is ``cross`` (it imports both frameworks; conftest collects it where both are installed): the
Keras known-answer test runs in the ``torch`` tox env, next to the torch one it mirrors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.method_table import CDAN_MULTILINEAR_MAX
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

pytestmark = pytest.mark.cross

TOL = 1e-12
B, D, C, R = 4, 3, 5, 6  # batch, feature width, classes, random_dim of the randomized case
HIDDEN = 7
WEIGHT, SMOOTHING, LAM = 0.7, 0.1, 0.3


# ---- NumPy reference ---------------------------------------------------------------------------------------
def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def ref_multilinear(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``T[b, c·d + j] = g[b, c] f[b, j]``."""
    return np.einsum("bc,bj->bcj", g, f).reshape(len(f), -1)


def ref_randomized(f: np.ndarray, g: np.ndarray, rf: np.ndarray, rg: np.ndarray) -> np.ndarray:
    return (f @ rf) * (g @ rg) / np.sqrt(rf.shape[1])


def ref_loss(w: dict[str, np.ndarray], fs, ft, ys, entropy: bool, randomized: bool) -> dict[str, float]:
    zs, zt = fs @ w["head.weight"].T + w["head.bias"], ft @ w["head.weight"].T + w["head.bias"]
    lps = _log_softmax(zs)
    tgt = np.full_like(zs, SMOOTHING / (C - 1))
    tgt[np.arange(B), ys] = 1.0 - SMOOTHING
    ce = -(tgt * lps).sum(-1).mean()

    def critic(f: np.ndarray, z: np.ndarray) -> np.ndarray:
        g = np.exp(_log_softmax(z))
        t = ref_randomized(f, g, w["rf"], w["rg"]) if randomized else ref_multilinear(f, g)
        h = np.maximum(t @ w["critic.0.weight"].T + w["critic.0.bias"], 0.0)
        return (h @ w["critic.2.weight"].T + w["critic.2.bias"])[:, 0]

    ds, dt = critic(fs, zs), critic(ft, zt)
    bce_s = np.logaddexp(0.0, ds) - ds  # BCE(z, 1) = log(1 + e^{-z})
    bce_t = np.logaddexp(0.0, dt)  # BCE(z, 0) = log(1 + e^{z})
    if entropy:

        def weights(z: np.ndarray) -> np.ndarray:
            lp = _log_softmax(z)
            wt = 1.0 + np.exp((np.exp(lp) * lp).sum(-1))  # 1 + exp(-H)
            return wt / wt.sum()

        v = np.concatenate([weights(zs), weights(zt)])
        dom = (v * np.concatenate([bce_s, bce_t])).sum() / v.sum()
    else:
        dom = 0.5 * (bce_s.mean() + bce_t.mean())
    return {"loss": ce + WEIGHT * dom, "ce": ce, "domain": dom, "grl_lambda": LAM}


def _case(randomized: bool) -> dict[str, np.ndarray]:
    """Inputs and weights (logits of order 1, so the softmax and the critic are far from saturation)."""
    rng = np.random.default_rng(7 + randomized)
    t_in = R if randomized else D * C
    w = {
        "fs": rng.standard_normal((B, D)),
        "ft": rng.standard_normal((B, D)) * 1.5 + 0.5,
        "ys": rng.integers(0, C, B),
        "head.weight": rng.standard_normal((C, D)),
        "head.bias": rng.standard_normal(C) * 0.1,
        "critic.0.weight": rng.standard_normal((HIDDEN, t_in)),
        "critic.0.bias": rng.standard_normal(HIDDEN) * 0.1,
        "critic.2.weight": rng.standard_normal((1, HIDDEN)) * 0.5,
        "critic.2.bias": rng.standard_normal(1) * 0.1,
    }
    if randomized:
        w["rf"], w["rg"] = rng.standard_normal((D, R)), rng.standard_normal((C, R))
    return w


def _spec(entropy: bool) -> MethodSpec:
    hp = {"cdan_entropy": entropy, "dann_weight": WEIGHT, "label_smoothing": SMOOTHING}
    return MethodSpec.create("cdan", "smoke", hp, num_classes=C)


def _sub(w: dict[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
    return {k[len(net) + 1 :]: v for k, v in w.items() if k.startswith(net + ".")}


# ---- (a) known-answer loss -----------------------------------------------------------------------------
CASES = [
    pytest.param(r, e, id=f"{'randomized' if r else 'multilinear'}-{'entropy' if e else 'plain'}")
    for r in (False, True)
    for e in (False, True)
]


@pytest.mark.parametrize("randomized, entropy", CASES)
def test_torch_loss_known_answer(randomized: bool, entropy: bool) -> None:
    from torch import nn

    from impl_torch.methods.base import build_critic
    from impl_torch.methods.cdan import CDAN, CDANMap
    from impl_torch.weights import from_neutral

    w = _case(randomized)
    algo = CDAN.__new__(CDAN)  # the real step on hand-made networks
    nn.Module.__init__(algo)
    algo.spec = _spec(entropy)
    head = nn.Linear(D, C).double()  # float64 before loading: the weights are not rounded to float32
    critic = build_critic(R if randomized else D * C, HIDDEN, 1).double()
    fmap = CDANMap(D, C, R if randomized else None).double()
    from_neutral(head, _sub(w, "head"))
    from_neutral(critic, _sub(w, "critic"))
    from_neutral(fmap, {"rf": w["rf"], "rg": w["rg"]} if randomized else {})
    algo.nets = nn.ModuleDict({"features": nn.Identity(), "head": head, "critic": critic, "cdan_map": fmap})
    batch = {
        "xs": torch.tensor(w["fs"], requires_grad=True),
        "xt": torch.tensor(w["ft"]),
        "ys": torch.tensor(w["ys"]),
    }
    loss, m = algo.step(batch, {"lam": LAM})
    ref = ref_loss(w, w["fs"], w["ft"], w["ys"], entropy, randomized)
    for k, v in ref.items():
        got = m[k].item() if torch.is_tensor(m[k]) else float(m[k])
        np.testing.assert_allclose(got, v, rtol=TOL, atol=0, err_msg=k)
    np.testing.assert_allclose(loss.item(), ref["loss"], rtol=TOL, atol=0)
    # g is detached: the head's gradient is the CE's alone; the features get the domain gradient times -λ
    # (GRL with λ = -1 passes the true gradient)
    g_loss = torch.autograd.grad(loss, [head.weight, batch["xs"]], retain_graph=True)
    g_ce = torch.autograd.grad(m["ce"], [head.weight, batch["xs"]], retain_graph=True)
    g_true = torch.autograd.grad(algo.step(batch, {"lam": -1.0})[1]["domain"], batch["xs"])[0]
    assert float(g_true.abs().max()) > 1e-3
    torch.testing.assert_close(g_loss[0], g_ce[0], rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(g_loss[1], g_ce[1] - LAM * WEIGHT * g_true, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("randomized, entropy", CASES)
def test_keras_loss_known_answer(randomized: bool, entropy: bool) -> None:
    from impl_keras.layers.basic import Linear, Sequential
    from impl_keras.methods.base import StepContext, build_critic
    from impl_keras.methods.cdan import CDAN, CDANMap

    w = _case(randomized)
    algo = CDAN.__new__(CDAN)  # the real step on hand-made networks
    algo.spec = _spec(entropy)
    dt = "float64"
    nets = {  # stateless_call passes ``training``: Sequential containers accept it (an empty one = identity)
        "features": Sequential([], dtype=dt),
        "head": Sequential([Linear(D, C, dtype=dt)], dtype=dt),
        "critic": build_critic(R if randomized else D * C, HIDDEN, 1, dtype=dt),
        "cdan_map": CDANMap(D, C, R if randomized else None, dtype=dt),
    }
    nets["head"].from_neutral({f"0.{k}": v for k, v in _sub(w, "head").items()})
    nets["critic"].from_neutral(_sub(w, "critic"))
    nets["cdan_map"].from_neutral({"rf": w["rf"], "rg": w["rg"]} if randomized else {})
    ctx = StepContext(
        nets,
        {n: [v.value for v in net.trainable_variables] for n, net in nets.items()},
        {n: [v.value for v in net.non_trainable_variables] for n, net in nets.items()},
    )
    batch = {"xs": w["fs"], "xt": w["ft"], "ys": w["ys"]}
    loss, m = algo.step(ctx, batch, {"lam": LAM})
    ref = ref_loss(w, w["fs"], w["ft"], w["ys"], entropy, randomized)
    for k, v in ref.items():
        got = float(keras.ops.convert_to_numpy(m[k]))
        np.testing.assert_allclose(got, v, rtol=TOL, atol=0, err_msg=k)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), ref["loss"], rtol=TOL, atol=0)


def test_multilinear_map_order_and_randomized_map() -> None:
    """Both frameworks' maps against the reference on the same arrays (flattening order class-major)."""
    from impl_keras.methods.cdan import CDANMap as KMap
    from impl_torch.methods.cdan import CDANMap as TMap

    rng = np.random.default_rng(3)
    f, g = rng.standard_normal((B, D)), rng.standard_normal((B, C))
    t = TMap(D, C, None).double()(torch.tensor(f), torch.tensor(g)).numpy()
    k = keras.ops.convert_to_numpy(KMap(D, C, None, dtype="float64")((f, g)))
    assert t.shape == k.shape == (B, C * D)
    np.testing.assert_array_equal(t[:, D : 2 * D], g[:, 1:2] * f)  # T[b, c·d + j] = g[b, c] f[b, j]
    np.testing.assert_allclose(t, ref_multilinear(f, g), rtol=TOL, atol=0)
    np.testing.assert_allclose(k, ref_multilinear(f, g), rtol=TOL, atol=0)
    tm = TMap(D, C, R).double()
    km = KMap(D, C, R, dtype="float64")
    km.from_neutral({k: v.numpy() for k, v in tm.state_dict().items()})
    ref = ref_randomized(f, g, tm.rf.numpy(), tm.rg.numpy())
    np.testing.assert_allclose(tm(torch.tensor(f), torch.tensor(g)).numpy(), ref, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(km((f, g))), ref, rtol=TOL, atol=TOL)


# ---- (b) which map, critic width, neutral names ------------------------------------------------------------
@pytest.mark.parametrize(
    "num_classes, random_dim",
    [(16, 1024), (17, 1024), (17, 64)],  # width 0.125: d = 256, d·C = 4096 (multilinear) / 4352
)
def test_randomized_iff_dc_above_4096(num_classes: int, random_dim: int) -> None:
    from impl_keras.methods import build_algorithm as build_keras
    from impl_torch.methods import build_algorithm as build_torch
    from impl_torch.weights import to_neutral

    ms = ModelSpec(arch="digits_cnn", num_classes=num_classes, width=0.125)
    d = ms.feature_dim
    randomized = d * num_classes > CDAN_MULTILINEAR_MAX
    assert randomized == (num_classes == 17) and d == 256
    spec = MethodSpec.create("cdan", "smoke", {"cdan_random_dim": random_dim}, num_classes=num_classes)
    width = random_dim if randomized else d * num_classes
    assert spec.critic_in(d) == width
    torch.manual_seed(0)
    ta = build_torch(spec, ms)
    ka = build_keras(spec, ms, compiled=False)
    for fmap in (ta.nets["cdan_map"], ka.nets["cdan_map"]):
        assert fmap.randomized == randomized
    assert ta.nets["critic"][0].in_features == width
    assert ka.nets["critic"][0].in_features == width
    tn, kn = to_neutral(ta.nets), ka.to_neutral()
    assert tn.keys() == kn.keys()
    fixed = sorted(k for k in tn if k.startswith("cdan_map."))
    assert fixed == (["cdan_map.rf", "cdan_map.rg"] if randomized else [])
    if randomized:
        assert tn["cdan_map.rf"].shape == (d, random_dim)
        assert tn["cdan_map.rg"].shape == (num_classes, random_dim)
        assert abs(tn["cdan_map.rf"].std() - 1.0) < 0.05  # N(0, 1)
        assert "cdan_map.rf" not in dict(ta.nets.named_parameters())  # a buffer: never trained
        assert not ka.nets["cdan_map"].trainable_variables
        ka.nets["cdan_map"].from_neutral({"rf": tn["cdan_map.rf"], "rg": tn["cdan_map.rg"]})
        np.testing.assert_array_equal(ka.to_neutral()["cdan_map.rf"], tn["cdan_map.rf"])
        with pytest.raises(Exception, match="rg"):  # strict, as every neutral layer
            ka.nets["cdan_map"].from_neutral({"rf": tn["cdan_map.rf"]})


# ---- (c) a few updates, resume -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_batch() -> dict[str, np.ndarray]:
    """One fixed NHWC smoke batch: 8 source images (2 sources, balanced) and 8 target images."""
    from harness.data import get_suite
    from impl_keras.data import make_loader

    p = get_suite("smoke").protocol("colour", seed=0)
    xs, ys, ds = next(
        iter(make_loader(p.source_train, p.transform_train, 8, train=True, seed=0, sampler="balanced"))
    )
    xt, _, _ = next(iter(make_loader(p.target_train, p.transform_train, 8, train=True, seed=1)))
    return {k: np.asarray(v) for k, v in {"xs": xs, "ys": ys, "ds": ds, "xt": xt}.items()}


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_cdan_e_updates_lower_the_ce(framework: str, smoke_batch: dict[str, np.ndarray]) -> None:
    spec = MethodSpec.create("cdan", "smoke", {"cdan_entropy": True}, num_sources=2)
    ms = ModelSpec(arch="digits_cnn", num_classes=10, variant="static", width=0.25)
    if framework == "torch":
        from impl_torch.methods import build_algorithm

        torch.manual_seed(0)
        algo = build_algorithm(spec, ms)
        batch = {
            k: torch.as_tensor(v.transpose(0, 3, 1, 2).copy() if v.ndim == 4 else v)
            for k, v in smoke_batch.items()
        }
    else:
        from impl_keras.methods import build_algorithm

        keras.utils.set_random_seed(0)
        algo = build_algorithm(spec, ms)
        batch = smoke_batch
    assert algo.nets["cdan_map"].randomized  # d·C = 512·10 > 4096
    ce = []
    for i in range(3):
        algo.set_progress(i, 100)
        m = algo.update(batch)
        assert set(m) == {"loss", "ce", "domain", "grl_lambda"}
        assert all(np.isfinite(v) for v in m.values()), m
        ce.append(m["ce"])
    assert ce[-1] < ce[0], ce


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_cdan_job_resumes_exactly(tmp_path: Path, framework: str) -> None:
    from resume_check import check_resume, network_arrays

    if framework == "torch":
        from impl_torch.train import run_job
    else:
        from impl_keras.train import run_job
    check_resume(run_job, tmp_path, "cdan", "static")
    assert {"cdan_map.rf", "cdan_map.rg"} <= set(network_arrays(tmp_path / "a"))


# ---- step equivalence of the paths test_step_equivalence does not reach ------------------------------------
@pytest.mark.parametrize(
    "variant, width, entropy",
    [("static", 0.125, True), ("sr", 0.125, False), ("static", 0.25, True)],
    ids=["multilinear-entropy", "multilinear-sr", "randomized-entropy"],
)
def test_step_equivalence_multilinear_and_entropy(variant: str, width: float, entropy: bool) -> None:
    from harness.drivers.equivalence.step import run_check

    r = run_check("cdan", variant, "float64", updates=1, width=width, hparams={"cdan_entropy": entropy})
    assert r["ok"], (r["loss_rel_max"], r["param_rel_max"], r["buffer_rel_max"])
    c = r["checks"][0]
    assert not c["metrics_missing"] and c["params_changed"] > 0
    assert c["loss_rel_max"] <= 1e-10 and c["param_rel_max"] <= 1e-9
