"""Hyperparameter registry: per-suite defaults, DomainBed-style seeded sampling, command-line overrides.

Every method hyperparameter is declared once here (name, type, allowed range, per-method/per-suite default and
an optional random-search sampler). :func:`resolve` turns ``(method, suite, overrides)`` into the complete,
validated dict that goes into a job spec; every key of that dict is consumed by
:class:`harness.spec.method.MethodSpec`.

* **Defaults** depend on the method and the suite (``digits``, ``digit-five``, ``domainnet``, ``smoke``; other
  suites get the ``digits`` values). The values of the paper / the authors' releases are marked *(paper)* or
  *(release)*; the rest are our choices (see ``docs/method-facts.md`` §4–5). A method's own defaults for
  shared hyperparameters, and which non-common hyperparameters it reads, come from its row of
  :mod:`harness.method_table` (``defaults``, ``uses``).
* **Sampling** (:func:`sample`) follows DomainBed's ``hparams_registry``: each hyperparameter draws from its
  own ``numpy.random.RandomState`` seeded by a hash of ``(seed, name)``, so adding a hyperparameter never
  changes the draws of the others. ``seed=0`` means "the defaults".
* **Overrides** come from the command line as ``--hparams '{"lr": 0.01}'`` (JSON) or ``name=value`` pairs
  (:func:`parse_overrides`); unknown names, wrong types and out-of-range values raise a
  :class:`~harness.errors.SpecError` naming the hyperparameter.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import SpecError
from harness.method_table import METHODS, TABLE

SUITES: tuple[str, ...] = ("digits", "digit-five", "domainnet", "smoke")
_SPEC = "hparams"

Default = Any  # a value, or a per-suite mapping {"domainnet": v, "other": v}


@dataclass(frozen=True)
class HParam:
    """One hyperparameter: type, range check, default (per method/suite), optional sampler, documentation."""

    name: str
    kind: str  # "float" | "int" | "str" | "int_list" | "bool"
    default: Default
    doc: str
    common: bool = False  # read by every method; otherwise by the methods whose table row ``uses`` it
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[Any, ...] | None = None
    sampler: Callable[[np.random.RandomState], Any] | None = None
    #: False for hyperparameters added after jobs were recorded: at their default they are left out of the
    #: resolved dict (:func:`resolve`, the job spec), so adding one did not change any existing job identity;
    #: set to another value they appear in the spec (a different job). :class:`MethodSpec` fills them in.
    in_spec_at_default: bool = True

    def applies_to(self, method: str) -> bool:
        return self.common or self.name in TABLE[method].uses

    def owners(self) -> tuple[str, ...]:
        """The methods that read this hyperparameter (from the method table)."""
        return tuple(m for m in METHODS if self.applies_to(m))

    def default_for(self, method: str, suite: str) -> Any:
        """The method's own default (table row ``defaults``) if it has one, else this registry's."""
        value = TABLE[method].defaults.get(self.name, self.default)
        if isinstance(value, Mapping):  # per suite: {"domainnet": v, "other": v}
            value = value.get(suite.replace("-", "_"), value["other"])
        elif callable(value):
            value = value(suite)
        return list(value) if isinstance(value, tuple | list) else value

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "int_list":
            return "a list of integers >= 0 (epochs)"
        if self.kind == "bool":
            return "true or false"
        kind = "an integer" if self.kind == "int" else "a number"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return kind + (" " + " and ".join(parts) if parts else "")

    def check(self, value: Any) -> Any:
        """Return ``value`` normalised (int → float for floats, list for lists) or raise a SpecError."""
        bad = SpecError(_SPEC, self.name, value, self.allowed())
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind == "str":
            if value not in (self.choices or ()):
                raise bad
            return value
        if self.kind == "int_list":
            if not isinstance(value, list | tuple):
                raise bad
            out = []
            for v in value:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise bad
                out.append(int(v))
            if out != sorted(out):
                raise SpecError(_SPEC, self.name, value, "an increasing list of epochs")
            return out
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if self.kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad
                value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if self.choices is not None and value not in self.choices:
            raise bad
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise bad
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            raise bad
        return value


def _per_suite(**values: Any) -> dict[str, Any]:
    """Default from a suite table (key ``other`` for suites not listed; ``-`` in suite names as ``_``)."""
    return dict(values)


def _log_uniform(lo: float, hi: float) -> Callable[[np.random.RandomState], float]:
    return lambda r: float(10 ** r.uniform(lo, hi))


def _uniform(lo: float, hi: float) -> Callable[[np.random.RandomState], float]:
    return lambda r: float(r.uniform(lo, hi))


def _choice(values: Iterable[Any]) -> Callable[[np.random.RandomState], Any]:
    vals = list(values)
    return lambda r: vals[int(r.randint(len(vals)))]



REGISTRY: dict[str, HParam] = {
    h.name: h
    for h in [
        # ---- optimiser and learning-rate schedule (every method) ----
        HParam(
            "optimizer",
            "str",
            "sgd",
            "optimiser of the main stage: SGD with momentum (paper) or Adam",
            choices=("sgd", "adam"),
            common=True,
        ),
        HParam(
            "lr",
            "float",
            _per_suite(domainnet=1e-3, other=1e-2),
            "base learning rate; pretrained backbone parameters train at lr, everything else at "
            "lr * lr_new_mult when the backbone is pretrained (DomainNet 1e-3, paper; digits 2e-3, paper, "
            "for the one-step MCD, whose eta=50 reversed gradient diverges at 1e-2 from scratch; 1e-2, ours, "
            "for the other methods' short runs)",
            lo=0.0,
            lo_open=True,
            sampler=_log_uniform(-3.5, -1.5),
            common=True,
        ),
        HParam(
            "lr_new_mult",
            "float",
            10.0,
            "learning-rate multiplier of new parameters (heads, critics, DRT branches/bases) when the "
            "backbone starts from pretrained weights (release: 10); ignored when training from scratch",
            lo=0.0,
            lo_open=True,
            common=True,
        ),
        HParam(
            "lr_milestones",
            "int_list",
            _per_suite(domainnet=[5, 10], other=[]),
            "epochs at which the learning rate is multiplied by lr_decay (DomainNet [5, 10], paper)",
            common=True,
        ),
        HParam(
            "lr_decay",
            "float",
            0.1,
            "factor applied at each milestone (paper 0.1)",
            lo=0.0,
            hi=1.0,
            lo_open=True,
            common=True,
        ),
        HParam(
            "momentum", "float", 0.9, "SGD momentum (release 0.9)", lo=0.0, hi=1.0, hi_open=True, common=True
        ),
        HParam(
            "weight_decay",
            "float",
            5e-4,
            "L2 weight decay added to the gradient (torch SGD/Adam semantics; release 5e-4)",
            lo=0.0,
            sampler=_log_uniform(-6, -2.5),
            common=True,
        ),
        HParam(
            "adam_beta1",
            "float",
            0.9,
            "Adam beta1 (main optimiser when optimizer=adam)",
            lo=0.0,
            hi=1.0,
            hi_open=True,
            common=True,
        ),
        HParam(
            "adam_beta2", "float", 0.999, "Adam beta2", lo=0.0, hi=1.0, hi_open=True, common=True
        ),
        HParam("adam_eps", "float", 1e-8, "Adam epsilon", lo=0.0, lo_open=True, common=True),
        HParam(
            "label_smoothing",
            "float",
            0.0,
            "label smoothing eps of the source cross-entropy, release form: 1-eps on the true class, "
            "eps/(C-1) on the others (release 0.01 for MCD+DRT)",
            lo=0.0,
            hi=1.0,
            hi_open=True,
            sampler=_choice([0.0, 0.01, 0.1]),
            common=True,
        ),
        # ---- DANN ----
        HParam(
            "dann_weight",
            "float",
            1.0,
            "weight of the domain BCE (loss = CE + w * BCE)",
            lo=0.0,
            sampler=_log_uniform(-1.5, 0.5),
        ),
        HParam(
            "dann_gamma",
            "float",
            10.0,
            "gamma of the GRL schedule lambda_p = 2/(1+exp(-gamma p)) - 1 (Ganin 2015: 10)",
            lo=0.0,
            lo_open=True,
        ),
        HParam(
            "critic_hidden",
            "int",
            500,
            "width of the domain critic's hidden layers (DANN 1024, ADDA 500)",
            lo=1,
        ),
        HParam(
            "critic_depth",
            "int",
            2,
            "number of hidden layers of the domain critic",
            lo=1,
            hi=8,
        ),
        # ---- ADDA ----
        HParam(
            "adda_stage1_frac",
            "float",
            0.5,
            "fraction of the training steps spent in ADDA stage 1 (source CE); the rest is stage 2",
            lo=0.0,
            hi=1.0,
            lo_open=True,
            hi_open=True,
        ),
        HParam(
            "adda_lr",
            "float",
            1e-4,
            "Adam learning rate of ADDA stage 2 (critic and target encoder)",
            lo=0.0,
            lo_open=True,
            sampler=_log_uniform(-5, -3),
        ),
        HParam(
            "adda_beta1",
            "float",
            0.5,
            "Adam beta1 of ADDA stage 2",
            lo=0.0,
            hi=1.0,
            hi_open=True,
        ),
        HParam(
            "adda_beta2",
            "float",
            0.9,
            "Adam beta2 of ADDA stage 2",
            lo=0.0,
            hi=1.0,
            hi_open=True,
        ),
        # ---- MCD family ----
        HParam(
            "num_k",
            "int",
            4,
            "generator steps (step C) per iteration (Saito 2018: 4)",
            lo=1,
            hi=100,
            sampler=_choice([1, 2, 3, 4, 6]),
        ),
        HParam(
            "mcd_predict",
            "str",
            "mean_softmax",
            "how the two classifiers predict: max_logit = the classifier with the larger max logit per "
            "sample (DRT release), mean_softmax = mean of the two softmaxes",
            choices=("max_logit", "mean_softmax"),
        ),
        HParam(
            "eta",
            "float",
            50.0,
            "weight of the discrepancy in the one-step MCD loss (release 50, the paper's lambda)",
            lo=0.0,
            sampler=_log_uniform(0, 2),
        ),
        HParam(
            "gamma",
            "float",
            0.01,
            "weight of the class-diversity entropy term (release 0.01)",
            lo=0.0,
            sampler=_log_uniform(-3, -1),
        ),
        HParam(
            "grl_lambda",
            "float",
            4.0,
            "gradient-reversal scale before the discrepancy (release 4)",
            lo=0.0,
            sampler=_log_uniform(-1, 1),
        ),
        # ---- M3SDA-beta ----
        HParam(
            "md_weight",
            "float",
            0.5,
            "weight of the moment distance (Dassl 0.5)",
            lo=0.0,
            sampler=_log_uniform(-2, 0.5),
        ),
        # ---- DRT + self-training ----
        HParam(
            "st_stage1_frac",
            "float",
            0.5,
            "fraction of the training steps of DRT training (mcd_grl loss) before pseudo-labelling",
            lo=0.0,
            hi=1.0,
            lo_open=True,
            hi_open=True,
        ),
        HParam(
            "st_confidence",
            "float",
            0.8,
            "pseudo-label a target sample when its confidence is > this (paper 0.8)",
            lo=0.0,
            hi=1.0,
            hi_open=True,
            sampler=_uniform(0.6, 0.95),
        ),
        HParam(
            "st_weight",
            "float",
            1.0,
            "weight of the pseudo-labelled target cross-entropy in stage 2",
            lo=0.0,
        ),
        # ---- CDAN (also reads dann_weight as its trade-off and dann_gamma as its GRL gamma) ----
        HParam(
            "cdan_entropy",
            "bool",
            False,
            "entropy conditioning (CDAN+E): weight each sample's domain BCE by 1 + exp(-H(g)), normalised "
            "per domain (release's CDAN+E)",
        ),
        HParam(
            "cdan_random_dim",
            "int",
            1024,
            "output width r of the randomized multilinear map (f R_f) * (g R_g) / sqrt(r), used when "
            "feature_dim * num_classes > 4096 (release random_dim 1024)",
            lo=1,
        ),
        HParam(
            "eta_schedule",
            "str",
            "constant",
            "schedule of the discrepancy weight eta of the one-step MCD: constant (default, the release) or "
            "ramp (eta_p = eta * (2 / (1 + exp(-10 p)) - 1), p = step / total steps: the DANN GRL warm-up "
            "applied to eta, so a network trained from scratch learns the sources before the adversarial "
            "term reaches full weight)",
            choices=("constant", "ramp"),
            in_spec_at_default=False,
        ),
        # ---- learning-rate annealing (every method; added later: absent from specs at its default) ----
        HParam(
            "lr_anneal",
            "str",
            "none",
            "per-step annealing on top of the lr_milestones steps: none (default; the paper's and the DRT "
            "release's step schedule) or dann (Ganin & Lempitsky 2015: lr_p = lr / (1 + 10 p)^0.75, "
            "p = step / total steps)",
            common=True,
            choices=("none", "dann"),
            in_spec_at_default=False,
        ),
    ]
}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise SpecError("MethodSpec", "method", method, f"one of {', '.join(METHODS)}")


def names(method: str) -> list[str]:
    """The hyperparameters ``method`` reads, in registry order."""
    _check_method(method)
    return [n for n, h in REGISTRY.items() if h.applies_to(method)]


def defaults(method: str, suite: str = "digits") -> dict[str, Any]:
    """Default hyperparameters of ``method`` on ``suite``."""
    return {n: REGISTRY[n].default_for(method, suite) for n in names(method)}


def seed_hash(*args: Any) -> int:
    """DomainBed's ``seed_hash``: an integer in [0, 2**31) derived from ``args`` by MD5."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2**31)


