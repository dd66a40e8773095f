"""``harness.power``: paired intervals, MDE, seed counts and verdict lines, on hand-written records with known
answers (pure NumPy/SciPy, framework-neutral)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness import power as P

# ------------------------------------------------------------------------------------------ the interval


def test_interval_hand_computed() -> None:
    # diffs [1, 2, 3, 4]: mean 2.5, sd sqrt(5/3) = 1.291, t_{0.975,3} = 3.182 -> 2.5 ± 2.054 = [0.446, 4.554]
    r = P.paired([71.0, 62.0, 83.0, 54.0], [70.0, 60.0, 80.0, 50.0])
    assert r["n"] == 4
    assert r["mean"] == pytest.approx(2.5)
    assert r["sd"] == pytest.approx(1.291, abs=5e-4)
    assert r["lo"] == pytest.approx(0.446, abs=5e-4)
    assert r["hi"] == pytest.approx(4.554, abs=5e-4)
    assert r["call"] == "helps"
    assert r["verdict"] == "DRT helps by 2.5 [0.4, 4.6]"
    assert r["mde"] is not None and r["mde"] > 0
    assert P.paired_diffs([1, 2, 3, 4]) == r


def test_interval_alpha() -> None:
    r = P.paired_diffs([1, 2, 3, 4], alpha=0.10)  # t_{0.95,3} = 2.353 -> 2.5 ± 1.519
    assert r["lo"] == pytest.approx(2.5 - 2.353363 * math.sqrt(5 / 3) / 2, abs=1e-5)


# ------------------------------------------------------------------------------------------ the MDE


def _rejection_rate(effect: float, sd: float, n: int, sims: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    d = rng.normal(effect, sd, size=(sims, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1)))


@pytest.mark.parametrize(("sd", "n"), [(2.0, 6), (5.0, 3)])
def test_mde_monte_carlo(sd: float, n: int) -> None:
    m = P.mde(sd, n)
    assert P.power_at(m, sd, n) == pytest.approx(0.8, abs=1e-9)
    # 20,000 simulated paired t-tests at δ = MDE: SE of the rate is 0.0028, so ±0.01 is ~3.5 SE.
    assert _rejection_rate(m, sd, n, 20_000, seed=1234) == pytest.approx(0.80, abs=0.01)
    assert _rejection_rate(0.0, sd, n, 20_000, seed=99) == pytest.approx(0.05, abs=0.01)  # the level


def test_mde_normal_approximation() -> None:
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)  # 2.8016
    assert P.mde_normal(5.0, 25) == pytest.approx(z * 5.0 / 5.0)
    for n in (100, 400, 2000):
        assert P.mde(3.0, n) == pytest.approx(P.mde_normal(3.0, n), rel=0.02)
    # the t-based MDE is always larger (unknown SD), badly so for few seeds
    assert P.mde(3.0, 5) > 1.2 * P.mde_normal(3.0, 5)
    assert P.mde(5.0, 2) > P.mde(5.0, 3) > P.mde(5.0, 10)  # n = 2 (df = 1) still solves
    assert P.mde(0.0, 5) == 0.0
    assert P.mde(2.0, 10) == pytest.approx(2 * P.mde(1.0, 10))  # linear in sd


def test_mde_power_level() -> None:
    assert P.mde(4.0, 10, power=0.9) > P.mde(4.0, 10) > P.mde(4.0, 10, power=0.5)
    assert P.mde(4.0, 10, alpha=0.01) > P.mde(4.0, 10)


# ------------------------------------------------------------------------------------------ seed counts


def test_pairs_for_halfwidth_issue_arithmetic() -> None:
    def direct(sd: float, h: float) -> int:
        n = 2
        while stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > h:
            n += 1
        return n

    # "With a paired SD of 5 points, a ±2-point 95 % interval needs about 27 seeds"
    assert P.pairs_for_halfwidth(5.0, 2.0) == direct(5.0, 2.0) == 27
    for sd, h in [(1.0, 5.0), (3.0, 1.0), (5.0, 1.0), (0.5, 0.5), (0.0, 1.0)]:
        assert P.pairs_for_halfwidth(sd, h) == direct(sd, h)


@pytest.mark.parametrize(("sd", "effect"), [(5.0, 3.0), (5.0, 2.0), (2.0, 4.0), (2.0, 10.0), (1.0, -0.5)])
def test_pairs_for_effect_inverts_mde(sd: float, effect: float) -> None:
    n = P.pairs_for_effect(sd, effect)
    assert n >= 2
    assert P.mde(sd, n) <= abs(effect)
    if n > 2:
        assert abs(effect) < P.mde(sd, n - 1)


def test_pairs_for_effect_known() -> None:
    # normal approximation ((1.96 + 0.8416) * 5 / 3)^2 = 21.8; the t-test needs a few more pairs
    assert P.pairs_for_effect(5.0, 3.0) == 24


# ------------------------------------------------------------------------------------------ verdicts


def test_verdict_cases() -> None:
    assert P.verdict([1, 2, 3, 4]) == "DRT helps by 2.5 [0.4, 4.6]"
    assert P.verdict([-1, -2, -3, -4]) == "DRT hurts by 2.5 [-4.6, -0.4]"
    m = P.mde(math.sqrt(10 / 3), 4)  # diffs [1, -1, 2, -2]: mean 0, sd sqrt(10/3)
    assert P.verdict([1, -1, 2, -2]) == (
        f"no difference larger than ±{m:.1f} (MDE = {m:.1f} at 80 % power, n = 4 pairs)"
    )
    assert m == pytest.approx(3.9, abs=0.05)
    assert P.verdict([3.0]) == "not enough seeds (n = 1): no interval"
    assert P.verdict([1, 2, 3, 4], a="DRT", b="the capacity control").startswith("DRT helps by")
    assert P.verdict([1, 2, 3, 4], a="CA").startswith("CA helps by")


def test_sign_convention() -> None:
    # a - b: the first arm winning is positive, and swapping the arms flips the call and the interval
    drt, static = [80.0, 82.0, 81.0], [78.0, 79.0, 79.5]
    x, y = P.paired(drt, static), P.paired(static, drt)
    assert x["mean"] == pytest.approx(2.1666666)
    assert y["mean"] == pytest.approx(-x["mean"])
    assert (y["lo"], y["hi"]) == pytest.approx((-x["hi"], -x["lo"]))
    assert x["call"] == "helps" and y["call"] == "hurts"
    assert x["verdict"].startswith("DRT helps by 2.2 [") and y["verdict"].startswith("DRT hurts by 2.2 [-")


def test_single_pair_and_straddle() -> None:
    r = P.paired([75.0], [73.0])
    assert r == {
        "n": 1, "mean": 2.0, "sd": None, "lo": None, "hi": None, "mde": None, "call": "insufficient",
        "verdict": "not enough seeds (n = 1): no interval",
    }  # fmt: skip
    r = P.paired_diffs([0.5, -0.5, 1.0, 0.0, -1.0])
    assert r["call"] == "none" and r["lo"] < 0 < r["hi"] and r["verdict"].endswith("n = 5 pairs)")


def test_zero_spread() -> None:
    r = P.paired_diffs([1.5, 1.5, 1.5])
    assert r["sd"] == 0.0 and r["lo"] == r["hi"] == 1.5 and r["mde"] == 0.0
    assert r["verdict"] == "DRT helps by 1.5 [1.5, 1.5]"


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1.0, 2.0], [1.0], "lengths differ"),
        ([], [], "no pairs"),
        ([1.0, float("nan")], [1.0, 2.0], "non-finite"),
        ([1.0, 2.0], [float("inf"), 2.0], "non-finite"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "flat"),
    ],
)
def test_bad_input(a: list, b: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        P.paired(a, b)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        P.mde(1.0, 1)
    with pytest.raises(ValueError):
        P.mde(-1.0, 5)
    with pytest.raises(ValueError):
        P.pairs_for_halfwidth(1.0, 0.0)
    with pytest.raises(ValueError):
        P.pairs_for_effect(1.0, 0.0)
    with pytest.raises(ValueError):
        P.paired_diffs([1, 2], alpha=1.5)


# ------------------------------------------------------------------------------------------ agreement


def _r(call: P.Call, lo: float | None, hi: float | None) -> P.PairedResult:
    mid = 0.0 if lo is None or hi is None else (lo + hi) / 2
    return P.PairedResult(n=5, mean=mid, sd=1.0, lo=lo, hi=hi, mde=1.0, call=call, verdict="")


def test_agreement() -> None:
    a = P.agreement(_r("helps", 0.5, 3.0), _r("helps", 1.0, 4.0))
    assert a["same_verdict"] is True and a["overlap"] is True and a["calls"] == ("helps", "helps")
    assert a["summary"] == "same verdict; intervals overlap"
    a = P.agreement(_r("helps", 0.5, 3.0), _r("none", -1.0, 2.0))
    assert a["same_verdict"] is False and a["overlap"] is True
    assert a["summary"] == "different verdicts (helps vs none); intervals overlap"
    a = P.agreement(_r("helps", 2.5, 4.0), _r("hurts", -3.0, -0.2))
    assert a["same_verdict"] is False and a["overlap"] is False
    a = P.agreement(_r("helps", 0.5, 1.0), _r("helps", 2.0, 3.0))  # same sign, disjoint magnitudes
    assert a["same_verdict"] is True and a["overlap"] is False
    assert P.agreement(_r("helps", 0.0, 1.0), _r("none", 1.0, 2.0))["overlap"] is True  # touching counts
    one = P.paired([75.0], [73.0])
    a = P.agreement(one, one)
    assert a["same_verdict"] is False and a["overlap"] is None
    assert a["summary"] == "different verdicts (insufficient vs insufficient); no interval to compare"


def test_agreement_from_records() -> None:
    torch_r = P.paired([80.1, 81.0, 79.5, 80.7], [78.0, 78.9, 78.1, 78.2])
    keras_r = P.paired([79.8, 80.9, 80.0, 80.2], [78.3, 78.5, 78.0, 78.6])
    a = P.agreement(torch_r, keras_r)
    assert a["calls"] == ("helps", "helps") and a["same_verdict"] and a["overlap"]
