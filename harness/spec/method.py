r"""Method spec: the networks, losses, weights, schedules and optimisers of every adaptation method.

One :class:`MethodSpec` is the single source both framework implementations (``impl_torch/methods``,
``impl_keras/methods``) read; its structure comes from the method's row of :mod:`harness.method_table`.
Hyperparameters come from :mod:`harness.hparams` (defaults per suite, seeded sampling, command-line
overrides). This module also holds NumPy reference implementations of every loss (the maths below), used by
the known-answer tests.

Notation: source batch ``(x_s, y_s, d_s)`` (``d_s`` = source-domain id), target batch ``x_t`` (unlabelled);
``G`` feature extractor, ``F``/``F1``/``F2`` classifiers, ``D`` domain critic; ``σ`` softmax over classes,
``C`` classes, ``B`` batch size; means are over the batch unless said otherwise.

Losses
------
* Cross-entropy with the release's label smoothing ``ε`` (:func:`cross_entropy`)::

      CE_ε(z, y) = -mean_b Σ_c w_bc log σ(z_b)_c,   w_bc = 1-ε if c = y_b else ε/(C-1)

  (``ε = 0``: plain cross-entropy. Note the release spreads ``ε`` over the ``C-1`` wrong classes, not over
  all ``C`` as ``torch.nn.CrossEntropyLoss(label_smoothing=ε)`` does.)
* Classifier discrepancy (MCD, :func:`discrepancy`): ``d(p1, p2) = mean_{b,c} |p1_bc - p2_bc|``.
* Class-diversity entropy term (release, :func:`diversity_entropy`)::

      ent(p) = -(1/C) Σ_c log(mean_b p_bc + 1e-6)

  minimised, it spreads the *batch-mean* target prediction over the classes.
* Domain BCE (DANN/ADDA, :func:`bce_with_logits`): ``BCE(z, t) = mean_b [max(z,0) - z t + log(1+e^{-|z|})]``.
* Gradient reversal ``GRL_λ`` (:func:`grl_backward`): identity forward, gradient ``-λ·g`` backward.
* DANN schedule (:func:`dann_lambda`): ``λ_p = 2 / (1 + exp(-γ p)) - 1``, ``p = step / total_steps``, γ = 10.
* Moment distance (M3SDA-β as in Dassl, :func:`moment_distance`), sources ``S_1..S_N`` and target ``T``::

      D(u_1..u_{N+1}) = [Σ_i ||u_i - u_T||_2 + Σ_{i<j≤N} ||u_i - u_j||_2] / (N + N(N-1)/2)
      MD = ½ [D(means) + D(variances)]

  per-dimension batch means and *unbiased* variances of the features (first two moments).

Methods (defaults in :mod:`harness.hparams`)
--------------------------------------------
* ``source_only``: ``L = CE_ε(F(G(x_s)), y_s)``. Prediction ``σ(F(G(x)))``.
* ``dann`` (Ganin 2015): ``L = CE(F(G(x_s)), y_s) + w · [BCE(D(R(G(x_s))), 1) + BCE(D(R(G(x_t))), 0)] / 2``
  with ``R = GRL_{λ_p}``; source and target go through ``G`` as *separate* forwards (per-domain BatchNorm
  statistics, as in the usual implementations); one optimiser step on G, F, D. The domain loss is the mean of
  the two per-domain BCEs (= the BCE over the concatenated 2B logits when both halves have B samples).
* ``adda`` (Tzeng 2017, two stages): stage 1 = source-only on ``G_s, F``. At the switch ``G_t ← G_s``.
  Stage 2 per update: (a) critic step ``L_D = [BCE(D(G_s(x_s)), 1) + BCE(D(G_t(x_t)), 0)] / 2`` on D;
  (b) encoder step with inverted labels ``L_G = BCE(D(G_t(x_t)), 1)`` on G_t. ``G_s`` and ``F`` stay frozen
  (``G_s`` in inference mode, its BN statistics fixed); Adam(adda_lr, (adda_beta1, adda_beta2)) for G_t and D.
  Prediction ``σ(F(G_t(x)))``.
* ``mcd`` (Saito 2018, classic): step A ``CE(F1(G x_s)) + CE(F2(G x_s))`` on G, F1, F2; step B (G fixed):
  ``CE(F1) + CE(F2) − d(σF1(G x_t), σF2(G x_t))`` on F1, F2; step C (F fixed) ``d`` on G, ``num_k`` times.
  Source and target are separate forwards (as in Saito's code).
* ``mcd_grl`` (DRT release's one-step MCD, the paper's MCD rows): one forward of ``[x_s; x_t]`` through G,
  F1, F2 (shared BN statistics); ``L = CE_ε(F1) + CE_ε(F2) + γ·[ent(σF1(t)) + ent(σF2(t))] − η·d`` where
  ``d`` is computed on a second pass of the classifiers over ``GRL_λ(G(x_t))`` (λ = 4); one step on all.
* ``m3sda`` (Peng 2019, β variant as in Dassl): one classifier pair ``(F1_i, F2_i)`` per source ``i``; step A
  ``(1/N) Σ_i [CE(F1_i(G x_{s,i})) + CE(F2_i(G x_{s,i}))] + w_md · MD`` on G and all pairs; step B (G fixed)
  ``(1/N) Σ_i [CE + CE] − (1/N) Σ_i d(σF1_i(G x_t), σF2_i(G x_t))`` on the pairs; step C ``(1/N) Σ_i d`` on G,
  ``num_k`` times. Prediction ``(1/2N) Σ_i [σF1_i + σF2_i]`` (uniform weights).
* ``drt_st``: stage 1 = ``mcd_grl``; at the switch a frozen copy of the model (the *teacher*) pseudo-labels
  target samples whose confidence (max of the prediction's probabilities) is ``> st_confidence``; stage 2
  trains on ``CE_ε`` of the source batch plus ``st_weight`` × CE of the pseudo-labelled target samples of the
  batch (mean over the confident ones; 0 when none), both classifiers, no alignment terms.

Choices the sources leave open are listed in :data:`CHOICES`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import hparams as hp
from harness import method_table
from harness.errors import SpecError

METHODS = method_table.METHODS

#: Choices made where the papers/releases are silent or ambiguous (also in the report and docs).
CHOICES: dict[str, str] = {
    "mcd_predict": "mcd_grl/drt_st predict with the classifier whose max logit is larger (as released); "
    "mcd with the mean of the two softmaxes (Saito's code reports C1, C2 and a logit sum). "
    "Hyperparameter mcd_predict switches.",
    "m3sda_predict": "mean of all 2N classifiers' softmaxes "
    "(Dassl uses only the first classifier of each pair)",
    "m3sda_moments": "Dassl's moment distance: means and unbiased variances, L2 per pair, averaged over the "
    "N + C(N,2) pairs. Not the authors' code (VisionLearningGroup.github.io "
    "M3SDA/code_MSDA_digit/metric/msda.py @9a54008), which compares centred feature matrices "
    "sample-by-sample for the first moment, never centres/raises the 4th source, counts "
    "the s4-s2 pair twice and s4-s3 never, and divides by a hard-coded 6.",
    "m3sda_batches": "per-source statistics by domain-id masks over the batch (any order; the runner uses "
    "the balanced sampler so each source has B/N samples); CE per source is the mean over its samples; the "
    "pooled source batch is one forward through G (shared BatchNorm statistics; Dassl forwards each source "
    "chunk separately)",
    "dann_forwards": "source and target through G as separate forwards; domain loss = mean of the two BCEs; "
    "critic Linear-ReLU x critic_depth (no BN/dropout) -> 1 logit",
    "adda_stage_split": "stage 1 (source CE, the suite's optimiser) for adda_stage1_frac of the steps, then "
    "stage 2; one critic step then one encoder step per update; the frozen source encoder "
    "runs in inference mode; no weight decay in stage 2",
    "drt_st": "stage 1 = mcd_grl; pseudo-labels by a frozen teacher (copy at the switch) in inference mode, "
    "computed per batch; stage 2 continues from the stage-1 weights with source + pseudo-labelled "
    "target CE (no alignment terms)",
    "grads_none": "a parameter that receives no gradient in a step is not touched by the optimiser (torch "
    "semantics: no momentum or weight-decay update)",
    "weight_decay": "applied to every trainable parameter (BN and biases too), as torch's SGD/Adam "
    "weight_decay (added to the gradient)",
}


# ----------------------------------------------------------------------------------------------------------
# NumPy reference implementations (float64) of the losses in the module docstring
# ----------------------------------------------------------------------------------------------------------
def softmax(z: np.ndarray) -> np.ndarray:
    """Row softmax, numerically stable."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def cross_entropy(z: np.ndarray, y: np.ndarray, smoothing: float = 0.0) -> float:
    r"""``CE_ε(z, y) = -mean_b Σ_c w_bc log σ(z_b)_c``, ``w = 1-ε`` on ``y_b``, ``ε/(C-1)`` elsewhere."""
    lp = log_softmax(z)
    C = lp.shape[-1]
    w = np.full_like(lp, smoothing / (C - 1) if C > 1 else 0.0)
    w[np.arange(len(y)), np.asarray(y)] = 1.0 - smoothing
    return float(-(w * lp).sum(-1).mean())


