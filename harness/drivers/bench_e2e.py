r"""``python -m harness.bench e2e``: end-to-end training throughput — is a training step bound by the data
loader or by the model?

For every configuration (framework × arch × variant × precision × memory format × loader workers) three
figures, in **images per second** (one training step consumes ``2 × batch`` images: a source batch and a
target batch of ``--batch-size`` each, as :func:`harness.loop.run_job` feeds every method):

* **data-only** — the training loaders alone (JPEG decode + resize/crop/flip + normalise + batch, with
  ``--workers`` loader workers): one source and one target batch per step, nothing else;
* **compute-only** — training steps (``algo.update``, as the loop calls it) on batches already converted
  and on the device (a few cached batches, cycled);
* **e2e** — both, exactly the loop's inner step: next source and target batch, ``backend.batch``,
  ``algo.set_progress`` / ``set_lr_factor``, ``algo.update``, every metric read back as a float.

The smaller of data-only and compute-only **bounds** the step ("bound by" column); e2e / that bound says
how much of it the pipeline reaches (with loader workers data and compute overlap, so e2e ≈ the bound;
in-process loading adds them up).

Everything is built with the project's own pieces: the data tree is DomainNet's published layout
(:mod:`harness.data.jpeg_tree`, generated once and cached under the data root), read by
:class:`~harness.data.domainnet.DomainNetSuite` and its protocol; the loaders are the backend's
``make_loader`` with the suite's DomainNet training transform (``--crop`` other than 224 scales it, for
tiny runs); the model and method come from a job dict through the backend's ``scope`` / ``build``
(``impl_torch.train.TorchBackend``, ``impl_keras.train.KerasBackend``). Precision goes into the job dict
(``job["precision"]``, only when not fp32) and the worker count into ``make_loader`` as the training loop
passes ``job["loader_workers"]`` (``num_workers=``, resolved by :func:`harness.loop.loader_workers`); a build
whose backend does not honour them is detected at run time — the algorithm must train in the requested
precision (``algo.precision``; torch: its step must actually compute in bfloat16/float16), ``make_loader``
must accept the workers argument — and its rows say so ("loader workers not supported by this build",
"precision bf16 not supported by this build") instead of measuring something else. ``channels_last``
(torch only; Keras is NHWC throughout) converts the networks and every batch with ``torch.channels_last``.

Protocol (the repository's benchmark convention, :mod:`harness.drivers.bench`): every candidate (each
data-only, compute-only and e2e configuration of a framework) is built first, warmed up (``--warmup``
calls each: autotune calibration, compilation, loader workers starting), then timed for ``--rounds``
rounds in which all candidates run **interleaved**, one call of ``--steps`` steps each; the figure is the
**median** over rounds, and all figures of one run (one framework, one process) come from the same
rounds (``--render`` merges several runs' JSON into one report: the ``run`` column says which). One call
is one full pass of the loaders (their epoch is cut to exactly ``--steps`` batches), so no prefetched batch
leaks into another candidate's time.

Writes ``<out>/<name>.md`` (default ``results/perf/e2e.md``) and, with ``--json``, ``<out>/<name>.json``
(raw per-round seconds, the plan, the data tree's manifest, hardware and library versions).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from harness import provenance
from harness.data.domains import DOMAINNET, SUITE_NUM_CLASSES
from harness.spec.layer import FORMULATION_CHOICES, VARIANTS
from harness.spec.model import ARCHS

FRAMEWORKS: tuple[str, ...] = ("torch", "keras")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: the floating dtype a mixed-precision step must compute in
_PRECISION_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
MEMORY_FORMATS: tuple[str, ...] = ("default", "channels_last")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
BENCH_ARCHS: tuple[str, ...] = tuple(a for a in ARCHS if a != "digits_cnn")
PATHS: tuple[str, ...] = ("data", "compute", "e2e")
#: the messages of configurations this build cannot run (the rows say so; nothing else is measured instead)
LOADER_WORKERS_UNSUPPORTED = "loader workers not supported by this build"
PRECISION_UNSUPPORTED = "precision {p} not supported by this build"
#: ``set_progress`` total: large, so every benchmark step stays in the method's first stage
TOTAL_STEPS = 10**7
#: distinct cached batches the compute-only path cycles through
CACHED_BATCHES = 4
SCHEMA = 1


class UsageError(Exception):
    """Bad command-line input: printed as one ``error: --flag: ...`` line, exit status 2."""


# --------------------------------------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True)
class ModelCfg:
    """One model configuration of a framework (the compute side of a row)."""

    framework: str
    arch: str
    variant: str
    precision: str
    memory_format: str

    @property
    def key(self) -> str:
        return f"{self.framework}|{self.arch}|{self.variant}|{self.precision}|{self.memory_format}"


@dataclasses.dataclass(frozen=True)
class Plan:
    frameworks: tuple[str, ...] = ("torch",)
    archs: tuple[str, ...] = ("resnet50",)
    variants: tuple[str, ...] = ("static", "sr")
    precisions: tuple[str, ...] = ("fp32",)
    memory_formats: tuple[str, ...] = ("default",)
    workers: tuple[int, ...] = (0, 2)
    batch_size: int = 32
    steps: int = 10
    rounds: int = 5
    warmup: int = 1
    method: str = "mcd_grl"
    formulation: str = "auto"
    target: str = "clipart"
    classes: int = SUITE_NUM_CLASSES["domainnet"]
    images_per_domain: int = 345
    crop: int = 224
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    budget: float | None = None
    data_root: str | None = None
    tree_root: str | None = None
    gen_workers: int = 1

    def model_cfgs(self, fw: str) -> list[ModelCfg]:
        """The model configurations of ``fw`` (Keras: NHWC throughout, one memory format ``nhwc``)."""
        formats = self.memory_formats if fw == "torch" else ("nhwc",)
        return [
            ModelCfg(fw, a, v, p, m)
            for a in self.archs
            for v in self.variants
            for p in self.precisions
            for m in formats
        ]

    @property
    def images_per_step(self) -> int:
        return 2 * self.batch_size

    def tree_spec(self) -> Any:
        from harness.data.jpeg_tree import TreeSpec

        return TreeSpec(classes=self.classes, train_per_domain=self.images_per_domain, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --------------------------------------------------------------------------------------------- CLI
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `python -m harness.bench e2e --help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m harness.bench e2e",
        description=__doc__.split("\n\n")[0].replace("``", "").replace("\n", " ").split(": ", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--arch", default="resnet50", help=f"comma list of {', '.join(BENCH_ARCHS)} (default resnet50)")
    a("--variants", default="static,sr", help=f"comma list of {', '.join(VARIANTS)} (default static,sr)")
    a("--precision", default="fp32", help="comma list of fp32, bf16, fp16 (fp16: CUDA only; default fp32)")
    a(
        "--memory-format",
        default="default",
        help="torch only: comma list of default, channels_last (Keras is always NHWC)",
    )
    a("--workers", default="0,2", help="comma list of loader worker counts >= 0 (default 0,2)")
    a("--batch-size", default="32", help="images per side per step: a step loads 2x this (default 32)")
    a("--images-per-domain", default="345", help="training images per domain of the generated tree (345)")
    a("--classes", default=str(SUITE_NUM_CLASSES["domainnet"]), help="classes (default 345, DomainNet's)")
    a("--steps", default="10", help="training steps per timed call (default 10)")
    a("--rounds", default="5", help="interleaved timed rounds (default 5)")
    a("--warmup", default="1", help="untimed calls per candidate first (default 1)")
    a("--device", default="auto", help="auto, cpu or cuda (default auto)")
    a("--frameworks", default="torch", help="comma list of torch, keras (default torch)")
    a("--method", default="mcd_grl", help="training method whose update is timed (default mcd_grl)")
    a(
        "--formulation",
        default="auto",
        help=f"DRT formulation: {', '.join(FORMULATION_CHOICES)} (default auto, as jobs)",
    )
    a("--target", default="clipart", help=f"target domain of the protocol: one of {', '.join(DOMAINNET)}")
    a("--crop", default="224", help="training crop side (224 = DomainNet; smaller for tiny runs)")
    a("--threads", default=None, help="torch/TF intra-op threads (default: the library's)")
    a("--budget", default=None, help="seconds per framework after which no new round starts (>= 1 round)")
    a("--seed", default="0", help="data tree, model and loader seed (default 0)")
    a("--data-root", default=None, help="cache the tree under DIR/domainnet-synth/ (default $DRT_DATA_ROOT)")
    a("--tree", default=None, help="generate / reuse the tree in exactly this folder instead of the cache")
    a("--gen-workers", default=None, help="processes generating the tree (default: usable cores, <= 8)")
    a("--out", default="results/perf", help="output folder (default results/perf)")
    a("--name", default="e2e", help="file stem of the outputs (default e2e: e2e.md, e2e.json)")
    a("--json", action="store_true", help="also write <out>/<name>.json (raw per-round seconds)")
    a("--dry-run", action="store_true", help="print the plan and exit; builds nothing, imports no framework")
    a("--prepare", action="store_true", help="only generate (or reuse) the data tree, then exit")
    a(
        "--render",
        nargs="+",
        default=None,
        metavar="JSON",
        help="only merge these JSON files into <out>/<name>.md",
    )
    a("--title", default=None, help="title of the markdown report")
    return p


def _list(flag: str, text: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    items = tuple(s.strip() for s in str(text).split(","))
    if not items or any(not s for s in items):
        raise UsageError(
            f"{flag}: expected a comma list"
            + (f" of {', '.join(allowed)}" if allowed else "")
            + f", got {text!r}"
        )
    if allowed is not None:
        bad = [s for s in items if s not in allowed]
        if bad:
            raise UsageError(
                f"{flag}: {bad[0]!r} is not allowed: expected a comma list of {', '.join(allowed)}"
            )
    if len(set(items)) != len(items):
        raise UsageError(f"{flag}: {text!r} lists a value twice")
    return items


def _int(flag: str, text: str | None, lo: int, default: int | None = None) -> int:
    if text is None and default is not None:
        return default
    try:
        v = int(str(text), 10)
    except ValueError:
        raise UsageError(f"{flag}: expected an integer >= {lo}, got {text!r}") from None
    if v < lo:
        raise UsageError(f"{flag}: expected an integer >= {lo}, got {v}")
    return v


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Validate every flag (:class:`UsageError` naming the flag and what was expected)."""
    from harness.frameworks import available
    from harness.method_table import METHODS

    fws = _list("--frameworks", args.frameworks, FRAMEWORKS)
    for fw in fws:
        if not available(fw):
            raise UsageError(f"--frameworks: {fw} is not installed in this environment")
    workers_t = _list("--workers", args.workers)
    workers = tuple(_int("--workers", w, 0) for w in workers_t)
    method = str(args.method)
    if method not in METHODS:
        raise UsageError(f"--method: {method!r} is not a method: expected one of {', '.join(METHODS)}")
    if args.formulation not in FORMULATION_CHOICES:
        raise UsageError(
            f"--formulation: expected one of {', '.join(FORMULATION_CHOICES)}, got {args.formulation!r}"
        )
    if args.device not in DEVICES:
        raise UsageError(f"--device: expected one of {', '.join(DEVICES)}, got {args.device!r}")
    if args.target not in DOMAINNET:
        raise UsageError(f"--target: expected one of {', '.join(DOMAINNET)}, got {args.target!r}")
    budget = None
    if args.budget is not None:
        try:
            budget = float(args.budget)
        except ValueError:
            budget = -1.0
        if not (budget > 0 and math.isfinite(budget)):
            raise UsageError(f"--budget: expected a positive number of seconds, got {args.budget!r}")
    from harness.data.jpeg_tree import default_workers

    plan = Plan(
        frameworks=fws,
        archs=_list("--arch", args.arch, BENCH_ARCHS),
        variants=_list("--variants", args.variants, VARIANTS),
        precisions=_list("--precision", args.precision, PRECISIONS),
        memory_formats=_list("--memory-format", args.memory_format, MEMORY_FORMATS),
        workers=workers,
        batch_size=_int("--batch-size", args.batch_size, 1),
        steps=_int("--steps", args.steps, 1),
        rounds=_int("--rounds", args.rounds, 1),
        warmup=_int("--warmup", args.warmup, 0),
        method=method,
        formulation=args.formulation,
        target=args.target,
        classes=_int("--classes", args.classes, 2),
        images_per_domain=_int("--images-per-domain", args.images_per_domain, 1),
        crop=_int("--crop", args.crop, 32),
        device=args.device,
        seed=_int("--seed", args.seed, 0),
        threads=None if args.threads is None else _int("--threads", args.threads, 1),
        budget=budget,
        data_root=args.data_root,
        tree_root=args.tree,
        gen_workers=_int("--gen-workers", args.gen_workers, 1, default=default_workers()),
    )
    if len(set(plan.workers)) != len(plan.workers):
        raise UsageError(f"--workers: {args.workers!r} lists a value twice")
    return plan