def sample(method: str, suite: str = "digits", seed: int = 0) -> dict[str, Any]:
    """Random-search hyperparameters (DomainBed style). ``seed=0`` gives :func:`defaults`.

    Each sampled hyperparameter uses ``RandomState(seed_hash(seed, name))``; ones without a sampler keep their
    default.
    """
    out = defaults(method, suite)
    if seed == 0:
        return out
    for n in out:
        h = REGISTRY[n]
        if h.sampler is not None:
            out[n] = h.check(h.sampler(np.random.RandomState(seed_hash(seed, n))))
    return out


def validate(method: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key/value of ``hparams`` for ``method``; returns the normalised dict."""
    known = names(method)
    out: dict[str, Any] = {}
    for n, v in hparams.items():
        if n not in REGISTRY:
            raise SpecError(_SPEC, n, v, f"a known hyperparameter of {method} ({', '.join(known)})")
        if n not in known:
            raise SpecError(
                _SPEC,
                n,
                v,
                f"a hyperparameter of {method}; {n} belongs to "
                f"{', '.join(REGISTRY[n].owners())} ({', '.join(known)})",
            )
        out[n] = REGISTRY[n].check(v)
    return out


def resolve(
    method: str,
    suite: str = "digits",
    overrides: Mapping[str, Any] | None = None,
    *,
    sample_seed: int = 0,
    ignore_foreign: bool = False,
) -> dict[str, Any]:
    """The complete hyperparameter dict of a job: defaults (or a sample) updated by ``overrides``.

    ``ignore_foreign=True`` drops overrides that are known hyperparameters of *other* methods (a sweep that
    sets ``eta`` for every method); unknown names are always an error.
    """
    base = sample(method, suite, sample_seed)
    overrides = dict(overrides or {})
    if ignore_foreign:
        for n in list(overrides):
            if n in REGISTRY and not REGISTRY[n].applies_to(method):
                del overrides[n]
    base.update(validate(method, overrides))
    return {
        k: v
        for k, v in base.items()
        if REGISTRY[k].in_spec_at_default or v != REGISTRY[k].default_for(method, suite)
    }


def implicit_defaults(method: str, suite: str = "digits") -> dict[str, Any]:
    """The defaults :func:`resolve` leaves out of a job spec (``in_spec_at_default=False``)."""
    return {n: v for n, v in defaults(method, suite).items() if not REGISTRY[n].in_spec_at_default}


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: str | Iterable[str] | None) -> dict[str, Any]:
    """Parse ``--hparams`` arguments: a JSON object, ``name=value`` pairs (values parsed as JSON, else
    strings), or a list mixing both. Types and ranges are checked later by :func:`validate`."""
    if items is None:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, Any] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        if item.startswith("{"):
            try:
                obj = json.loads(item)
            except json.JSONDecodeError as e:
                raise SpecError(
                    _SPEC, "--hparams", item, f"a JSON object ({e.msg} at char {e.pos})"
                ) from None
            if not isinstance(obj, dict):
                raise SpecError(_SPEC, "--hparams", item, "a JSON object")
            out.update(obj)
            continue
        for part in item.split(",") if "=" in item and "[" not in item else [item]:
            if "=" not in part:
                raise SpecError(_SPEC, "--hparams", part, 'name=value or a JSON object such as {"lr": 0.01}')
            name, value = part.split("=", 1)
            out[name.strip()] = _parse_value(value.strip())
    return out


def describe(method: str, suite: str = "digits") -> list[dict[str, Any]]:
    """Rows (name, default, allowed, doc) for documentation and ``--help`` listings."""
    return [
        {
            "name": n,
            "default": REGISTRY[n].default_for(method, suite),
            "allowed": REGISTRY[n].allowed(),
            "doc": REGISTRY[n].doc,
        }
        for n in names(method)
    ]
