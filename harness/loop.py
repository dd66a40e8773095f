r"""The training loop, once for both frameworks: ``run_job(job, job_dir, backend, ...) -> FinalRecord``.

The loop is framework-neutral; a small per-framework :class:`Backend` (``impl_torch/train.py``,
``impl_keras/train.py``) seeds, builds the method's algorithm, makes loaders, converts batches, predicts to
NumPy and turns the algorithm's state into arrays. Every method runs through the same loop; what differs
between methods (stages, steps, sampler) is read from :mod:`harness.method_table` by
:class:`~harness.spec.method.MethodSpec` and the framework's ``Algorithm``.

Per job: build the data protocol, the model spec and the method spec from the job; resume from
``job_dir/checkpoint/state.safetensors`` when it is there and readable (:mod:`harness.checkpoint`: arrays and
JSON only, never a pickle); then per epoch: set the learning-rate factor of the schedule, run
``steps_per_epoch`` updates (each on one source batch — by the method's sampler — and one target batch),
evaluate, hand the epoch record to ``on_epoch`` (the job store makes it durable), *then* write the
checkpoint, so a record is never lost behind an advanced checkpoint. ``on_start(start_epoch)`` is called
once before training with the epoch the job resumes after (0 = from scratch), so the store can drop epoch
records the checkpoint does not cover and say truthfully where the job resumed. A job that starts from
scratch removes stale artifacts (``coefficients.npz``, ``model.safetensors``) of an earlier attempt.

Job keys read: ``suite``, ``root``, ``target``, ``method``, ``variant``, ``arch``, ``formulation``, ``seed``,
``epochs``, ``steps_per_epoch`` (None: one pass over the pooled sources), ``batch_size`` (per side:
``batch_size`` source + ``batch_size`` target images), ``hparams``, ``device``, optional ``data``
(``train_per_domain``, ``test_per_domain``), ``model`` (extra ModelSpec fields), ``eval_batch_size``,
``source_eval_max`` (source images scored per epoch, default 500: a fixed random subset of all sources),
``pretrained`` (a weights file for every ``*features`` network; DRT tensors and heads stay new), ``init``
(``paired``: every variant of a seed starts from its static model's tensors, :func:`pair_init`; absent in
jobs made before pairing existed: each variant initialised on its own),
``on_bad_checkpoint`` (``restart``, default, or ``fail``), ``source_val`` (a held-out slice of every source:
:func:`split_source_val`), ``eval_every`` (evaluate every N steps besides each epoch's end; 0/None: epoch
ends only), ``precision`` (``fp32`` when absent, ``bf16``, ``fp16``: :func:`job_precision`; the backend's
``build`` applies it to the training steps only — evaluation, coefficients and weights stay in the model
dtype), ``loader_workers`` (data-loading workers per loader: :func:`loader_workers`; execution-only, the batch
stream is the same for every count), and for Keras ``dtype``.

Epoch record (:class:`EpochRecord`): ``epoch`` (1-based, epochs finished), ``stage``, ``losses`` (means of
the metrics of the method's steps), ``source_acc``, ``target_acc`` (fractions in [0, 1]), ``lr`` (per
optimiser group), ``steps``, ``seconds``, ``skipped_train`` / ``skipped_eval`` (images skipped as unreadable
so far by the training loaders / the evaluation loaders, cumulative over the job, resumes included),
``source_val_acc`` (the held-out source slice, None without one) and ``curve`` (every evaluation of the
epoch, :class:`EvalPoint`, the epoch's end last: the learning curves).

The final record (:class:`FinalRecord`) is the last epoch (the reported model) plus ``best_epoch`` /
``best_target_acc`` — an oracle picked on target *test* accuracy, labelled ``best_is_oracle`` — and
``selection`` (the evaluation point each rule picks: ``last``, ``source-val``, ``oracle``; :func:`select`),
``resumed_from_epoch``, ``init_fingerprint`` (:func:`pair_init`), ``framework``, ``device``, ``versions``,
``num_parameters``, ``skipped_files`` (the first 20 skipped images with the reason and the split file's
line), ``precision`` and ``loader_workers`` (as resolved for this run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict

import numpy as np

from harness import checkpoint, coefficients
from harness.data import get_suite
from harness.data.iterate import Cursor, rewind
from harness.jobs import PRECISIONS, save_final_weights
from harness.spec.method import MethodSpec, job_specs, job_suite_options
from harness.spec.model import ModelSpec


class EvalPoint(TypedDict, total=False):
    """One evaluation: after ``step`` training steps (global, 1-based count), in ``epoch``, during training
    stage ``stage`` (absent in records made before stages were recorded per point)."""

    step: int
    epoch: int
    stage: str
    source_acc: float
    source_val_acc: float | None
    target_acc: float


class EpochRecord(TypedDict):
    epoch: int
    stage: str
    losses: dict[str, float]
    source_acc: float
    target_acc: float
    lr: dict[str, float]
    steps: int
    seconds: float
    skipped_train: int
    skipped_eval: int
    source_val_acc: float | None
    curve: list[EvalPoint]


class FinalRecord(TypedDict):
    target_acc: float | None
    source_acc: float | None
    epoch: int
    last_epoch: int
    epochs: int
    stage: str | None
    losses: dict[str, float]
    best_epoch: int | None
    best_target_acc: float | None
    best_is_oracle: bool
    resumed_from_epoch: int
    skipped_train: int
    skipped_eval: int
    skipped_files: list[str]
    init_fingerprint: str | None
    selection: dict[str, EvalPoint | None]
    seconds: float
    framework: str
    device: str
    versions: dict[str, str]
    num_parameters: int
    precision: str
    loader_workers: int


class Algorithm(Protocol):
    """What the loop needs of a framework's algorithm object (``impl_*/methods/base.py``)."""

    stage: int

    def set_progress(self, step: int, total_steps: int) -> None: ...
    def set_lr_factor(self, factor: float) -> None: ...
    def update(self, batch: dict[str, Any]) -> dict[str, float]: ...
    def current_lrs(self) -> dict[str, float]: ...


