"""The statistics of a verdict: paired intervals, minimum detectable effects and seed counts.

The harness compares, per method, a DRT model with its static twin (and with its capacity control) over
*paired* seeds: seed ``i`` of both arms sees the same data order (and the same initial weights of the shared
layers), so the unit of analysis is the per-seed difference ``d_i = a_i - b_i`` of two accuracies in percent,
i.e. in percentage points. With ``n`` pairs,

* mean difference ``d̄ = (1/n) Σ d_i`` and paired SD ``s_d = sqrt(Σ (d_i - d̄)² / (n - 1))`` (sample SD);
* the ``1 - α`` t-interval ``d̄ ± t_{1-α/2, n-1} · s_d / √n`` (needs ``n ≥ 2``);
* the *minimum detectable effect* (MDE): the smallest true mean difference ``δ > 0`` that a two-sided paired
  t-test at level ``α`` with ``n`` pairs and SD ``s_d`` detects with probability ``power`` (see :func:`mde`).

The verdict line reads the interval: ``a`` *helps* when the whole interval is above 0, *hurts* when it is
below 0, and otherwise no difference larger than the MDE could be seen with the seeds that ran. Nothing here
imports a framework: inputs are plain sequences of floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, TypedDict

import numpy as np
from scipy import optimize, stats

#: Sign class of a comparison: the interval lies above 0, below 0, straddles 0, or there is none (n < 2).
Call = Literal["helps", "hurts", "none", "insufficient"]


class PairedResult(TypedDict):
    """One paired comparison ``a - b`` (percentage points).

    ``sd``, ``lo``, ``hi`` and ``mde`` are ``None`` when ``n < 2`` (no spread, no interval).
    """

    n: int
    mean: float
    sd: float | None
    lo: float | None
    hi: float | None
    mde: float | None
    call: Call
    verdict: str


class Agreement(TypedDict):
    """Whether two frameworks' results for the same comparison agree (see :func:`agreement`)."""

    calls: tuple[Call, Call]
    same_verdict: bool
    overlap: bool | None
    summary: str


# --------------------------------------------------------------------------------------------- helpers


def _check_level(alpha: float, power: float | None = None) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if power is not None and not alpha / 2 < power < 1.0:
        raise ValueError(f"power must be in (alpha/2, 1), got {power!r}")


def _check_sd(sd: float) -> float:
    sd = float(sd)
    if not math.isfinite(sd) or sd < 0:
        raise ValueError(f"sd must be a finite number >= 0, got {sd!r}")
    return sd


def _t_crit(n: int, alpha: float) -> float:
    """``t_{1-α/2, n-1}``, the two-sided critical value of a paired t-test with ``n`` pairs."""
    return float(stats.t.ppf(1.0 - alpha / 2.0, n - 1))


def _as_diffs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.ndim != 1 or xb.ndim != 1:
        raise ValueError(f"expected two flat sequences of accuracies, got shapes {xa.shape} and {xb.shape}")
    if xa.shape != xb.shape:
        raise ValueError(
            f"the two arms must be paired by seed: got {xa.size} and {xb.size} values (lengths differ)"
        )
    return _check_diffs(xa - xb, xa, xb)


def _check_diffs(d: np.ndarray, *arms: np.ndarray) -> np.ndarray:
    if d.ndim != 1:
        raise ValueError(f"expected a flat sequence of differences, got shape {d.shape}")
    if d.size == 0:
        raise ValueError("no pairs: at least one seed per arm is needed")
    for arr in arms or (d,):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(f"non-finite value(s) at position(s) {bad.tolist()}: {arr[bad].tolist()}")
    return d


# --------------------------------------------------------------------------------------------- power


