r"""The method table: one frozen :class:`MethodDef` per adaptation method, read by every consumer.

A method's *shape* lives here and nowhere else: its networks (features, classifier heads, critic, copies),
its stages (when each starts, which networks are copied at its start, which features network predicts), the
optimisation steps of every stage (which networks each step trains and how often it repeats), its
gradient-reversal schedule, its source sampler, its prediction rule, the hyperparameters it reads beyond the
common ones (all declared in :mod:`harness.hparams`) and its own defaults for them, its display name and the
paper-table rows it is compared with.

Consumers: :class:`harness.spec.method.MethodSpec` (structure, schedules, optimisers), the neutral training
loop (:mod:`harness.loop`: sampler, stages), both framework backends (``impl_*/methods/base.py``: they build
the networks, run the steps of the current stage and predict by the rule), :mod:`harness.hparams` (which
method reads which hyperparameter), :mod:`harness.run` (method choices and defaults), :mod:`harness.report`
(names and order), :mod:`harness.coefficients` (which features network a trained model uses). No other
module branches on a method's name.

Each framework keeps only the per-step loss code of each method: ``impl_torch/methods/<module>.py`` and
``impl_keras/methods/<module>.py`` define a class named :attr:`MethodDef.cls` whose method ``<step.loss>``
returns ``(loss, metrics)`` for every :class:`StepDef` of the table row. Adding a method is one row here plus
those two files (``docs/adding-a-method.md``).

Step semantics (both frameworks): a step computes its loss on the batch, back-propagates it, and applies the
optimisers of :attr:`StepDef.trains` only (gradients reaching other networks are discarded); a network that
is not trained by a step still runs in training mode (BatchNorm statistics update) unless the step's loss
code says otherwise. A step with ``repeat = "num_k"`` runs ``hparams["num_k"]`` times; the metrics of the
steps are merged (a later step's key wins).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

HeadRule = Literal["one", "pair", "pair_per_source"]
PredictRule = Literal["head", "pair", "all_heads"]
GrlRule = Literal["none", "dann", "constant"]
Sampler = Literal["pooled", "balanced"]


@dataclass(frozen=True)
class NetDef:
    """An extra network of a method (besides ``features`` and the heads): its key, kind and role.

    ``kind``: ``features`` (a copy of the backbone's feature extractor), ``classifier`` (a copy of the head),
    ``critic`` (the domain critic MLP → 1 logit), ``fixed`` (non-trainable tensors built by the framework
    class's ``build_fixed(name)``, e.g. CDAN's random matrices). ``frozen``: never trained (teachers).
    """

    name: str
    kind: Literal["features", "classifier", "critic", "fixed"]
    doc: str
    frozen: bool = False


@dataclass(frozen=True)
class StepDef:
    """One optimisation step: the loss method ``loss`` of the framework class, the networks it trains
    (``"heads"`` stands for every classifier head), and its repeat count (an int or an int hyperparameter's
    name)."""

    loss: str
    trains: tuple[str, ...]
    repeat: int | str = 1
    doc: str = ""


@dataclass(frozen=True)
class StageDef:
    """A training stage.

    ``end``: the fraction of all steps at which it ends (``1.0``) or the name of a fraction hyperparameter.
    ``copies``: ``(destination, source)`` networks copied when the stage starts. ``predict_features``: the
    features network the model predicts with during the stage. ``optimizer``: ``None`` = the main optimiser
    (``optimizer``, ``lr``, ...); a prefix ``p`` = Adam with ``p_lr``, ``(p_beta1, p_beta2)``, ``adam_eps``
    and no weight decay for the networks this stage trains.
    """

    name: str
    steps: tuple[StepDef, ...]
    doc: str
    end: float | str = 1.0
    copies: tuple[tuple[str, str], ...] = ()
    predict_features: str = "features"
    optimizer: str | None = None


@dataclass(frozen=True)
class MethodDef:
    """A method's row of the table (see the module docstring)."""

    name: str
    display: str
    doc: str
    module: str  # impl_torch/methods/<module>.py and impl_keras/methods/<module>.py
    cls: str  # the class name in both modules
    stages: tuple[StageDef, ...]
    heads: HeadRule = "one"
    nets: tuple[NetDef, ...] = ()
    predict: PredictRule = "head"
    grl: GrlRule = "none"
    sampler: Sampler = "pooled"
    min_sources: int = 1
    #: input width of the critic from (feature_dim, num_classes, hparams); None: feature_dim
    critic_in: Callable[[int, int, Mapping[str, Any]], int] | None = None
    #: shared hyperparameters this method reads (besides the common ones of every method)
    uses: tuple[str, ...] = ()
    #: this method's defaults for shared/common hyperparameters: a value, or a per-suite mapping
    #: ``{"domainnet": v1, "other": v2}`` (suite names with ``-`` written ``_``)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper_rows: tuple[str, ...] = ()  # method keys of harness.paper_numbers it is compared with
    default_run: bool = False  # in the default matrix of ``harness.run``
    mcd_head: bool = False  # ResNets use the release's MCD classifier head (ModelSpec head="mcd")
    plot_rank: int = 2  # the report's coefficient plot shows a DRT model of the lowest rank that ran


# ------------------------------------------------------------------------------------------------ the rows
_SOURCE_CE = StepDef("source_step", ("features", "head"), doc="CE_ε(F(G x_s), y_s)")
#: Saito's steps A (CE on G and the heads), B (CE − d on the heads, G fixed), C (d on G, num_k times)
_THREE_STEP_MCD = (
    StepDef("step_a", ("features", "heads"), doc="source CE of every head"),
    StepDef("step_b", ("heads",), doc="source CE − target discrepancy, G fixed"),
    StepDef("step_c", ("features",), repeat="num_k", doc="target discrepancy, heads fixed"),
)
_ONE_STEP_MCD = StepDef("mcd_grl_step", ("features", "head", "head2"), doc="one-step MCD objective")
_MCD_HPARAMS = ("eta", "eta_schedule", "gamma", "grl_lambda", "mcd_predict")
_MCD_DEFAULTS = {
    "lr": {"domainnet": 1e-3, "other": 2e-3},
    "label_smoothing": 0.01,
    "mcd_predict": "max_logit",
}

#: CDAN conditions its critic on the multilinear map ``g ⊗ f`` (width ``d·C``) up to this width, and on the
#: randomized map (width ``cdan_random_dim``) above it (Long et al. 2018, §3.2; read by both frameworks).
CDAN_MULTILINEAR_MAX = 4096

ROWS: tuple[MethodDef, ...] = (
    MethodDef(
        name="source_only",
        display="Source only",
        doc="L = CE_ε(F(G(x_s)), y_s); prediction σ(F(G(x)))",
        module="source_only",
        cls="SourceOnly",
        stages=(StageDef("train", (_SOURCE_CE,), "source CE"),),
        paper_rows=("source_only",),
        default_run=True,
    ),
    MethodDef(
        name="dann",
        display="DANN",
        doc="CE + w·½[BCE(D(R G x_s), 1) + BCE(D(R G x_t), 0)], R = GRL_{λ_p}; one step on G, F, D",
        module="dann",
        cls="DANN",
        stages=(StageDef("train", (StepDef("step", ("features", "head", "critic")),), "dann"),),
        nets=(NetDef("critic", "critic", "domain critic MLP -> 1 logit (source = 1, target = 0)"),),
        grl="dann",
        uses=("dann_weight", "dann_gamma", "critic_hidden", "critic_depth"),
        defaults={"critic_hidden": 1024},
        paper_rows=("dann",),
        default_run=True,
    ),
    MethodDef(
        name="adda",
        display="ADDA",
        doc="stage 1 source CE on G_s, F; stage 2 G_t ← G_s, critic step then inverted-label encoder step",
        module="adda",
        cls="ADDA",
        stages=(
            StageDef("source", (_SOURCE_CE,), "source CE on G_s, F", end="adda_stage1_frac"),
            StageDef(
                "adapt",
                (
                    StepDef("critic_step", ("critic",), doc="½[BCE(D(G_s x_s), 1) + BCE(D(G_t x_t), 0)]"),
                    StepDef("encoder_step", ("target_features",), doc="BCE(D(G_t x_t), 1)"),
                ),
                "critic / inverted labels",
                copies=(("target_features", "features"),),
                predict_features="target_features",
                optimizer="adda",
            ),
        ),
        nets=(
            NetDef("critic", "critic", "domain critic MLP -> 1 logit (source = 1, target = 0)"),
            NetDef("target_features", "features", "ADDA target encoder G_t (init from G_s)"),
        ),
        uses=("critic_hidden", "critic_depth", "adda_stage1_frac", "adda_lr", "adda_beta1", "adda_beta2"),
        defaults={"critic_hidden": 500},
        paper_rows=("adda",),
        default_run=True,
    ),
    MethodDef(
        name="mcd",
        display="MCD (3-step)",
        doc="steps A (CE on G, F1, F2), B (CE − d on F1, F2), C (d on G, num_k times)",
        module="mcd",
        cls="MCD",
        stages=(
            StageDef("train", _THREE_STEP_MCD, "mcd"),
        ),
        heads="pair",
        predict="pair",
        uses=("num_k", "mcd_predict"),
        paper_rows=("mcd",),
        mcd_head=True,
        plot_rank=1,
    ),
    MethodDef(
        name="mcd_grl",
        display="MCD (1-step, paper's)",
        doc="one forward of [x_s; x_t]; CE_ε(F1) + CE_ε(F2) + γ·ent − η·d(GRL_λ), one step on all",
        module="mcd_grl",
        cls="MCDGRL",
        stages=(StageDef("train", (_ONE_STEP_MCD,), "mcd_grl"),),
        heads="pair",
        predict="pair",
        grl="constant",
        uses=_MCD_HPARAMS,
        defaults=_MCD_DEFAULTS,
        paper_rows=("mcd",),
        default_run=True,
        mcd_head=True,
        plot_rank=0,
    ),
    MethodDef(
        name="m3sda",
        display="M3SDA-β",
        doc="a classifier pair per source, moment distance, MCD steps B/C",
        module="m3sda",
        cls="M3SDA",
        stages=(
            StageDef("train", _THREE_STEP_MCD, "m3sda"),
        ),
        heads="pair_per_source",
        predict="all_heads",
        sampler="balanced",
        min_sources=2,
        uses=("num_k", "md_weight"),
        paper_rows=("m3sda",),
        default_run=True,
        mcd_head=True,
    ),
    MethodDef(
        name="drt_st",
        display="DRT+ST",
        doc="stage 1 = mcd_grl; stage 2 source CE + pseudo-labelled target CE from a frozen teacher",
        module="drt_st",
        cls="DRTST",
        stages=(
            StageDef("drt", (_ONE_STEP_MCD,), "mcd_grl", end="st_stage1_frac"),
            StageDef(
                "self_train",
                (StepDef("self_train_step", ("features", "head", "head2")),),
                "source + pseudo-labelled target CE",
                copies=(
                    ("teacher_features", "features"),
                    ("teacher_head", "head"),
                    ("teacher_head2", "head2"),
                ),
            ),
        ),
        heads="pair",
        nets=(
            NetDef("teacher_features", "features", "frozen copy of G at the stage switch", frozen=True),
            NetDef("teacher_head", "classifier", "frozen copy of head", frozen=True),
            NetDef("teacher_head2", "classifier", "frozen copy of head2", frozen=True),
        ),
        predict="pair",
        grl="constant",
        uses=(*_MCD_HPARAMS, "st_stage1_frac", "st_confidence", "st_weight"),
        defaults=_MCD_DEFAULTS,
        paper_rows=("drt_st",),
        mcd_head=True,
    ),
    MethodDef(
        name="cdan",
        display="CDAN",
        doc="CE + w·½[BCE(D(R T(f_s, g_s)), 1) + BCE(D(R T(f_t, g_t)), 0)], T(f, g) = g ⊗ f (randomized "
        "(f R_f) ⊙ (g R_g)/√r when d·C > 4096), g = σ(F f) detached, R = GRL_{λ_p}; one step on G, F, D",
        module="cdan",
        cls="CDAN",
        stages=(StageDef("train", (StepDef("step", ("features", "head", "critic")),), "cdan"),),
        nets=(
            NetDef("critic", "critic", "conditional domain critic MLP on T(f, σ) -> 1 logit (source = 1)"),
            NetDef("cdan_map", "fixed", "the randomized multilinear map's fixed Gaussian matrices R_f, R_g"),
        ),
        grl="dann",  # λ_p = 2/(1+exp(-γp)) - 1: the CDAN release's calc_coeff (γ = 10)
        # critic input: d·C (multilinear map) when d·C <= CDAN_MULTILINEAR_MAX, else cdan_random_dim
        critic_in=lambda d, c, h: d * c if d * c <= CDAN_MULTILINEAR_MAX else int(h["cdan_random_dim"]),
        # the trade-off weight and the GRL γ are DANN's hyperparameters (release: trade_off 1, alpha 10)
        uses=(
            "dann_weight",
            "dann_gamma",
            "critic_hidden",
            "critic_depth",
            "cdan_entropy",
            "cdan_random_dim",
        ),
        defaults={"critic_hidden": 1024},
        paper_rows=(),
    ),
)

TABLE: dict[str, MethodDef] = {row.name: row for row in ROWS}
METHODS: tuple[str, ...] = tuple(TABLE)
DEFAULT_METHODS: tuple[str, ...] = tuple(r.name for r in ROWS if r.default_run)


def get(name: str) -> MethodDef:
    """The row of ``name``; a :class:`~harness.errors.SpecError` listing the methods otherwise."""
    from harness.errors import SpecError

    try:
        return TABLE[name]
    except (KeyError, TypeError):
        raise SpecError("MethodSpec", "method", name, f"one of {', '.join(METHODS)}") from None


def classifier_names(row: MethodDef, num_sources: int) -> list[str]:
    """Keys of the classifier heads, in order (the first is the model's own ``head``)."""
    if row.heads == "pair":
        return ["head", "head2"]
    if row.heads == "pair_per_source":
        return [f"head_s{i}_{j}" for i in range(num_sources) for j in (1, 2)]
    return ["head"]
