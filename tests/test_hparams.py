"""Hyperparameter registry, method spec and the NumPy reference losses (framework-neutral)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import hparams as hp
from harness.errors import SpecError
from harness.spec import method as M
from harness.spec.method import MethodSpec


# ---- registry ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", hp.METHODS)
@pytest.mark.parametrize("suite", hp.SUITES)
def test_defaults_are_valid(method: str, suite: str) -> None:
    d = hp.defaults(method, suite)
    assert hp.validate(method, d) == d
    assert set(d) == set(hp.names(method))


def test_paper_and_release_defaults() -> None:
    d = hp.defaults("mcd_grl", "domainnet")
    assert (d["eta"], d["gamma"], d["grl_lambda"], d["label_smoothing"]) == (50.0, 0.01, 4.0, 0.01)
    assert (d["lr"], d["lr_new_mult"], d["lr_milestones"], d["momentum"], d["weight_decay"]) == (
        1e-3,
        10.0,
        [5, 10],
        0.9,
        5e-4,
    )
    assert hp.defaults("mcd")["num_k"] == 4 and hp.defaults("m3sda")["num_k"] == 4
    assert hp.defaults("m3sda")["md_weight"] == 0.5
    assert hp.defaults("drt_st")["st_confidence"] == 0.8
    a = hp.defaults("adda")
    assert (a["adda_lr"], a["adda_beta1"], a["adda_beta2"]) == (1e-4, 0.5, 0.9)
    assert hp.defaults("dann")["dann_gamma"] == 10.0
    assert hp.defaults("source_only")["label_smoothing"] == 0.0


@pytest.mark.parametrize(
    "method, name, value",
    [
        ("mcd", "num_k", 0),
        ("mcd", "num_k", 2.5),
        ("dann", "dann_weight", -1.0),
        ("mcd_grl", "eta", -0.1),
        ("m3sda", "md_weight", -0.5),
        ("source_only", "lr", 0.0),
        ("source_only", "lr", "fast"),
        ("source_only", "momentum", 1.0),
        ("drt_st", "st_confidence", 1.0),
        ("source_only", "optimizer", "rmsprop"),
        ("source_only", "lr_milestones", [10, 5]),
        ("source_only", "lr", float("nan")),
        ("source_only", "weight_decay", True),
    ],
)
def test_bad_values_are_rejected_by_name(method: str, name: str, value: object) -> None:
    with pytest.raises(SpecError) as e:
        hp.resolve(method, "digits", {name: value})
    assert e.value.field == name
    assert name in str(e.value)


def test_unknown_and_foreign_names() -> None:
    with pytest.raises(SpecError, match="learning_rate") as e:
        hp.resolve("dann", "digits", {"learning_rate": 0.1})
    assert e.value.field == "learning_rate"
    with pytest.raises(SpecError, match="eta") as e:
        hp.resolve("source_only", "digits", {"eta": 3.0})
    assert "mcd_grl" in str(e.value)
    assert "eta" not in hp.resolve("source_only", "digits", {"eta": 3.0}, ignore_foreign=True)


def test_overrides_parse_json_and_pairs() -> None:
    o = hp.parse_overrides(['{"lr": 0.1, "num_k": 2}', "eta=3", "lr_milestones=[1,2]", "optimizer=adam"])
    assert o == {"lr": 0.1, "num_k": 2, "eta": 3, "lr_milestones": [1, 2], "optimizer": "adam"}
    assert hp.parse_overrides("lr=0.5,momentum=0") == {"lr": 0.5, "momentum": 0}
    with pytest.raises(SpecError):
        hp.parse_overrides("{not json")
    r = hp.resolve("mcd", "smoke", hp.parse_overrides("num_k=2"))
    assert r["num_k"] == 2 and isinstance(r["num_k"], int)


def test_sampling_is_seeded_per_name() -> None:
    assert hp.sample("mcd_grl", "digits", 0) == hp.defaults("mcd_grl", "digits")
    a, b = hp.sample("mcd_grl", "digits", 7), hp.sample("mcd_grl", "digits", 7)
    assert a == b and a != hp.sample("mcd_grl", "digits", 8)
    # DomainBed property: a name's draw depends only on (seed, name), not on the other hyperparameters
    r = np.random.RandomState(hp.seed_hash(7, "eta"))
    assert a["eta"] == pytest.approx(10 ** r.uniform(0, 2))
    assert hp.sample("dann", "digits", 7)["lr"] == a["lr"]
    for method in hp.METHODS:
        for seed in range(1, 6):
            hp.validate(method, hp.sample(method, "digits", seed))


# ---- method spec -------------------------------------------------------------------------------------------
def test_method_spec_structure_and_schedules() -> None:
    s = MethodSpec.create("dann", "smoke", num_sources=3)
    assert [n.name for n in s.networks()] == ["features", "head", "critic"]
    assert s.grl_lambda(0, 100) == 0.0
    assert s.grl_lambda(50, 100) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    m = MethodSpec.create("m3sda", num_sources=3)
    assert m.classifier_names() == [
        "head_s0_1",
        "head_s0_2",
        "head_s1_1",
        "head_s1_2",
        "head_s2_1",
        "head_s2_2",
    ]
    a = MethodSpec.create("adda", overrides={"adda_stage1_frac": 0.3})
    assert a.stage_start(1, 100) == 30 and a.stage_at(29, 100) == 0 and a.stage_at(30, 100) == 1
    assert a.optimizer("critic", 1).kind == "adam" and a.optimizer("critic", 1).betas == (0.5, 0.9)
    assert a.trained_nets(0) == ["features", "head"] and a.trained_nets(1) == ["critic", "target_features"]
    d = MethodSpec.create("mcd_grl", "domainnet", pretrained=True)
    o = d.optimizer("features")
    assert (o.lr, o.lr_new, o.momentum, o.weight_decay) == (1e-3, 1e-2, 0.9, 5e-4)
    assert MethodSpec.create("mcd_grl", "digits").optimizer("features").lr_new == 2e-3  # from scratch: no 10x
    assert [d.lr_factor(e) for e in (0, 4, 5, 9, 10, 14)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert d.grl_lambda(3, 10) == 4.0


def test_method_spec_rejects_bad_input() -> None:
    with pytest.raises(SpecError, match="method"):
        MethodSpec.create("dan")
    with pytest.raises(SpecError, match="num_sources"):
        MethodSpec.create("m3sda", num_sources=1)
    with pytest.raises(SpecError, match="num_k"):
        MethodSpec("mcd", {"num_k": 0})


def test_job_specs() -> None:
    job = {
        "method": "mcd_grl",
        "suite": "smoke",
        "arch": "digit_cnn",
        "variant": "sr",
        "hparams": {"eta": 2.0},
        "model": {"dropout": 0.0},
    }
    model, spec = M.job_specs(job, 2, 10)
    assert model.arch == "digits_cnn" and model.variant == "sr" and model.dropout == 0.0
    assert spec["eta"] == 2.0 and spec.num_sources == 2
    assert M.job_suite_options({"data": {"train_per_domain": 50, "test_per_domain": None}}) == {"n_train": 50}


# ---- NumPy reference losses: known answers on tiny hand-computed inputs ------------------------------------
def test_reference_discrepancy() -> None:
    p1 = np.array([[0.5, 0.5], [1.0, 0.0]])
    p2 = np.array([[0.25, 0.75], [0.5, 0.5]])
    assert M.discrepancy(p1, p2) == pytest.approx(0.375, abs=1e-15)


def test_reference_diversity_entropy() -> None:
    assert M.diversity_entropy(np.eye(2)) == pytest.approx(-math.log(0.5 + 1e-6), abs=1e-15)
    assert M.diversity_entropy(np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(
        -(math.log(1 + 1e-6) + math.log(1e-6)) / 2, abs=1e-12
    )


def test_reference_label_smoothing() -> None:
    z = np.log(np.array([[1.0, 2.0, 1.0]]))  # softmax = (1/4, 1/2, 1/4)
    # release form: w = (0.9, 0.05, 0.05) -> 0.95 ln 4 + 0.05 ln 2 = 1.95 ln 2
    assert M.cross_entropy(z, np.array([0]), 0.1) == pytest.approx(1.95 * math.log(2), abs=1e-14)
    assert M.cross_entropy(z, np.array([1]), 0.0) == pytest.approx(math.log(2), abs=1e-14)


def test_reference_moment_distance_three_sources() -> None:
    # 1-d features: sources (0,2), (1,3), (2,2); target (0,0). Means 1,2,2 | 0; unbiased variances 2,2,0 | 0.
    # Means: |1-0|+|2-0|+|2-0| + |1-2|+|1-2|+|2-2| = 7 over 6 pairs; variances: 2+2+0 + 0+2+2 = 8 over 6
    # pairs.
    s = [np.array([[0.0], [2.0]]), np.array([[1.0], [3.0]]), np.array([[2.0], [2.0]])]
    t = np.array([[0.0], [0.0]])
    assert M.moment_distance(s, t) == pytest.approx(0.5 * (7 / 6 + 8 / 6), abs=1e-15)


def test_reference_dann_lambda_and_grl() -> None:
    assert M.dann_lambda(0.0) == 0.0
    assert M.dann_lambda(0.5) == pytest.approx(0.98661429815, abs=1e-10)
    assert M.dann_lambda(1.0) == pytest.approx(0.99990920426, abs=1e-10)
    assert np.array_equal(M.grl_backward(np.array([1.0, -2.0]), 0.5), np.array([-0.5, 1.0]))
    assert M.bce_with_logits(np.zeros(3), 1.0) == pytest.approx(math.log(2), abs=1e-15)


def test_lr_anneal_is_absent_from_specs_at_its_default_and_changes_the_job_when_set() -> None:
    from harness.spec.method import MethodSpec

    assert "lr_anneal" not in hp.resolve("dann", "digits")
    assert hp.resolve("dann", "digits", {"lr_anneal": "dann"})["lr_anneal"] == "dann"
    spec = MethodSpec.create("dann", "digits")
    assert spec["lr_anneal"] == "none" and spec.lr_factor(0, 50, 100) == 1.0
    annealed = MethodSpec.create("dann", "digits", {"lr_anneal": "dann", "lr_milestones": [1]})
    assert annealed.lr_factor(0, 0, 100) == 1.0
    assert annealed.lr_factor(0, 50, 100) == pytest.approx(1 / 6**0.75)  # Ganin: (1 + 10 p)^-0.75
    assert annealed.lr_factor(1, 100, 100) == pytest.approx(0.1 / 11**0.75)
    with pytest.raises(SpecError, match="lr_anneal"):
        hp.resolve("dann", "digits", {"lr_anneal": "cosine"})