class Backend(Protocol):
    """The per-framework half of the loop."""

    framework: str

    def scope(self, job: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
        """Context the whole job runs in (device placement); reads the job's ``device`` and
        ``precision`` (:func:`job_precision`)."""

    def seed(self, seed: int) -> None: ...
    def build(self, spec: MethodSpec, model_spec: ModelSpec, job: dict[str, Any]) -> Algorithm:
        """The method's algorithm; its training steps run in the job's precision (mixed precision for
        ``bf16``/``fp16``: float32 weights, optimiser and loss), its predictions in the model dtype."""

    def net_shapes(self, algo: Algorithm, net: str) -> dict[str, tuple[int, ...]]:
        """The neutral tensor names of network ``net`` and their shapes."""

    def load_net(self, algo: Algorithm, net: str, arrays: dict[str, np.ndarray]) -> None:
        """Load neutral ``arrays`` (a subset of the network's names) into network ``net``."""

    def make_loader(self, split: Any, transform: Any, batch_size: int, **kw: Any) -> Any:
        """The framework's loader (``impl_*.data.make_loader``); ``kw`` holds ``train``, ``seed``,
        ``sampler`` and ``num_workers`` (:func:`loader_workers`: 0 loads in this process). Whatever the worker
        count, the loader yields the same batches in the same order (augmentation draws are keyed by
        ``(seed, epoch, sample)``), resumes with ``set_epoch(e, start=i)`` and counts skipped images in
        ``loader.skipped`` / ``loader.skipped_files()``. A loader with a ``close()`` is closed when the job
        ends (its workers stop)."""

    def batch(self, algo: Algorithm, xs: Any, ys: Any, ds: Any, xt: Any) -> dict[str, Any]: ...
    def train_mode(self, algo: Algorithm) -> None: ...
    def predict(self, algo: Algorithm, x: Any) -> np.ndarray:
        """Class probabilities as NumPy (B, C)."""

    def state(self, algo: Algorithm) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The algorithm's full state (networks, optimisers, progress, framework RNG) as arrays + JSON."""

    def load_state(self, algo: Algorithm, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...
    def neutral_weights(self, algo: Algorithm) -> dict[str, np.ndarray]: ...
    def copy_shared(self, algo: Algorithm, twin: Algorithm) -> None:
        """Copy every tensor of ``twin`` (neutral names, every network) into ``algo``, plus the random
        generator states its layers hold (Keras dropout seed states), so both start alike."""

    def write_coefficients(self, algo: Algorithm, suite: Any, target: str, path: Path, seed: int) -> Any: ...
    def num_parameters(self, algo: Algorithm) -> int: ...
    def device_name(self, job: dict[str, Any]) -> str: ...
    def versions(self) -> dict[str, str]: ...


#: upper bound of the default :func:`loader_workers`
MAX_DEFAULT_LOADER_WORKERS = 4


def available_cpus() -> int:
    """CPUs this job may use: the CPUs this process may run on (``os.sched_getaffinity``: a SLURM or taskset
    allocation, not the machine's count; ``os.cpu_count()`` where affinity is not available), capped by
    ``OMP_NUM_THREADS`` when that is a positive integer — the per-job share :mod:`harness.launchers` gives
    each job of a parallel run (which sets no affinity)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    share = os.environ.get("OMP_NUM_THREADS", "").strip()
    if share.isdigit() and int(share) > 0:
        cpus = min(cpus, int(share))
    return max(1, cpus)


def loader_workers(job: dict[str, Any]) -> int:
    """Data-loading workers per loader: ``job["loader_workers"]`` (an int >= 0) when given, else
    ``min(4, available_cpus() - 1)``, at least 0: one CPU is left to the training process, and the cap of 4
    bounds the total (a job has up to 5 loaders, each with its own workers; the evaluation ones work only
    between epochs). Execution-only: never part of the job id."""
    value = job.get("loader_workers")
    if value is None:
        return max(0, min(MAX_DEFAULT_LOADER_WORKERS, available_cpus() - 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"job field 'loader_workers' = {value!r}: expected an integer >= 0")
    return value


def job_precision(job: dict[str, Any]) -> str:
    """``job["precision"]``: one of :data:`harness.jobs.PRECISIONS`; absent (jobs made before it existed,
    and every fp32 job: fp32 is written as absent so their ids do not change) means ``fp32``."""
    value = job.get("precision") or "fp32"
    if value not in PRECISIONS:
        raise ValueError(f"job field 'precision' = {value!r}: expected one of {', '.join(PRECISIONS)}")
    return str(value)


def split_source_val(split: Any, seed: int, rule: dict[str, Any] | None) -> tuple[Any, Any | None]:
    """``(train part, held-out part)`` of the pooled source training split (``job["source_val"]``).

    Rule ``{"fraction": f, "max_per_source": m}``: from every source domain, ``min(m, round(f · n_d))``
    images (at least one) drawn without replacement by a generator keyed by ``(seed, 0x5EED, domain id)`` —
    independent of method and variant — are held out: never trained on, scored at every evaluation
    (``source_val_acc``), the basis of the label-free ``source-val`` model selection. ``rule`` None: nothing
    is held out (jobs made before this existed).
    """
    if not rule:
        return split, None
    frac, cap = float(rule["fraction"]), int(rule["max_per_source"])
    held: list[np.ndarray] = []
    for d in np.unique(split.domains):
        idx = np.flatnonzero(split.domains == d)
        k = max(1, min(cap, int(round(frac * len(idx)))))
        held.append(np.sort(np.random.default_rng([seed, 0x5EED, int(d)]).choice(idx, k, replace=False)))
    val = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(split)), val)
    name = getattr(split, "name", "source")
    return split.subset(keep, f"{name}-train"), split.subset(val, f"{name}-val")


def select(points: Sequence[EvalPoint]) -> dict[str, EvalPoint | None]:
    """The evaluation point each model-selection rule picks.

    ``last``: the last evaluation. ``source-val``: the highest ``source_val_acc`` (the earliest on ties; None
    when nothing is held out) among the points of the *final* training stage — no target label is used. The
    final stage is the model the method delivers: ADDA's target encoder, trained in its second stage, scores
    lower on the sources than the source encoder of stage 1 (measured in ``results/study/curves``), so an
    unrestricted pick would return the unadapted stage-1 model. ``oracle``: the highest target *test* accuracy
    over all points (the authors' release keeps that epoch) — it uses test labels and is reported only as
    an oracle.
    """
    if not points:
        return {"last": None, "source-val": None, "oracle": None}
    final_stage = points[-1].get("stage")
    val = [p for p in points if p.get("source_val_acc") is not None and p.get("stage") == final_stage]
    return {
        "last": points[-1],
        "source-val": max(val, key=lambda p: p["source_val_acc"]) if val else None,
        "oracle": max(points, key=lambda p: p["target_acc"]),
    }


def evaluate(backend: Backend, algo: Algorithm, loader: Any, limit: int | None = None) -> float:
    """Accuracy (fraction) of the algorithm's prediction over ``loader`` (at most ``limit`` samples)."""
    correct = total = 0
    for x, y, _ in loader:
        p = backend.predict(algo, x)
        correct += int((p.argmax(-1) == np.asarray(y)).sum())
        total += len(y)
        if limit is not None and total >= limit:
            break
    return correct / max(total, 1)


def final_record(
    history: Sequence[EpochRecord],
    epochs: int,
    seconds: float,
    device: str,
    versions: dict[str, str],
    framework: str,
    num_parameters: int,
    resumed_from_epoch: int = 0,
    skipped_files: Sequence[str] = (),
    init_fingerprint: str | None = None,
    precision: str = "fp32",
    num_loader_workers: int = 0,
) -> FinalRecord:
    """The record ``run_job`` returns: the last epoch is the reported model; ``best_*`` is an oracle (picked
    on target *test* accuracy) and labelled ``best_is_oracle``."""
    last: dict[str, Any] = dict(history[-1]) if history else {}
    best: dict[str, Any] = dict(max(history, key=lambda r: r["target_acc"])) if history else {}
    points = [p for r in history for p in (r.get("curve") or [])]
    return {
        "target_acc": last.get("target_acc"),
        "source_acc": last.get("source_acc"),
        "epoch": last.get("epoch", 0),
        "last_epoch": last.get("epoch", 0),
        "epochs": epochs,
        "stage": last.get("stage"),
        "losses": last.get("losses", {}),
        "best_epoch": best.get("epoch"),
        "best_target_acc": best.get("target_acc"),
        "best_is_oracle": True,
        "resumed_from_epoch": resumed_from_epoch,
        "skipped_train": last.get("skipped_train", 0),
        "skipped_eval": last.get("skipped_eval", 0),
        "skipped_files": list(skipped_files),
        "init_fingerprint": init_fingerprint,
        "selection": select(points),
        "seconds": round(seconds, 3),
        "framework": framework,
        "device": device,
        "versions": dict(versions),
        "num_parameters": num_parameters,
        "precision": precision,
        "loader_workers": num_loader_workers,
    }


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """sha256 (first 16 hex digits) over the names, dtypes, shapes and bytes of ``arrays``, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def pair_init(
    backend: Backend, algo: Algorithm, spec: MethodSpec, model_spec: ModelSpec, job: dict[str, Any], seed: int
) -> str:
    """Pair every variant of a seed with its static model (``job["init"] == "paired"``).

    Every tensor a static model has (``W0`` of each conv, BatchNorm, heads, critics, fixed matrices) takes
    the value the *static* model of this seed starts from: a static twin is built after ``backend.seed(seed)``
    — exactly as the static job builds its model — and copied in, with the random generator states its
    layers hold (Keras dropout seeds). The DRT-only tensors (bases, routers) keep the values of this
    variant's own build, itself seeded by ``seed``. The process generators are then reseeded, so dropout
    masks, augmentation draws and data order are the same for every variant of the seed. Returns the
    ``init_fingerprint`` of the shared tensors: equal for static and every DRT variant of a seed (one
    framework; torch and Keras initialise independently — equivalence is shown by porting, not by seeds).
    """
    if model_spec.variant == "static":
        shared = backend.neutral_weights(algo)
    else:
        backend.seed(seed)
        twin = backend.build(spec, dataclasses.replace(model_spec, variant="static"), job)
        backend.copy_shared(algo, twin)
        names = set(backend.neutral_weights(twin))
        shared = {k: v for k, v in backend.neutral_weights(algo).items() if k in names}
    backend.seed(seed)
    return fingerprint(shared)


def pretrained_path(value: str | dict[str, str]) -> str:
    """The file of a job's ``pretrained`` field: a path, or ``{"path", "sha256"}`` (``harness.run
    --pretrained``), whose file must still have that sha256 (a replaced file is an error, not a new start)."""
    if isinstance(value, str):
        return value
    from harness.errors import WeightsError

    path = Path(value["path"])
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file (the job's pretrained file; nothing downloads)")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != value["sha256"]:
        raise WeightsError(
            f"{path}: its sha256 is {h.hexdigest()[:12]}…, the job was created for {value['sha256'][:12]}…: "
            "the file changed since; pass the new file to harness.run (a new job)"
        )
    return str(path)


def load_pretrained(backend: Backend, algo: Any, path: str) -> None:
    """Load a static backbone checkpoint strictly into every ``*features`` network.

    The file (:func:`harness.weights.checkpoints.backbone_arrays`: a torchvision ``.pth``/``.pt`` or a
    neutral ``.safetensors``/``.npz``; ``state_dict``/``model`` wrappers and ``module.``/``features.``/
    ``backbone.`` prefixes removed) must hold every static tensor of the backbone with its exact shape
    (:func:`~harness.weights.checkpoints.match_pretrained`): otherwise the job fails before training with the
    list of missing, mis-shaped and unexpected tensors. DRT tensors (bases, router) and the heads are new by
    design; a torchvision classifier (``fc.*``) is ignored.
    """
    from harness.weights.checkpoints import backbone_arrays, match_pretrained, pretrained_arrays

    arrays = backbone_arrays(path)
    for name in algo.nets:
        if name.endswith("features"):
            expected = backend.net_shapes(algo, name)
            report = match_pretrained(expected, arrays, source=f"pretrained file {path} (network {name})")
            backend.load_net(algo, name, pretrained_arrays(expected, arrays, report))
            print(f"pretrained: {name}: {report.summary()}")


def trainer(backend_type: Callable[[], Backend]) -> Callable[..., FinalRecord]:
    """The ``run_job(job, job_dir, *, on_epoch=None, on_step=None, on_start=None)`` function of a framework:
    :func:`run_job` with a fresh ``backend_type()`` (the entry point ``harness.run`` names per framework)."""

    def run(
        job: dict[str, Any],
        job_dir: Path | str,
        *,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> FinalRecord:
        return run_job(job, job_dir, backend_type(), on_epoch=on_epoch, on_step=on_step, on_start=on_start)

    run.__doc__ = f"Train one job with {getattr(backend_type, '__name__', 'the backend')} (harness.loop)."
    return run


def _read_checkpoint(job_dir: Path, job: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict] | None:
    """The checkpoint, or None (none there, or unreadable and ``on_bad_checkpoint`` is ``restart``)."""
    path = checkpoint.path_in(job_dir)
    for legacy in checkpoint.LEGACY_FILENAMES:
        if (path.parent / legacy).exists() and not path.exists():
            print(
                f"checkpoint: {path.parent / legacy} is an old pickle checkpoint and is never read "
                "(it could run code); the job restarts from scratch"
            )
    if not path.exists():
        return None
    try:
        return checkpoint.load(path)
    except checkpoint.CheckpointError as exc:
        if job.get("on_bad_checkpoint", "restart") == "fail":
            raise checkpoint.CheckpointError(
                f"{exc}. Remedy: delete {path} to restart the job from scratch"
            ) from exc
        print(f"checkpoint: {exc}; the job restarts from scratch")
        return None


def run_job(
    job: dict[str, Any],
    job_dir: Path | str,
    backend: Backend,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FinalRecord:
    """Train one job with ``backend`` (see the module docstring); returns the final record."""
    job_precision(job)  # a bad value fails before anything is built
    loader_workers(job)
    with backend.scope(job), contextlib.ExitStack() as loaders:
        return _run(job, Path(job_dir), backend, on_epoch, on_step, on_start, loaders)


def _closing(stack: contextlib.ExitStack, loader: Any) -> Any:
    """``loader``, closed (its workers stopped) when ``stack`` exits, if it has a ``close()``."""
    close = getattr(loader, "close", None)
    if callable(close):
        stack.callback(close)
    return loader


def _run(
    job: dict[str, Any],
    job_dir: Path,
    backend: Backend,
    on_epoch: Callable[[EpochRecord], None] | None,
    on_step: Callable[[int, int], None] | None,
    on_start: Callable[[int], None] | None,
    stack: contextlib.ExitStack,
) -> FinalRecord:
    t_start = time.time()
    seed = int(job.get("seed", 0))
    backend.seed(seed)
    suite = get_suite(job["suite"], job.get("root"), **job_suite_options(job))
    proto = suite.protocol(job["target"], seed=seed)
    model_spec, spec = job_specs(job, len(proto.sources), proto.num_classes)
    algo = backend.build(spec, model_spec, job)
    paired = job.get("init") == "paired"
    init_print = pair_init(backend, algo, spec, model_spec, job, seed) if paired else None
    if job.get("pretrained"):
        load_pretrained(backend, algo, pretrained_path(job["pretrained"]))
    bs = int(job.get("batch_size", 32))
    source_train, source_val = split_source_val(proto.source_train, seed, job.get("source_val"))
    workers = loader_workers(job)

    def make_loader(split: Any, transform: Any, batch_size: int, **kw: Any) -> Any:
        loader = backend.make_loader(split, transform, batch_size, num_workers=workers, **kw)
        return _closing(stack, loader)

    src = make_loader(source_train, proto.transform_train, bs, train=True, seed=seed, sampler=spec.sampler())
    tgt = make_loader(proto.target_train, proto.transform_train, bs, train=True, seed=seed + 7919)
    ebs = int(job.get("eval_batch_size", 256))
    test = make_loader(proto.target_test, proto.transform_test, ebs, train=False)
    # a fixed random subset of every source (eval transform): shuffled once (epoch 0), never advanced
    src_eval = make_loader(source_train, proto.transform_test, ebs, train=True, seed=seed)
    val = None
    if source_val is not None:
        val = make_loader(source_val, proto.transform_test, ebs, train=False)
    eval_every = int(job.get("eval_every") or 0)  # 0: at the end of each epoch only
    epochs = int(job.get("epochs", 1))
    steps = int(job.get("steps_per_epoch") or len(src))
    total = epochs * steps
    history: list[EpochRecord] = []
    start_epoch = 0
    src_it, tgt_it = Cursor(src), Cursor(tgt)
    state = _read_checkpoint(job_dir, job)
    if state is not None:
        arrays, meta = state
        backend.load_state(algo, checkpoint.split_prefix(arrays, "algo/"), meta["algorithm"])
        checkpoint.set_numpy_rng_state(arrays, meta["numpy_rng"])
        start_epoch, history = int(meta["epoch"]), list(meta["history"])
        src_it.restore(meta["loader_cursors"][0])
        tgt_it.restore(meta["loader_cursors"][1])
        for loader, count in zip((src, tgt, test, src_eval, val), meta.get("skipped", (0, 0, 0, 0, 0))):
            if loader is not None:
                loader.skipped = int(count)
    else:
        for stale in (job_dir / coefficients.FILENAME, job_dir / "model.safetensors"):
            stale.unlink(missing_ok=True)
    if on_start is not None:
        on_start(start_epoch)
    loaders = [x for x in (src, tgt, test, src_eval, val) if x is not None]

    def point(g: int, epoch: int) -> EvalPoint:
        return {
            "step": g,
            "epoch": epoch,
            "stage": spec.stages()[algo.stage].name,
            "source_acc": evaluate(backend, algo, rewind(src_eval), int(job.get("source_eval_max", 500))),
            "source_val_acc": None if val is None else evaluate(backend, algo, val),
            "target_acc": evaluate(backend, algo, test),
        }

    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        sums: dict[str, float] = {}
        curve: list[EvalPoint] = []
        backend.train_mode(algo)
        for i, (xs, ys, ds), (xt, _, _) in zip(range(steps), src_it, tgt_it):
            g = epoch * steps + i
            algo.set_progress(g, total)
            algo.set_lr_factor(spec.lr_factor(epoch, g, total))
            for k, v in algo.update(backend.batch(algo, xs, ys, ds, xt)).items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if on_step is not None:
                on_step(g + 1, total)
            if eval_every and (g + 1) % eval_every == 0 and i + 1 < steps:
                curve.append(point(g + 1, epoch + 1))
                backend.train_mode(algo)
        end = point((epoch + 1) * steps, epoch + 1)
        curve.append(end)
        record: EpochRecord = {
            "epoch": epoch + 1,
            "stage": spec.stages()[algo.stage].name,
            "losses": {k: v / steps for k, v in sums.items()},
            "source_acc": end["source_acc"],
            "target_acc": end["target_acc"],
            "lr": algo.current_lrs(),
            "steps": steps,
            "seconds": round(time.time() - t0, 3),
            "skipped_train": src.skipped + tgt.skipped,
            "skipped_eval": test.skipped + src_eval.skipped + (val.skipped if val is not None else 0),
            "source_val_acc": end["source_val_acc"],
            "curve": curve,
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)  # durable before the checkpoint advances past it
        cursors = [src_it.state(), tgt_it.state()]
        skipped = [x.skipped if x is not None else 0 for x in (src, tgt, test, src_eval, val)]
        _save_checkpoint(job_dir, backend, algo, epoch + 1, history, cursors, skipped)
    if model_spec.variant != "static" and not (job_dir / coefficients.FILENAME).exists():
        backend.write_coefficients(algo, suite, job["target"], job_dir / coefficients.FILENAME, seed)
    save_final_weights(job_dir, backend.neutral_weights(algo), model_spec, spec.name, backend.framework)
    return final_record(
        history,
        epochs,
        time.time() - t_start,
        backend.device_name(job),
        backend.versions(),
        backend.framework,
        backend.num_parameters(algo),
        start_epoch,
        [f for x in loaders for f in x.skipped_files()][:20],
        init_print,
        job_precision(job),
        workers,
    )


def _save_checkpoint(
    job_dir: Path, backend: Backend, algo: Algorithm, epoch: int, history: list, cursors: list, skipped: list
) -> None:
    algo_arrays, algo_meta = backend.state(algo)
    rng_arrays, rng_meta = checkpoint.numpy_rng_state()
    arrays = {f"algo/{k}": v for k, v in algo_arrays.items()} | rng_arrays
    meta = {
        "epoch": epoch,
        "history": history,
        "loader_cursors": cursors,
        "skipped": skipped,
        "algorithm": algo_meta,
        "numpy_rng": rng_meta,
    }
    checkpoint.save(checkpoint.path_in(job_dir), arrays, meta)