def discrepancy(p1: np.ndarray, p2: np.ndarray) -> float:
    """MCD classifier discrepancy ``mean |p1 - p2|`` over batch and classes."""
    return float(np.abs(np.asarray(p1) - np.asarray(p2)).mean())


def diversity_entropy(p: np.ndarray, eps: float = 1e-6) -> float:
    """``-(1/C) Σ_c log(mean_b p_bc + eps)`` (the release's ``entropy_loss`` for one classifier)."""
    return float(-np.log(np.asarray(p).mean(0) + eps).mean())


def bce_with_logits(z: np.ndarray, t: np.ndarray | float) -> float:
    """Mean binary cross-entropy of logits ``z`` against targets ``t`` (stable form)."""
    z = np.asarray(z, dtype=np.float64)
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), z.shape)
    return float((np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean())


def dann_lambda(p: float, gamma: float = 10.0) -> float:
    """DANN's GRL coefficient ``2 / (1 + exp(-γ p)) - 1`` for training progress ``p`` in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def grl_backward(grad: np.ndarray, lam: float) -> np.ndarray:
    """Gradient of the gradient-reversal layer: ``-λ · grad`` (forward is the identity)."""
    return -lam * np.asarray(grad)


def _pair_mean_l2(sources: Sequence[np.ndarray], target: np.ndarray) -> float:
    dists = [np.sqrt(((s - target) ** 2).sum()) for s in sources]
    dists += [
        np.sqrt(((sources[i] - sources[j]) ** 2).sum())
        for i in range(len(sources))
        for j in range(i + 1, len(sources))
    ]
    return float(np.mean(dists))


def moment_distance(source_feats: Sequence[np.ndarray], target_feat: np.ndarray) -> float:
    """M3SDA-β moment distance (Dassl form): ``½ [D(means) + D(unbiased variances)]``, D averaged over the
    ``N`` source–target and ``C(N,2)`` source–source pairs of L2 distances."""
    means = [np.asarray(f).mean(0) for f in source_feats]
    var = [np.asarray(f).var(0, ddof=1) for f in source_feats]
    t = np.asarray(target_feat)
    return 0.5 * (_pair_mean_l2(means, t.mean(0)) + _pair_mean_l2(var, t.var(0, ddof=1)))


# ----------------------------------------------------------------------------------------------------------
# The spec
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetRole:
    """A network of a method: its key (module name in both frameworks), kind, and what it is."""

    name: str
    kind: str  # "features" | "classifier" | "critic" | "fixed"
    doc: str
    frozen: bool = False


@dataclass(frozen=True)
class Stage:
    """A training stage: its name and the fraction of all steps at which it ends (the last ends at 1.0)."""

    name: str
    end: float
    doc: str


@dataclass(frozen=True)
class OptimSpec:
    """One optimiser, torch semantics (weight decay added to the gradient; SGD ``buf = m·buf + g``,
    ``w -= lr·buf``; Adam with bias correction, ``w -= lr·m̂/(√v̂ + eps)``). ``lr`` is the base rate of
    *pretrained* parameters; ``lr_new`` of new ones (equal when training from scratch)."""

    kind: str  # "sgd" | "adam"
    lr: float
    lr_new: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass(frozen=True)
class MethodSpec:
    """A fully resolved method: name, hyperparameters, number of sources and classes, pretrained or not.

    Its structure (networks, stages, steps, schedules, prediction) comes from the method's row of
    :mod:`harness.method_table`. Build with :meth:`create` (defaults + overrides, validated) or
    :meth:`from_job`.
    """

    name: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    num_sources: int = 1
    num_classes: int = 10
    pretrained: bool = False

    def __post_init__(self) -> None:
        row = method_table.get(self.name)
        full = (
            hp.resolve(self.name, "digits", {})
            | hp.implicit_defaults(self.name)
            | hp.validate(self.name, dict(self.hparams))
        )
        object.__setattr__(self, "hparams", full)
        if (
            isinstance(self.num_sources, bool)
            or not isinstance(self.num_sources, int)
            or self.num_sources < 1
        ):
            raise SpecError("MethodSpec", "num_sources", self.num_sources, "an integer >= 1")
        if self.num_sources < row.min_sources:
            need = f"an integer >= {row.min_sources} for {self.name}"
            raise SpecError("MethodSpec", "num_sources", self.num_sources, need)
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 2
        ):
            raise SpecError("MethodSpec", "num_classes", self.num_classes, "an integer >= 2")

    # ---- construction ---------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        suite: str = "digits",
        overrides: Mapping[str, Any] | None = None,
        *,
        num_sources: int = 1,
        num_classes: int = 10,
        pretrained: bool = False,
        sample_seed: int = 0,
    ) -> MethodSpec:
        """Defaults of ``suite`` (or a seeded sample), updated by ``overrides`` (validated)."""
        method_table.get(name)
        h = hp.resolve(name, suite, overrides, sample_seed=sample_seed)
        return cls(name, h, num_sources, num_classes, pretrained)

    @classmethod
    def from_job(cls, job: Mapping[str, Any], *, num_sources: int, num_classes: int) -> MethodSpec:
        """From a resolved job spec (keys ``method``, ``suite``, ``hparams``, optional ``pretrained``)."""
        return cls.create(
            job["method"],
            job.get("suite", "digits"),
            job.get("hparams") or {},
            num_sources=num_sources,
            num_classes=num_classes,
            pretrained=bool(job.get("pretrained")),
        )

    def __getitem__(self, key: str) -> Any:
        return self.hparams[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hparams": dict(self.hparams),
            "num_sources": self.num_sources,
            "num_classes": self.num_classes,
            "pretrained": self.pretrained,
        }

    # ---- structure (all from the method table) -------------------------------------------------------
    @property
    def row(self) -> method_table.MethodDef:
        """The method's row of :mod:`harness.method_table`."""
        return method_table.TABLE[self.name]

    def classifier_names(self) -> list[str]:
        """Keys of the classifier heads, in order (the first is the model's own ``head``)."""
        return method_table.classifier_names(self.row, self.num_sources)

    def networks(self) -> list[NetRole]:
        """The networks of this method (keys shared by both frameworks and by the neutral weight names)."""
        nets = [NetRole("features", "features", "feature extractor G (the backbone's `features`)")]
        nets += [NetRole(n, "classifier", "classifier head") for n in self.classifier_names()]
        nets += [NetRole(n.name, n.kind, n.doc, n.frozen) for n in self.row.nets]
        return nets

    def critic_in(self, feature_dim: int) -> int:
        """Input width of the domain critic."""
        f = self.row.critic_in
        return feature_dim if f is None else int(f(feature_dim, self.num_classes, self.hparams))

    def stages(self) -> list[Stage]:
        out = []
        for st in self.row.stages:
            end = st.end if isinstance(st.end, float | int) else self.hparams[st.end]
            out.append(Stage(st.name, float(end), st.doc))
        return out

    def stage_def(self, index: int) -> method_table.StageDef:
        return self.row.stages[index]

    def steps(self, stage: int) -> list[tuple[method_table.StepDef, list[str], int]]:
        """``(step, trained networks, repeat count)`` of every step of ``stage``, in order."""
        out = []
        for step in self.row.stages[stage].steps:
            trains: list[str] = []
            for n in step.trains:
                trains += self.classifier_names() if n == "heads" else [n]
            repeat = step.repeat if isinstance(step.repeat, int) else int(self.hparams[step.repeat])
            out.append((step, trains, repeat))
        return out

    def stage_start(self, index: int, total_steps: int) -> int:
        """First global step (0-based) of stage ``index`` when training for ``total_steps``."""
        if index == 0:
            return 0
        return min(total_steps, max(1, int(round(self.stages()[index - 1].end * total_steps))))

    def stage_at(self, step: int, total_steps: int) -> int:
        """Index of the stage that global step ``step`` (0-based) belongs to."""
        idx = 0
        for i in range(1, len(self.row.stages)):
            if step >= self.stage_start(i, total_steps):
                idx = i
        return idx

    def sampler(self) -> str:
        """The source sampler: ``pooled`` or ``balanced`` (B/N images of each source per batch)."""
        return self.row.sampler

    # ---- schedules ---------------------------------------------------------------------------------------
    def progress(self, step: int, total_steps: int) -> float:
        """``p = step / total_steps`` in [0, 1]."""
        return min(1.0, max(0.0, step / max(1, total_steps)))

    def grl_lambda(self, step: int, total_steps: int) -> float:
        """The GRL coefficient at ``step``: DANN's ``λ_p`` schedule (``grl = "dann"``), the constant
        ``grl_lambda`` (``grl = "constant"``), else 0."""
        if self.row.grl == "dann":
            return dann_lambda(self.progress(step, total_steps), float(self.hparams["dann_gamma"]))
        if self.row.grl == "constant":
            return float(self.hparams["grl_lambda"])
        return 0.0

    def scalars(self, step: int, total_steps: int) -> dict[str, float]:
        """The per-update scalars every step's loss receives: ``lam`` (the GRL coefficient) and, for the
        methods that read ``eta``, ``eta`` (its schedule's value at ``step``)."""
        out = {"lam": self.grl_lambda(step, total_steps)}
        if "eta" in self.hparams:
            eta = float(self.hparams["eta"])
            if self.hparams.get("eta_schedule") == "ramp":
                eta *= dann_lambda(self.progress(step, total_steps))
            out["eta"] = eta
        return out

    def lr_factor(self, epoch: int, step: int = 0, total_steps: int = 1) -> float:
        """Step schedule ``lr_decay ** (number of milestones <= epoch)`` (epochs 0-based, as the release),
        times DANN's annealing ``1 / (1 + 10 p)^0.75`` (``p = step / total_steps``) when ``lr_anneal`` is
        ``dann``."""
        n = sum(1 for m in self.hparams["lr_milestones"] if m <= epoch)
        factor = float(self.hparams["lr_decay"]) ** n
        if self.hparams["lr_anneal"] == "dann":
            factor /= (1.0 + 10.0 * self.progress(step, total_steps)) ** 0.75
        return factor

    def optimizer(self, net: str, stage: int = 0) -> OptimSpec:
        """The optimiser of network ``net`` in stage ``stage`` (base learning rates, before the schedule)."""
        h = self.hparams
        prefix = self.row.stages[stage].optimizer
        if prefix is not None:
            lr = float(h[f"{prefix}_lr"])
            betas = (float(h[f"{prefix}_beta1"]), float(h[f"{prefix}_beta2"]))
            return OptimSpec("adam", lr, lr, 0.0, 0.0, betas, float(h["adam_eps"]))
        lr = float(h["lr"])
        lr_new = lr * float(h["lr_new_mult"]) if self.pretrained else lr
        if h["optimizer"] == "adam":
            return OptimSpec(
                "adam",
                lr,
                lr_new,
                0.0,
                float(h["weight_decay"]),
                (float(h["adam_beta1"]), float(h["adam_beta2"])),
                float(h["adam_eps"]),
            )
        return OptimSpec("sgd", lr, lr_new, float(h["momentum"]), float(h["weight_decay"]))

    def trained_nets(self, stage: int = 0) -> list[str]:
        """Networks that receive optimiser steps in ``stage`` (the union of its steps' ``trains``)."""
        out: list[str] = []
        for _, trains, _ in self.steps(stage):
            out += [n for n in trains if n not in out]
        return out

    def predict_features(self, stage: int) -> str:
        """The features network the model predicts with in ``stage``."""
        return self.row.stages[stage].predict_features


# ----------------------------------------------------------------------------------------------------------
# Job helpers of the training loop (harness/loop.py)
# ----------------------------------------------------------------------------------------------------------
ARCH_ALIASES: dict[str, str] = {"digit_cnn": "digits_cnn"}


def job_specs(job: Mapping[str, Any], num_sources: int, num_classes: int) -> tuple[Any, MethodSpec]:
    """``(ModelSpec, MethodSpec)`` of a resolved job spec.

    Model: ``arch`` (alias ``digit_cnn``), ``variant``, ``formulation`` (when set), the MCD head of the
    release for ResNets with the methods whose table row says ``mcd_head``, then any ``job["model"]`` fields
    (e.g. ``{"dropout": 0}``).
    """
    from harness.spec.model import ModelSpec

    arch = job.get("arch") or "digits_cnn"
    arch = ARCH_ALIASES.get(arch, arch)
    mkw: dict[str, Any] = {"arch": arch, "num_classes": num_classes, "variant": job.get("variant", "static")}
    if job.get("formulation"):
        mkw["formulation"] = job["formulation"]
    if arch != "digits_cnn" and method_table.get(job.get("method", "")).mcd_head:
        mkw["head"] = "mcd"
    mkw.update(job.get("model") or {})
    return ModelSpec(**mkw), MethodSpec.from_job(job, num_sources=num_sources, num_classes=num_classes)


def job_suite_options(job: Mapping[str, Any]) -> dict[str, Any]:
    """``get_suite`` options from ``job["data"]``: ``train_per_domain`` → ``n_train``,
    ``test_per_domain`` → ``n_test``."""
    data = job.get("data") or {}
    opts: dict[str, Any] = {}
    if data.get("train_per_domain"):
        opts["n_train"] = int(data["train_per_domain"])
    if data.get("test_per_domain"):
        opts["n_test"] = int(data["test_per_domain"])
    return opts