# --------------------------------------------------------------------------------------------- dry run
def describe(plan: Plan) -> str:
    """The plan in words (``--dry-run``): nothing is built, no framework imported."""
    from harness.data.jpeg_tree import cache_root, read_manifest

    spec = plan.tree_spec()
    root = pathlib.Path(plan.tree_root) if plan.tree_root else cache_root(spec, plan.data_root)
    have = read_manifest(root, spec, verify=False) is not None
    B, S = plan.batch_size, plan.steps
    lines = [
        "harness.bench e2e plan (dry run: nothing is built or measured)",
        f"  data tree : {root} [{'cached' if have else 'to generate'}]: {len(spec.domains)} domains x "
        f"({spec.train_per_domain} train + {spec.test_count} test) = {spec.num_images} JPEGs, "
        f"{spec.classes} classes, generated with {plan.gen_workers} process(es)",
        f"  protocol  : target {plan.target}, sources = the other {len(spec.domains) - 1} domains pooled; "
        f"method {plan.method}; crop {plan.crop} (resize {_resize_for(plan.crop)}), random crop + flip",
        f"  step      : batch {B} source + {B} target = {plan.images_per_step} images; {S} steps per timed "
        f"call; warmup {plan.warmup} call(s), then {plan.rounds} interleaved round(s)"
        + (f", stop after {plan.budget:g} s per framework" if plan.budget else ""),
        f"  device    : {plan.device}; threads {plan.threads or 'library default'}; "
        f"formulation {plan.formulation}",
    ]
    total = 0
    for fw in plan.frameworks:
        cfgs = plan.model_cfgs(fw)
        n = len(plan.workers) + len(cfgs) + len(cfgs) * len(plan.workers)
        total += n
        lines.append(f"  framework {fw}: {n} candidates")
        lines.append(f"    data-only    : loader workers {', '.join(map(str, plan.workers))}")
        lines.append(
            f"    compute-only : {len(cfgs)} model(s): arch {','.join(plan.archs)} x variants "
            f"{','.join(plan.variants)} x precision {','.join(plan.precisions)} x memory format "
            f"{','.join(sorted({c.memory_format for c in cfgs}))}"
        )
        lines.append(f"    e2e          : every model x every worker count ({len(cfgs) * len(plan.workers)})")
    calls = total * (plan.warmup + plan.rounds)
    lines.append(
        f"  total     : {total} candidates, {calls} calls, {calls * S} steps, "
        f"{calls * S * plan.images_per_step} images"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- measuring
@dataclasses.dataclass
class Candidate:
    """One timed thing: a data-only loader pair, a compute-only model, or an e2e (model, workers) pair."""

    path: str
    framework: str
    workers: int | None = None
    model: ModelCfg | None = None
    status: str = "ok"  # ok | unsupported | failed | not run
    note: str = ""
    samples_s: list[float] = dataclasses.field(default_factory=list)
    fn: Callable[[], None] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        parts = [self.path, self.model.key if self.model else self.framework]
        if self.workers is not None:
            parts.append(f"w{self.workers}")
        return "|".join(parts)

    def to_dict(self, images_per_call: int) -> dict[str, Any]:
        d: dict[str, Any] = {
            "key": self.key,
            "path": self.path,
            "framework": self.framework,
            "workers": self.workers,
            "model": dataclasses.asdict(self.model) if self.model else None,
            "status": self.status,
            "note": self.note,
            "rounds": len(self.samples_s),
            "samples_s": [round(t, 6) for t in self.samples_s],
        }
        if self.samples_s:
            med = statistics.median(self.samples_s)
            d |= {
                "median_s": round(med, 6),
                "min_s": round(min(self.samples_s), 6),
                "max_s": round(max(self.samples_s), 6),
                "images_per_s": round(images_per_call / med, 3),
            }
        return d


def _resize_for(crop: int) -> int:
    return 256 if crop == 224 else max(crop, round(crop * 256 / 224))


def train_transform(crop: int) -> Any:
    """The DomainNet training transform (shorter side 256, random 224 crop, flip); ``crop`` != 224 scales
    resize and crop alike (tiny runs)."""
    from harness.data.transforms import TransformSpec

    t = TransformSpec.domainnet(True)
    if crop == 224:
        return t
    return dataclasses.replace(t, resize=_resize_for(crop), crop=(crop, crop), name=f"domainnet-train@{crop}")


def pass_subset(split: Any, n: int, seed: int) -> Any:
    """``n`` samples of ``split`` (a random subset, repeated when the split is smaller): a loader over it
    with ``drop_last`` has exactly ``n // batch`` batches per pass."""
    import numpy as np

    rng = np.random.default_rng([seed, 0xE2E])
    reps = -(-n // len(split))
    idx = np.concatenate([rng.permutation(len(split)) for _ in range(reps)])[:n]
    return split.subset(idx, f"{getattr(split, 'name', 'split')}-bench")


def make_job(plan: Plan, cfg: ModelCfg, tree_root: pathlib.Path, device: str) -> dict[str, Any]:
    """The job dict the backend builds the model from (keys as :mod:`harness.jobs` resolves them);
    ``precision`` only when it is not fp32 (a build without the field then still runs fp32 rows)."""
    from harness import hparams

    job: dict[str, Any] = {
        "framework": cfg.framework,
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow") if cfg.framework == "keras" else None,
        "suite": "domainnet",
        "root": str(tree_root),
        "target": plan.target,
        "method": plan.method,
        "variant": cfg.variant,
        "arch": cfg.arch,
        "formulation": plan.formulation,
        "seed": plan.seed,
        "hparams": hparams.resolve(plan.method, "domainnet"),
        "device": device,
        "profile": "bench-e2e",
        "epochs": 1,
        "steps_per_epoch": plan.steps,
        "batch_size": plan.batch_size,
        "data": {},
    }
    if cfg.precision != "fp32":
        job["precision"] = cfg.precision
    return job


def _torch_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device: cuda requested but torch sees no CUDA GPU (use --device cpu or auto)")
    return requested


def check_precision(cfg: ModelCfg, algo: Any, seen: set[str]) -> None:
    """:class:`_Unsupported` unless the algorithm trains in ``cfg.precision``: it must say so
    (``algo.precision``, set by the backend from ``job["precision"]``) and, in torch, its step must have
    computed in the low-precision dtype (forward hooks; Keras applies its mixed policy inside the compiled
    step only)."""
    if cfg.precision == "fp32":
        return
    declared = getattr(algo, "precision", None)
    msg = PRECISION_UNSUPPORTED.format(p=cfg.precision)
    if declared != cfg.precision:
        raise _Unsupported(
            f"{msg} (job['precision'] = {cfg.precision!r} given; the {cfg.framework} algorithm trains in "
            f"{declared or 'its parameter dtype (no precision attribute)'})"
        )
    if cfg.framework == "torch" and _PRECISION_DTYPES[cfg.precision] not in seen:
        raise _Unsupported(f"{msg} (the torch step computed in {', '.join(sorted(seen)) or 'nothing'})")


@contextlib.contextmanager
def _dtype_probe(framework: str, algo: Any) -> Iterator[set[str]]:
    """The floating dtypes of every leaf module's output during the block (torch; Keras: nothing)."""
    seen: set[str] = set()
    if framework == "torch":
        import torch

        def hook(_m: Any, _i: Any, out: Any) -> None:
            if torch.is_tensor(out) and out.is_floating_point():
                seen.add(str(out.dtype).replace("torch.", ""))

        handles = [m.register_forward_hook(hook) for m in algo.modules() if not list(m.children())]
        try:
            yield seen
        finally:
            for h in handles:
                h.remove()
    else:
        yield seen


def _drain(it: Iterator[Any]) -> None:
    for _ in it:
        pass


class _Short(RuntimeError):
    pass


def _take(it: Iterator[Any], what: str, i: int) -> Any:
    try:
        return next(it)
    except StopIteration:
        raise _Short(f"the {what} loader ended after {i} of the planned batches") from None


def resolve_workers(workers: int) -> int:
    """The worker count the training loop would use for ``job["loader_workers"] = workers``
    (:func:`harness.loop.loader_workers` where this build has it)."""
    from harness import loop

    fn = getattr(loop, "loader_workers", None)
    return int(fn({"loader_workers": workers})) if fn is not None else workers


def _close(loader: Any) -> None:
    close = getattr(loader, "close", None)
    if callable(close):
        close()


def probe_loader_workers(backend: Any, split: Any, transform: Any) -> tuple[bool, str]:
    """Does this build's ``backend.make_loader`` take loader workers (``num_workers``, what the training
    loop passes for ``job["loader_workers"]``)? ``(ok, message)``; a ``TypeError`` naming the argument means
    no."""
    try:
        loader = backend.make_loader(split, transform, 1, train=True, seed=0, num_workers=1)
    except TypeError as e:
        if "num_workers" in str(e):
            return False, f"{LOADER_WORKERS_UNSUPPORTED} ({backend.framework} make_loader: {one_line(e)})"
        raise
    _close(loader)
    return True, ""


def one_line(e: BaseException, limit: int = 240) -> str:
    """``Type: the last meaningful line of the message`` (ANSI colour codes removed), at most ``limit``
    characters: table notes stay one line; the full message goes to the log."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = next((ln for ln in reversed(lines) if not ln.startswith(("•", "Arguments received"))), "")
    out = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return out if len(out) <= limit else out[: limit - 1] + "…"


class FrameworkRun:
    """Builds every candidate of one framework, then times them interleaved."""

    def __init__(
        self,
        fw: str,
        plan: Plan,
        tree_root: pathlib.Path,
        manifest: dict[str, Any],
        log: Callable[[str], None],
    ) -> None:
        self.fw, self.plan, self.tree_root, self.manifest, self.log = fw, plan, tree_root, manifest, log
        self.candidates: list[Candidate] = []
        self.device = plan.device  # what the jobs ask for (torch: auto resolved to cuda/cpu)
        self.device_label = plan.device  # where the steps run, as the backend names it
        self.hardware: dict[str, Any] = {}
        self.partial = True
        self._keep: list[Any] = []  # loaders and models alive for the run

    # -- building ---------------------------------------------------------------------------------------
    def build(self) -> None:
        from harness.data import get_suite
        from harness.frameworks import prepare_process, require
        from harness.spec.method import job_specs

        require(self.fw)
        prepare_process()
        plan, fw = self.plan, self.fw
        if fw == "torch":
            from impl_torch.train import TorchBackend as backend_type

            self.device = self.device_label = _torch_device(plan.device)
        else:
            from impl_keras.train import KerasBackend as backend_type

            self.device_label = backend_type().device_name({"device": plan.device})
        self.backend_type = backend_type
        spec = plan.tree_spec()
        suite = get_suite(
            "domainnet",
            str(self.tree_root),
            num_classes=plan.classes,
            expected=spec.expected(),
            domains=spec.domains,
        )
        proto = suite.protocol(plan.target, seed=plan.seed)
        B, S = plan.batch_size, plan.steps
        transform = train_transform(plan.crop)
        cfgs = plan.model_cfgs(fw)
        job0 = make_job(plan, cfgs[0], self.tree_root, self.device)
        _, mspec = job_specs(job0, len(proto.sources), proto.num_classes)
        sampler = mspec.sampler()
        if sampler == "balanced":
            src_split, src_kw = proto.source_train, {"num_batches": S}
        else:
            src_split, src_kw = pass_subset(proto.source_train, S * B, plan.seed), {}
        tgt_split = pass_subset(proto.target_train, S * B, plan.seed + 1)
        self.lr_factor = mspec.lr_factor
        probe_backend = backend_type()
        supported, why = probe_loader_workers(probe_backend, tgt_split, transform)
        if not supported:
            self.log(
                f"[{fw}] {why}: rows with --workers > 0 are marked unsupported; workers 0 loads in-process"
            )
            why = LOADER_WORKERS_UNSUPPORTED

        def loaders(w: int) -> tuple[Any, Any]:
            """The loop's two training loaders (made in the job's scope, as the loop makes them: e.g. torch
            pins memory for CUDA)."""
            kw = {"num_workers": resolve_workers(w)} if supported else {}
            with probe_backend.scope(job0):
                src = probe_backend.make_loader(
                    src_split, transform, B, train=True, seed=plan.seed, sampler=sampler, **src_kw, **kw
                )
                tgt = probe_backend.make_loader(
                    tgt_split, transform, B, train=True, seed=plan.seed + 7919, **kw
                )
            return src, tgt

        # host batches for compute-only: taken once, in-process
        hsrc, htgt = loaders(0)
        si, ti = iter(hsrc), iter(htgt)
        host = []
        for i in range(min(CACHED_BATCHES, S)):
            xs, ys, ds = _take(si, "source", i)
            xt, _, _ = _take(ti, "target", i)
            host.append((xs, ys, ds, xt))
        del si, ti
        for loader in (hsrc, htgt):
            _close(loader)

        pairs: dict[int, tuple[Any, Any]] = {}
        for w in plan.workers:
            c = Candidate("data", fw, workers=w)
            if w > 0 and not supported:
                c.status, c.note = "unsupported", why
            else:
                pairs[w] = loaders(w)
                c.fn = self._data_fn(*pairs[w])
            self.candidates.append(c)
        self._keep.append(pairs)

        for cfg in cfgs:
            comp = Candidate("compute", fw, model=cfg)
            e2es = [Candidate("e2e", fw, workers=w, model=cfg) for w in plan.workers]
            self.candidates.append(comp)
            self.candidates.extend(e2es)
            try:
                model = self._build_model(cfg, proto, host)
            except _Unsupported as e:
                for c in [comp, *e2es]:
                    c.status, c.note = "unsupported", str(e)
                self.log(f"[{fw}] {cfg.key}: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - one configuration failing must not lose the others
                for c in [comp, *e2es]:
                    c.status, c.note = "failed", f"build: {one_line(e)}"
                self.log(f"[{fw}] {cfg.key}: build failed: {type(e).__name__}: {e}")
                continue
            comp.fn = self._compute_fn(model)
            for c in e2es:
                if c.workers not in pairs:
                    c.status, c.note = "unsupported", why
                else:
                    c.fn = self._e2e_fn(model, *pairs[c.workers])
            self._keep.append(model)

    def _build_model(self, cfg: ModelCfg, proto: Any, host: list[tuple]) -> dict[str, Any]:
        from harness.spec.method import job_specs

        backend = self.backend_type()
        job = make_job(self.plan, cfg, self.tree_root, self.device)
        with backend.scope(job):
            backend.seed(self.plan.seed)
            model_spec, mspec = job_specs(job, len(proto.sources), proto.num_classes)
            algo = backend.build(mspec, model_spec, job)
            convert = self._converter(cfg, algo)
            backend.train_mode(algo)
            cached = [convert(backend.batch(algo, *b)) for b in host]
            model = {
                "backend": backend,
                "algo": algo,
                "job": job,
                "convert": convert,
                "cached": cached,
                "g": 0,
            }
            # one step now: it checks the precision, resolves `auto` layers and fails early on a bad build
            with _dtype_probe(cfg.framework, algo) as seen:
                self._step(model, cached[0])
        check_precision(cfg, algo, seen)
        return model

    def _converter(self, cfg: ModelCfg, algo: Any) -> Callable[[dict], dict]:
        if cfg.framework == "torch" and cfg.memory_format == "channels_last":
            import torch

            # every 4-D parameter and buffer (conv kernels); ``Module.to(memory_format=...)`` would also try
            # the 5-D DRT bases, which have no 2-D channels-last layout
            with torch.no_grad():
                for t in [*algo.parameters(), *algo.buffers()]:
                    if t.dim() == 4:
                        t.data = t.data.contiguous(memory_format=torch.channels_last)

            def to_cl(b: dict) -> dict:
                return {
                    k: v.contiguous(memory_format=torch.channels_last)
                    if getattr(v, "dim", lambda: 0)() == 4
                    else v
                    for k, v in b.items()
                }

            return to_cl
        return lambda b: b

    def _step(self, model: dict[str, Any], batch: dict[str, Any]) -> None:
        """One step as :func:`harness.loop.run_job` runs it (progress, lr factor, update, metrics read)."""
        algo, g = model["algo"], model["g"]
        algo.set_progress(g, TOTAL_STEPS)
        algo.set_lr_factor(self.lr_factor(0, g, TOTAL_STEPS))
        for v in algo.update(batch).values():
            float(v)
        model["g"] = g + 1

    def _data_fn(self, src: Any, tgt: Any) -> Callable[[], None]:
        S = self.plan.steps

        def data() -> None:
            si, ti = iter(src), iter(tgt)
            for i in range(S):
                _take(si, "source", i)
                _take(ti, "target", i)
            _drain(si)
            _drain(ti)

        return data

    def _compute_fn(self, model: dict[str, Any]) -> Callable[[], None]:
        S, cached = self.plan.steps, model["cached"]
        backend, job = model["backend"], model["job"]

        def compute() -> None:
            with backend.scope(job):
                for i in range(S):
                    self._step(model, cached[i % len(cached)])

        return compute

    def _e2e_fn(self, model: dict[str, Any], src: Any, tgt: Any) -> Callable[[], None]:
        S = self.plan.steps
        backend, job, algo, convert = model["backend"], model["job"], model["algo"], model["convert"]

        def e2e() -> None:
            with backend.scope(job):
                si, ti = iter(src), iter(tgt)
                for i in range(S):
                    xs, ys, ds = _take(si, "source", i)
                    xt, _, _ = _take(ti, "target", i)
                    self._step(model, convert(backend.batch(algo, xs, ys, ds, xt)))
                _drain(si)
                _drain(ti)

        return e2e

    def sync(self) -> None:
        if self.fw == "torch" and str(self.device).startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    # -- timing -----------------------------------------------------------------------------------------
    def time(self, on_round: Callable[[], None] | None = None) -> None:
        """Warm up every runnable candidate, then interleaved rounds (medians are taken when reporting)."""
        plan = self.plan
        live = [c for c in self.candidates if c.fn is not None and c.status == "ok"]
        t_start = time.perf_counter()
        for c in live:
            try:
                for _ in range(plan.warmup):
                    c.fn()
                self.sync()
            except Exception as e:  # noqa: BLE001
                c.status, c.note, c.fn = "failed", f"warm-up: {one_line(e)}", None
                self.log(f"[{self.fw}] {c.key}: warm-up failed: {type(e).__name__}: {e}")
        live = [c for c in live if c.fn is not None]
        self.log(f"[{self.fw}] warm-up done in {time.perf_counter() - t_start:.1f} s; {len(live)} candidates")
        for r in range(plan.rounds):
            t_round = time.perf_counter()
            for c in live:
                if c.fn is None:
                    continue
                try:
                    t0 = time.perf_counter()
                    c.fn()
                    self.sync()
                    c.samples_s.append(time.perf_counter() - t0)
                except KeyboardInterrupt:
                    for other in live:  # keep complete rounds only: every median from the same rounds
                        del other.samples_s[r:]
                    raise
                except Exception as e:  # noqa: BLE001
                    c.status, c.note, c.fn = "failed", f"round {r + 1}: {one_line(e)}", None
                    self.log(f"[{self.fw}] {c.key}: round {r + 1} failed: {type(e).__name__}: {e}")
            self.log(f"[{self.fw}] round {r + 1}/{plan.rounds} in {time.perf_counter() - t_round:.1f} s")
            if on_round is not None:
                on_round()
            if (
                plan.budget is not None
                and time.perf_counter() - t_start > plan.budget
                and r + 1 < plan.rounds
            ):
                self.log(f"[{self.fw}] budget of {plan.budget:g} s spent: stopping after {r + 1} round(s)")
                break
        self.partial = False

    def close(self) -> None:
        """Stop the loader workers and drop every model."""
        for c in self.candidates:
            c.fn = None
        for item in self._keep:
            if isinstance(item, dict) and all(isinstance(k, int) for k in item):
                for pair in item.values():
                    for loader in pair:
                        _close(loader)
        self._keep.clear()
        gc.collect()

    # -- results ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        ipc = self.plan.steps * self.plan.images_per_step
        cands = [c.to_dict(ipc) for c in self.candidates]
        return {
            "framework": self.fw,
            "device": self.device_label,
            "hardware": self.hardware,
            "partial": self.partial,
            "candidates": cands,
            "rows": rows_of(cands),
        }


class _Unsupported(Exception):
    pass


def rows_of(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, workers): the three img/s figures and which side bounds the step."""
    by = {c["key"]: c for c in cands}
    rows = []
    for c in cands:
        if c["path"] != "e2e":
            continue
        m, w, fw = c["model"], c["workers"], c["framework"]
        mkey = "|".join([m["framework"], m["arch"], m["variant"], m["precision"], m["memory_format"]])
        data = by.get(f"data|{fw}|w{w}", {})
        comp = by.get(f"compute|{mkey}", {})
        d, k, e = data.get("images_per_s"), comp.get("images_per_s"), c.get("images_per_s")
        notes = [x["note"] for x in (data, comp, c) if x.get("note")]
        row = {
            "framework": fw,
            "arch": m["arch"],
            "variant": m["variant"],
            "precision": m["precision"],
            "memory_format": m["memory_format"],
            "workers": w,
            "data_img_s": d,
            "compute_img_s": k,
            "e2e_img_s": e,
            "bound_by": None if d is None or k is None else ("data" if d < k else "compute"),
            "data_over_compute": None if d is None or not k else round(d / k, 3),
            "e2e_over_bound": None if e is None or d is None or k is None else round(e / min(d, k), 3),
            "status": "ok" if all(x.get("status") == "ok" for x in (data, comp, c)) else "incomplete",
            "note": "; ".join(dict.fromkeys(notes)),
        }
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- report
def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def render(doc: dict[str, Any], title: str | None = None) -> str:
    from tabulate import tabulate

    plan, data = doc["plan"], doc.get("data", {})
    lines = [
        f"# {title or doc.get('title') or 'End-to-end training throughput: data loader vs model'}",
        "",
        f"Generated by `python -m harness.bench e2e` on {doc.get('created', '?')} UTC"
        + (
            " — **partial run** (interrupted or out of time)"
            if any(r.get("partial") for r in doc["runs"])
            else ""
        )
        + ". Images/s: one step = a source and a target batch of "
        f"{plan['batch_size']} each ({2 * plan['batch_size']} images); **data-only** = the training "
        "loaders alone (decode + augment + batch), **compute-only** = training steps on cached batches "
        "already on the device, **e2e** = the training loop's step (both). Medians of interleaved rounds "
        f"(every candidate of a run runs once per round, {plan['steps']} steps per call); the figures of "
        "one run come from the same rounds (compare across runs with care). **bound by** = the smaller "
        "of data-only and compute-only; "
        "e2e / bound = the fraction of that bound the loop reaches.",
        "",
        "## Setup",
        "",
        f"- method `{plan['method']}`, target `{plan['target']}` (sources: the other domains pooled), "
        f"formulation `{plan['formulation']}`, crop {plan['crop']} (DomainNet training transform"
        + (")" if plan["crop"] == 224 else ", scaled)")
        + f", warmup {plan['warmup']} call(s), {plan['rounds']} round(s)",
    ]
    if data:
        lines.append(
            f"- data: synthetic DomainNet tree (published layout, "
            f"{data.get('spec', {}).get('classes')} classes, {data.get('images')} JPEGs, "
            f"{data.get('bytes', 0) / 1e6:.1f} MB, sha256 {str(data.get('sha256'))[:12]}, "
            f"Pillow {data.get('pillow')}) at `{data.get('root')}`; mean bytes per image: "
            + ", ".join(
                f"{d} {v['mean_bytes'] / 1e3:.1f} KB ({v['mean_width']:.0f}×{v['mean_height']:.0f})"
                for d, v in data.get("per_domain", {}).items()
            )
        )
    for i, run in enumerate(doc["runs"], 1):
        h = run.get("hardware", {})
        vers = h.get("versions", {})
        lines.append(
            f"- run {i} `{run['framework']}` on `{run.get('device')}`"
            + (f" ({run['source']})" if run.get("source") else "")
            + f": {h.get('machine', '')}; "
            f"{h.get('cores_usable', '?')} usable cores, torch threads {h.get('torch_threads', '—')}; "
            f"load average before {h.get('loadavg')}, after {h.get('loadavg_after')}; "
            + ", ".join(f"{k} {v}" for k, v in vers.items())
            + (f"; env {h['env']}" if h.get("env") else "")
        )
    lines += ["", "## Throughput (images/s, median)", ""]
    table = []
    for i, run in enumerate(doc["runs"], 1):
        for r in run["rows"]:
            table.append(
                [
                    i,
                    r["framework"],
                    r["arch"],
                    r["variant"],
                    r["precision"],
                    r["memory_format"],
                    r["workers"],
                    _fmt(r["data_img_s"]),
                    _fmt(r["compute_img_s"]),
                    _fmt(r["e2e_img_s"]),
                    f"**{r['bound_by']}**" if r["bound_by"] else "—",
                    "—" if r["data_over_compute"] is None else f"{r['data_over_compute']:.2f}",
                    "—" if r["e2e_over_bound"] is None else f"{r['e2e_over_bound']:.2f}",
                    r["note"],
                ]
            )
    lines.append(
        tabulate(
            table,
            headers=[
                "run",
                "fw",
                "arch",
                "variant",
                "precision",
                "memory",
                "workers",
                "data-only",
                "compute-only",
                "e2e",
                "bound by",
                "data/compute",
                "e2e/bound",
                "note",
            ],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    lines += ["", f"## Every candidate (seconds per call of {plan['steps']} steps)", ""]
    full = []
    for i, run in enumerate(doc["runs"], 1):
        for c in run["candidates"]:
            m = c["model"] or {}
            full.append(
                [
                    i,
                    c["framework"],
                    c["path"],
                    "/".join(str(m[k]) for k in ("arch", "variant", "precision", "memory_format"))
                    if m
                    else "—",
                    "—" if c["workers"] is None else c["workers"],
                    c["status"],
                    c.get("rounds", 0),
                    f"{c['median_s']:.3f}" if "median_s" in c else "—",
                    f"{c['min_s']:.3f}" if "min_s" in c else "—",
                    f"{c['max_s']:.3f}" if "max_s" in c else "—",
                    _fmt(c.get("images_per_s")),
                    c["note"],
                ]
            )
    lines.append(
        tabulate(
            full,
            headers=[
                "run",
                "fw",
                "path",
                "model",
                "workers",
                "status",
                "rounds",
                "median s",
                "min s",
                "max s",
                "img/s",
                "note",
            ],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    lines.append("")
    return "\n".join(lines)


def hardware(fw: str, device: str) -> dict[str, Any]:
    """Machine and versions of one run (:mod:`harness.provenance` + the bench's load/threads record)."""
    from harness.drivers.bench import hardware as bench_hardware

    h = bench_hardware(device)
    h["machine"] = provenance.hardware(device)
    h["versions"] = provenance.library_versions(fw)
    if fw == "keras" and "keras" in sys.modules:
        h["keras_backend"] = sys.modules["keras"].backend.backend()
    return h


def _write(out: pathlib.Path, name: str, doc: dict[str, Any], write_json: bool, title: str | None) -> None:
    from harness import atomic

    if write_json:
        atomic.write_json(out / f"{name}.json", doc, sort_keys=False, indent=1)
    atomic.write_text(out / f"{name}.md", render(doc, title))


def merge(paths: list[str]) -> dict[str, Any]:
    """Several ``--json`` outputs (e.g. one per framework) as one document; the first one's plan and data."""
    docs = []
    for p in paths:
        try:
            d = json.loads(pathlib.Path(p).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--render: {p}: not a readable JSON file ({e})") from None
        if not isinstance(d, dict) or d.get("kind") != "harness.bench e2e":
            raise UsageError(f"--render: {p}: not an e2e result (no kind 'harness.bench e2e')")
        docs.append(d)
    keys = ("batch_size", "steps", "method", "target", "crop", "formulation", "classes", "images_per_domain")
    first = docs[0]["plan"]
    for p, d in zip(paths[1:], docs[1:]):
        diff = [k for k in keys if d["plan"].get(k) != first.get(k)]
        if diff:
            raise UsageError(
                f"--render: {p}: its plan differs from {paths[0]}'s in {', '.join(diff)}: the images/s would "
                "not be comparable; render them separately"
            )
    doc = dict(docs[0])
    doc["runs"] = [r | {"source": pathlib.Path(p).name} for p, d in zip(paths, docs) for r in d["runs"]]
    doc["sources"] = [str(p) for p in paths]
    return doc


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = pathlib.Path(args.out)
    try:
        if args.render is not None:
            doc = merge(args.render)
            _write(out, args.name, doc, False, args.title)
            print(f"wrote {out / (args.name + '.md')}")
            return 0
        plan = plan_from_args(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe(plan))
        return 0
    return run(plan, out, args.name, args.json, args.title, prepare_only=args.prepare)


def run(
    plan: Plan,
    out: pathlib.Path,
    name: str = "e2e",
    write_json: bool = False,
    title: str | None = None,
    *,
    prepare_only: bool = False,
    log: Callable[[str], None] | None = None,
) -> int:
    """Generate / reuse the tree, run every framework, write the report. Exit status: 0 every row measured,
    1 some configuration unsupported or failed (the rest is written), 2 bad input, 130 interrupted."""
    from harness.data.jpeg_tree import ensure_tree
    from harness.errors import DrtBenchError

    log = log or (lambda s: print(s, flush=True))
    try:
        root, manifest, _ = ensure_tree(
            plan.tree_spec(), plan.data_root, root=plan.tree_root, workers=plan.gen_workers, log=log
        )
    except DrtBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if prepare_only:
        print(root)
        return 0
    doc: dict[str, Any] = {
        "kind": "harness.bench e2e",
        "schema": SCHEMA,
        "created": f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M}",
        "command": "python -m harness.bench e2e "
        + " ".join(sys.argv[2:] if sys.argv[1:2] == ["e2e"] else sys.argv[1:]),
        "plan": plan.to_dict(),
        "data": {k: v for k, v in manifest.items() if k != "counts"} | {"root": str(root)},
        "runs": [],
    }
    if plan.threads:
        from harness.drivers.bench import set_threads

        set_threads(plan.threads, list(plan.frameworks))
    status = 0
    for fw in plan.frameworks:
        fr = FrameworkRun(fw, plan, root, manifest, log)
        try:
            fr.build()
            fr.hardware = hardware(fw, "cuda" if "gpu" in fr.device_label else fr.device)
            doc["runs"].append(fr.to_dict())

            def partial(fr: FrameworkRun = fr) -> None:
                doc["runs"][-1] = fr.to_dict()
                _write(out, name, doc, write_json, title)

            fr.time(on_round=partial)
            fr.hardware["loadavg_after"] = hardware(fw, "cpu").get("loadavg")
            doc["runs"][-1] = fr.to_dict()
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if doc["runs"] and doc["runs"][-1]["framework"] == fw:
                doc["runs"][-1] = fr.to_dict()
            _write(out, name, doc, write_json, title)
            print(f"interrupted: partial results in {out / (name + '.md')}", file=sys.stderr)
            return 130
        finally:
            fr.close()
        _write(out, name, doc, write_json, title)
        bad = [c for c in fr.candidates if c.status != "ok"]
        for c in bad:
            print(f"[{fw}] {c.key}: {c.status}: {c.note}", file=sys.stderr)
        if bad:
            status = 1
    print(render(doc, title))
    print(f"wrote {out / (name + '.md')}" + (f" and {out / (name + '.json')}" if write_json else ""))
    return status