def power_at(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs at true mean difference ``effect``.

    Under a true mean difference ``δ`` and SD ``σ`` the statistic ``T = d̄ / (s_d/√n)`` follows a noncentral
    t distribution, ``T ~ nct(df = n - 1, nc = δ√n/σ)``, so with ``c = t_{1-α/2, n-1}``::

        power = P(|T| > c) = P(T > c) + P(T < -c),

    the lower tail computed as ``P(T > c)`` at noncentrality ``-nc`` (the distribution's symmetry).

    ``sd = 0`` gives a degenerate test: power 1 for any ``effect != 0`` (and ``α`` at ``effect = 0``).
    """
    _check_level(alpha)
    sd = _check_sd(sd)
    if n < 2:
        raise ValueError(f"a paired t-test needs n >= 2 pairs, got n = {n}")
    if sd == 0.0:
        return alpha if effect == 0 else 1.0
    df = n - 1
    c = _t_crit(n, alpha)
    nc = float(effect) * math.sqrt(n) / sd
    # P(T < -c | nc) = P(T > c | -nc): scipy's nct.cdf can return NaN far in the lower tail, sf does not.
    upper, lower = float(stats.nct.sf(c, df, nc)), float(stats.nct.sf(c, df, -nc))
    if not (math.isfinite(upper) and math.isfinite(lower)):  # pragma: no cover - defensive
        raise ArithmeticError(f"noncentral t tail is not finite (df = {df}, nc = {nc})")
    return upper + lower


def mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect: the smallest ``δ > 0`` with :func:`power_at` ``(δ, sd, n, α) = power``.

    Exact, with the noncentral t distribution: solve ``P(|T| > t_{1-α/2, n-1}) = power`` for ``δ`` where
    ``T ~ nct(n - 1, δ√n/sd)`` (``scipy.optimize.brentq``; the power grows monotonically with ``δ > 0``).
    For reference, the normal approximation (known SD, large ``n``; it underestimates for small ``n``) is::

        MDE ≈ (z_{1-α/2} + z_{power}) · sd / √n        (≈ 2.80 · sd/√n at α = 0.05, power = 0.8)

    Same units as ``sd`` (percentage points). ``sd = 0`` gives 0.
    """
    _check_level(alpha, power)
    sd = _check_sd(sd)
    if n < 2:
        raise ValueError(f"the MDE of a paired t-test needs n >= 2 pairs, got n = {n}")
    if sd == 0.0:
        return 0.0
    # Work in units of sd/√n (the noncentrality), bracket the root by doubling, then scale back.
    se = sd / math.sqrt(n)

    def gap(nc: float) -> float:
        return power_at(nc * se, sd, n, alpha) - power

    hi = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    hi = max(float(hi), 1.0)
    while gap(hi) < 0:
        hi *= 2.0
        if hi > 1e8:  # pragma: no cover - unreachable for sane alpha/power
            raise ArithmeticError("could not bracket the MDE")
    nc = optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return float(nc * se)


def mde_normal(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The normal approximation ``(z_{1-α/2} + z_{power}) · sd/√n`` of :func:`mde` (for reference)."""
    _check_level(alpha, power)
    sd = _check_sd(sd)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * sd / math.sqrt(n))


def pairs_for_halfwidth(sd: float, halfwidth: float, alpha: float = 0.05) -> int:
    """Smallest ``n >= 2`` with ``t_{1-α/2, n-1} · sd/√n <= halfwidth``, ``sd`` a pilot SD of the differences.

    The half-width decreases monotonically with ``n``; the search starts at the normal bound
    ``⌈(z_{1-α/2} · sd / halfwidth)²⌉`` (a lower bound, since ``t > z``) and steps up.
    E.g. ``sd = 5``, ``halfwidth = 2``: 27 pairs.
    """
    _check_level(alpha)
    sd = _check_sd(sd)
    if not (math.isfinite(halfwidth) and halfwidth > 0):
        raise ValueError(f"halfwidth must be a finite number > 0, got {halfwidth!r}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    n = max(2, math.ceil((z * sd / halfwidth) ** 2))
    while _t_crit(n, alpha) * sd / math.sqrt(n) > halfwidth:
        n += 1
    return n


def pairs_for_effect(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Smallest ``n >= 2`` whose paired t-test detects a true difference ``|effect|`` with probability
    ``power`` — the inverse of :func:`mde`: ``mde(sd, n) <= |effect| < mde(sd, n - 1)``.

    Starts at the normal approximation ``⌈((z_{1-α/2} + z_{power}) · sd / effect)²⌉`` and steps down/up on the
    exact (noncentral t) power.
    """
    _check_level(alpha, power)
    sd = _check_sd(sd)
    effect = abs(float(effect))
    if not (math.isfinite(effect) and effect > 0):
        raise ValueError(f"effect must be a finite nonzero number, got {effect!r}")
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    n = max(2, math.ceil((z * sd / effect) ** 2))
    while n > 2 and power_at(effect, sd, n - 1, alpha) >= power:
        n -= 1
    while power_at(effect, sd, n, alpha) < power:
        n += 1
    return n


# --------------------------------------------------------------------------------------------- verdicts


def _fmt(x: float) -> str:
    s = f"{x:.1f}"
    return "0.0" if s == "-0.0" else s


def _pct(p: float) -> str:
    return f"{100 * p:g} %"


def paired_diffs(
    diffs: Sequence[float],
    *,
    names: tuple[str, str] = ("DRT", "static"),
    alpha: float = 0.05,
    power: float = 0.8,
) -> PairedResult:
    """:func:`paired` on ready-made per-seed differences ``d_i = a_i - b_i`` (percentage points)."""
    _check_level(alpha, power)
    d = _check_diffs(np.asarray(diffs, dtype=float))
    a, _b = names
    n = int(d.size)
    mean = float(d.mean())
    if n < 2:
        return PairedResult(
            n=n, mean=mean, sd=None, lo=None, hi=None, mde=None, call="insufficient",
            verdict=f"not enough seeds (n = {n}): no interval",
        )  # fmt: skip
    sd = float(d.std(ddof=1))
    half = _t_crit(n, alpha) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    m = mde(sd, n, alpha, power)
    interval = f"[{_fmt(lo)}, {_fmt(hi)}]"
    call: Call
    if lo > 0:
        call, text = "helps", f"{a} helps by {_fmt(mean)} {interval}"
    elif hi < 0:
        call, text = "hurts", f"{a} hurts by {_fmt(-mean)} {interval}"
    else:
        call = "none"
        text = f"no difference larger than ±{_fmt(m)} (MDE = {_fmt(m)} at {_pct(power)} power, n = {n} pairs)"
    return PairedResult(n=n, mean=mean, sd=sd, lo=lo, hi=hi, mde=m, call=call, verdict=text)


def paired(
    a: Sequence[float],
    b: Sequence[float],
    *,
    names: tuple[str, str] = ("DRT", "static"),
    alpha: float = 0.05,
    power: float = 0.8,
) -> PairedResult:
    """Paired comparison of two arms' per-seed accuracies (percent), paired by position: ``d_i = a_i - b_i``.

    Returns ``n``, the mean difference ``d̄`` (points), the paired SD ``s_d`` (``ddof = 1``), the ``1 - α``
    t-interval ``[lo, hi] = d̄ ± t_{1-α/2, n-1} · s_d/√n``, the :func:`mde` at ``power`` for these ``n`` and
    ``s_d``, the sign class ``call`` and one verdict line (numbers with one decimal, points)::

        lo > 0:  "{a} helps by {d̄} [{lo}, {hi}]"
        hi < 0:  "{a} hurts by {-d̄} [{lo}, {hi}]"       (magnitude; the interval is of a - b, signed)
        else:    "no difference larger than ±{mde} (MDE = {mde} at 80 % power, n = {n} pairs)"
        n < 2:   "not enough seeds (n = 1): no interval"

    ``names = (a, b)`` name the arms, e.g. ``("DRT", "the capacity control")``. Raises ``ValueError`` on
    unequal lengths, no pairs, or a non-finite value.
    """
    return paired_diffs(_as_diffs(a, b), names=names, alpha=alpha, power=power)


def verdict(
    diffs: Sequence[float], a: str = "DRT", b: str = "static", alpha: float = 0.05, power: float = 0.8
) -> str:
    """The verdict line of :func:`paired_diffs` for differences ``a - b``."""
    return paired_diffs(diffs, names=(a, b), alpha=alpha, power=power)["verdict"]


def agreement(x: PairedResult, y: PairedResult) -> Agreement:
    """Do two frameworks (e.g. torch ``x`` and Keras ``y``) reach the same verdict on one comparison?

    ``same_verdict``: equal sign classes (helps / hurts / none; two ``insufficient`` results agree on nothing
    and count as not the same). ``overlap``: the two intervals intersect, ``max(lo) <= min(hi)`` (``None``
    when either has no interval).
    """
    cx, cy = x["call"], y["call"]
    same = cx == cy and cx != "insufficient"
    overlap: bool | None
    if x["lo"] is None or x["hi"] is None or y["lo"] is None or y["hi"] is None:
        overlap = None
    else:
        overlap = bool(max(x["lo"], y["lo"]) <= min(x["hi"], y["hi"]))
    verdict_part = "same verdict" if same else f"different verdicts ({cx} vs {cy})"
    overlap_part = {True: "intervals overlap", False: "intervals disjoint", None: "no interval to compare"}
    summary = f"{verdict_part}; {overlap_part[overlap]}"
    return Agreement(calls=(cx, cy), same_verdict=same, overlap=overlap, summary=summary)
