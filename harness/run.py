"""``python -m harness.run``: run a matrix of jobs (frameworks × methods × variants × targets × seeds).

With no arguments: the offline ``digits`` suite, ``quick`` profile, the five baselines (source-only, DANN,
ADDA, MCD in the one-step form the paper's MCD rows use, M3SDA-β) × {static, DRT (sr)} on one target
(mnistm), torch, on the local machine; prints the table (target and source accuracy) and writes
``results/digits/README.md``.

Each job is identified by a hash of its fully resolved spec (:mod:`harness.jobs`), so re-running a command
skips the finished jobs and resumes interrupted ones from their checkpoint; a failed job (exception, NaN) is
recorded with its error and the others go on, as is a job whose directory or files cannot be created, locked
or written. ``--dry-run`` prints the matrix and its size, running nothing. Before any job runs, the arguments
are checked (at most :data:`MAX_SEEDS` seeds, each below 2**31; at most :data:`MAX_JOBS` jobs; ``--workers``
positive; ``--loader-workers`` non-negative) and so are the outputs (``<out>/<suite>`` and
``<results>/<suite>`` must be writable folders): a bad one is a one-line error and exit status 2.

``--precision`` (``fp32`` default, ``bf16``, ``fp16``) is part of the job identity, written into a spec only
when it is not ``fp32``; ``--loader-workers N`` is written when given and is execution-only (never part of
the identity: :data:`harness.jobs.EXECUTION_KEYS`).

Trainer hook: the function that trains one job is looked up in :data:`TRAINERS` (framework →
``"module:function"``, the contract ``run_job(job, job_dir, *, on_epoch=None, on_step=None) -> dict`` of
``docs/architecture.md``). The environment variable ``DRT_TRAINER_<FRAMEWORK>`` (e.g.
``DRT_TRAINER_TORCH=mypkg.fake:run_job``) overrides an entry; it reaches worker processes and SLURM jobs
too, which is how the tests inject a fake trainer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import data as hdata
from harness import hparams as H
from harness import method_table
from harness.errors import DataError, DrtBenchError, SpecError
from harness.jobs import (
    DONE,
    FAILED,
    NEW,
    PARTIAL,
    PRECISIONS,
    JobTask,
    build_spec,
    job_dir,
    job_id,
    job_state,
)
from harness.profiles import PROFILES, get_profile
from harness.spec.model import VARIANTS

TRAINERS: dict[str, str] = {"torch": "impl_torch.train:run_job", "keras": "impl_keras.train:run_job"}
FRAMEWORKS: tuple[str, ...] = ("torch", "keras")
#: The five baselines of the paper's comparison (``default_run`` in the method table). MCD is the one-step
#: form the DRT authors trained with (the paper's "MCD" / "MCD+DRT" rows); the classic 3-step MCD is ``mcd``.
DEFAULT_METHODS: tuple[str, ...] = method_table.DEFAULT_METHODS
ALL_METHODS: tuple[str, ...] = method_table.METHODS
DEFAULT_VARIANTS: tuple[str, ...] = ("static", "sr")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
LAUNCHER_NAMES: tuple[str, ...] = ("auto", "local", "parallel", "slurm")
#: Bounds of one command, checked arithmetically before any list is built: seeds per command, the seed
#: values (they seed 32-bit generators), and jobs per matrix (frameworks × methods × variants × targets ×
#: seeds). A larger sweep is several commands (the same ``--out``: each job has its own directory).
MAX_SEEDS = 10_000
SEED_LIMIT = 2**31
MAX_JOBS = 100_000


def trainer_for(framework: str) -> str:
    """The trainer import path for ``framework`` (``DRT_TRAINER_<FW>`` overrides :data:`TRAINERS`)."""
    env = os.environ.get(f"DRT_TRAINER_{framework.upper()}")
    if env:
        return env
    try:
        return TRAINERS[framework]
    except KeyError:
        raise SpecError("run", "frameworks", framework, " | ".join(FRAMEWORKS)) from None


# --------------------------------------------------------------------------------------------- parsing
def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parse_list(text: str | None, allowed: Sequence[str], field: str, default: Sequence[str]) -> list[str]:
    """Comma list checked against ``allowed``; ``all`` = every allowed value; empty = ``default``."""
    items = _split(text)
    if not items:
        return list(default)
    if items == ["all"]:
        return list(allowed)
    for it in items:
        if it not in allowed:
            raise SpecError("run", field, it, " | ".join(allowed) + " | all")
    return list(dict.fromkeys(items))


_SEED_ITEM = re.compile(r"\s*([+-]?[0-9]+)\s*(?:-\s*([+-]?[0-9]+)\s*)?")


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def parse_seeds(text: str | None) -> list[int]:
    """``"0,1,2"``, ``"0-4"`` (inclusive) or a mix; default (``None``) ``[0]``.

    Raises :class:`SpecError` for an empty list or item, a non-integer, a reversed range (``3-1``), a seed
    outside ``0 .. 2**31 - 1``, or more than :data:`MAX_SEEDS` seeds (counted before any list is built).
    """
    if text is None:
        return [0]
    items = text.split(",")
    if not text.strip():
        raise SpecError("run", "seeds", text, "integers, e.g. 0,1,2 or 0-4 (got an empty list)")
    bounds: list[tuple[int, int]] = []
    count = 0
    for raw in items:
        item = raw.strip()
        if not item:
            raise SpecError(
                "run", "seeds", _clip(text), "a comma list without empty items, e.g. 0,1,2 or 0-4"
            )
        m = _SEED_ITEM.fullmatch(item)
        try:
            lo = int(m.group(1)) if m else None
            hi = int(m.group(2)) if m and m.group(2) is not None else lo
        except ValueError:  # more digits than int() converts
            lo = hi = None
        if lo is None or hi is None:
            raise SpecError("run", "seeds", _clip(item), "integers, e.g. 0,1,2 or 0-4")
        for v in (lo, hi):
            if not 0 <= v < SEED_LIMIT:
                raise SpecError(
                    "run", "seeds", _clip(item), f"non-negative integers below 2**31 = {SEED_LIMIT}"
                )
        if hi < lo:
            raise SpecError("run", "seeds", item, f"a range LO-HI with LO <= HI, e.g. {hi}-{lo}")
        count += hi - lo + 1
        if count > MAX_SEEDS:
            raise SpecError(
                "run", "seeds", _clip(text), f"at most {MAX_SEEDS} seeds per command (this asks for {count}+)"
            )
        bounds.append((lo, hi))
    out: list[int] = []
    for lo, hi in bounds:
        out.extend(range(lo, hi + 1))
    return list(dict.fromkeys(out))


def suite_domains(suite: str, root: str | None) -> list[str]:
    """The suite's domains from the data layer (which raises a DrtBenchError for a missing data root)."""
    doms = hdata.get_suite(suite, root=root).domains
    if not doms:
        raise DrtBenchError(f"suite {suite!r}: the data layer gives no domain list")
    return [str(d) for d in doms]


DATA_CHECKS: tuple[str, ...] = ("header", "full", "exists", "none")


def check_data(suite: str, root: str | None, level: str = "header") -> None:
    """Validate a data root read from disk (``digit-five``, ``domainnet``) before any job starts, at
    ``level`` (``header`` by default: split files, labels, classes, counts, every image's header; ``none``
    skips the check — the loaders still refuse what they cannot read safely).

    Generated suites (``digits``, ``smoke``) are built on first use by the trainer and need no check.
    """
    if suite not in ("digit-five", "domainnet") or level == "none":
        return
    data = hdata.get_suite(suite, root=root)
    # DomainNet's check has image levels; Digit-Five's .mat files are read whole (full or not)
    report = data.check(images=level) if suite == "domainnet" else data.check(full=level == "full")
    if not report.ok:
        raise DataError(
            f"the {suite} data root failed its check:\n{report.format()}\n"
            f"(details: python -m harness.data check --suite {suite}" + (f" --root {root})" if root else ")")
        )


def keras_backend_for(device: str) -> str:
    """KERAS_BACKEND if set; else JAX on a GPU machine (it has no TensorFlow) or without TensorFlow; else
    TensorFlow."""
    import importlib.util

    env = os.environ.get("KERAS_BACKEND")
    if env:
        return env
    has_tf = importlib.util.find_spec("tensorflow") is not None
    has_jax = importlib.util.find_spec("jax") is not None
    if has_jax and (device.startswith("cuda") or not has_tf):
        return "jax"
    return "tensorflow"


def resolve_device(framework: str, requested: str) -> str:
    """``auto`` → ``cuda`` when a GPU is usable by the framework, else ``cpu``."""
    if requested not in DEVICES:
        raise SpecError("run", "device", requested, " | ".join(DEVICES))
    if requested != "auto":
        return requested
    if framework == "torch":
        from harness.frameworks import available, prepare_process

        if not available("torch"):
            return "cpu"
        prepare_process()
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if framework == "keras":
        from harness.launchers import visible_gpus

        if visible_gpus() and keras_backend_for("cuda") in ("jax", "torch"):
            return "cuda"
        return "cpu"
    return "cpu"


def resolve_hparams(
    method: str, suite: str, overrides: dict[str, Any], sample_seed: int = 0
) -> dict[str, Any]:
    """Method defaults (``sample_seed`` 0) or a DomainBed-style random draw seeded per (seed, name), updated
    by ``overrides`` (``harness.hparams``; overrides naming other methods' hyperparameters are ignored)."""
    return H.resolve(method, suite, overrides, sample_seed=sample_seed, ignore_foreign=True)


def parse_hparams(items: Sequence[str] | None) -> dict[str, Any]:
    """``--hparams`` values: JSON objects and/or ``name=value`` pairs (:func:`hparams.parse_overrides`)."""
    return dict(H.parse_overrides(list(items))) if items else {}


# --------------------------------------------------------------------------------------------- matrix
def check_matrix_size(*dims: Sequence[Any]) -> int:
    """The number of jobs of the matrix (the product of the dimensions), computed before building it; a
    :class:`DrtBenchError` when it is above :data:`MAX_JOBS`."""
    n = math.prod(len(d) for d in dims)
    if n > MAX_JOBS:
        sizes = " × ".join(str(len(d)) for d in dims)
        raise DrtBenchError(
            f"the matrix has {n} jobs (frameworks × methods × variants × targets × seeds = {sizes}): at most "
            f"{MAX_JOBS} per command; split it (fewer --seeds, --targets or --methods per command)"
        )
    return n


def check_args(args: argparse.Namespace) -> None:
    """Numeric execution flags argparse cannot bound: ``--workers`` must be positive, ``--loader-workers``
    non-negative."""
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise SpecError(
            "run",
            "workers",
            workers,
            "a positive integer (omit it for one per GPU for CUDA jobs, else one per CPU)",
        )
    loader_workers = getattr(args, "loader_workers", None)
    if loader_workers is not None and loader_workers < 0:
        raise SpecError(
            "run",
            "loader-workers",
            loader_workers,
            "an integer >= 0 (0: load in the training process; omit it to derive it from the CPUs)",
        )


def check_writable_folder(flag: str, value: str, folder: Path) -> None:
    """``folder`` can be created (if missing) and written to; creates nothing. Raises :class:`SpecError`
    naming ``--flag`` when a file (or a broken link) stands where a folder is needed, or when the nearest
    existing folder does not accept a new file."""
    folder = Path(os.path.abspath(folder))
    nearest = None
    for p in (*reversed(folder.parents), folder):
        if not os.path.lexists(p):
            break
        if not p.is_dir():
            kind = "a broken link" if p.is_symlink() and not p.exists() else "a file"
            raise SpecError("run", flag, value, f"a writable folder, but {p} is {kind}")
        nearest = p
    if nearest is None:  # pragma: no cover - the root always exists
        raise SpecError("run", flag, value, f"a writable folder ({folder} has no existing parent)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".drt-write-check.", dir=nearest)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SpecError(
            "run",
            flag,
            value,
            f"a writable folder, but {nearest} does not accept files ({exc.strerror or exc})",
        ) from None


def check_outputs(args: argparse.Namespace, out: Path) -> None:
    """Before any job runs: ``<out>/<suite>`` (and ``<results>/<suite>`` unless ``--no-report``) can be
    written, so that a bad ``--out``/``--results`` is found now rather than after every job trained."""
    check_writable_folder("out", str(args.out), out / args.suite)
    if not args.no_report:
        check_writable_folder("results", str(args.results), Path(args.results) / args.suite)


def build_matrix(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All job specs of the command (order: seed, target, method, variant, framework) and the settings."""
    suite = args.suite
    frameworks = parse_list(args.frameworks, FRAMEWORKS, "frameworks", ("torch",))
    methods = parse_list(args.methods, ALL_METHODS, "methods", DEFAULT_METHODS)
    variants = parse_list(args.variants, VARIANTS, "variants", DEFAULT_VARIANTS)
    seeds = parse_seeds(args.seeds)
    prof = get_profile(
        suite,
        args.profile,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
    )
    domains = suite_domains(suite, args.root)
    if args.targets in (None, ""):
        targets = [t for t in (prof.default_targets or domains) if t in domains] or domains[:1]
    else:
        targets = parse_list(args.targets, domains, "targets", domains)
    check_matrix_size(frameworks, methods, variants, targets, seeds)
    user_hparams = parse_hparams(args.hparams)
    overrides = {**prof.hparams, **user_hparams}
    pretrained = resolve_pretrained(getattr(args, "pretrained", None), prof)
    root = str(Path(args.root).resolve()) if args.root else None
    if getattr(args, "launcher", "local") == "slurm" and args.device == "auto":
        # the jobs run on compute nodes, not here: decide from what the SLURM jobs ask for
        gpus = getattr(args, "slurm_gpus_per_node", None)
        devices = {fw: "cuda" if gpus else "cpu" for fw in frameworks}
    else:
        devices = {fw: resolve_device(fw, args.device) for fw in frameworks}
    backends = {fw: (keras_backend_for(devices[fw]) if fw == "keras" else None) for fw in frameworks}
    hp_cache: dict[tuple[str, str], dict[str, Any]] = {}
    specs = []
    for seed in seeds:
        for target in targets:
            for method in methods:
                if (method, target) not in hp_cache:
                    per_target = {**prof.hparams_for(target), **user_hparams}
                    hp_cache[method, target] = resolve_hparams(method, suite, per_target, args.hparams_seed)
                for variant in variants:
                    for fw in frameworks:
                        spec = build_spec(
                            framework=fw,
                            suite=suite,
                            target=target,
                            method=method,
                            variant=variant,
                            seed=seed,
                            profile=prof.job_fields(),
                            device=devices[fw],
                            backend=backends[fw],
                            root=root,
                            formulation=args.formulation,
                            hparams=hp_cache[method, target],
                        )
                        spec["hparams_overrides"] = dict(sorted(overrides.items()))
                        # variants of a seed start from the static model (harness.loop.pair_init);
                        # independent jobs carry no key, like the jobs made before pairing existed
                        if getattr(args, "init", "paired") == "paired":
                            spec["init"] = "paired"
                        if pretrained is not None:
                            spec["pretrained"] = pretrained
                        if args.hparams_seed:
                            spec["hparams_seed"] = args.hparams_seed
                        _execution_fields(spec, args)
                        specs.append(spec)
    settings = {
        "suite": suite,
        "profile": prof.to_dict(),
        "frameworks": frameworks,
        "methods": methods,
        "variants": variants,
        "targets": targets,
        "seeds": seeds,
        "devices": devices,
        "hparams_overrides": overrides,
        "pretrained": pretrained,
        "precision": getattr(args, "precision", "fp32") or "fp32",
        "loader_workers": getattr(args, "loader_workers", None),
        "out": str(args.out),
    }
    return specs, settings


def _execution_fields(spec: dict[str, Any], args: argparse.Namespace) -> None:
    """``precision`` (only when not fp32: fp32 jobs keep the ids they had before the flag existed) and
    ``loader_workers`` (only when given; an execution-only key, never part of the job id:
    :data:`harness.jobs.EXECUTION_KEYS`)."""
    precision = getattr(args, "precision", "fp32") or "fp32"
    if precision != "fp32":
        spec["precision"] = precision
    if getattr(args, "loader_workers", None) is not None:
        spec["loader_workers"] = int(args.loader_workers)


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_pretrained(value: str | None, prof: Any) -> dict[str, str] | None:
    """``--pretrained``: a weights file → ``{"path", "sha256"}`` (in the job spec: a different file is a
    different job); ``none`` → train from scratch deliberately (``None``, no spec key). A profile that
    needs a choice (``requires_pretrained``: the DomainNet paper profile) refuses to start without one."""
    if value is None:
        if prof.requires_pretrained:
            raise SpecError(
                "run",
                "pretrained",
                None,
                f"a choice for the {prof.suite} {prof.name} profile, which starts from ImageNet as the paper "
                "does: --pretrained PATH with a torchvision ResNet checkpoint (e.g. "
                "torch.save(torchvision.models.resnet101(weights=...).state_dict(), 'resnet101.pth'); "
                ".pth/.pt or a neutral .safetensors/.npz), or --pretrained none to train from scratch "
                "deliberately",
            )
        return None
    if value.lower() == "none":
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        need = "an existing weights file (.pth/.pt/.safetensors/.npz) or none"
        raise SpecError("run", "pretrained", value, need)
    return {"path": str(path), "sha256": file_sha256(path)}


# --------------------------------------------------------------------------------------------- output
def _dry_run(specs: list[dict[str, Any]], settings: dict[str, Any], out: Path, as_json: bool) -> int:
    rows = []
    for i, spec in enumerate(specs):
        jd = job_dir(out, spec)
        rows.append(
            {
                "index": i,
                "state": job_state(jd),
                "job_id": job_id(spec),
                "dir": str(jd),
                **{k: spec[k] for k in ("framework", "method", "variant", "target", "seed", "device")},
            }
        )
    counts = {s: sum(r["state"] == s for r in rows) for s in (DONE, FAILED, PARTIAL, NEW)}
    if as_json:
        print(
            json.dumps(
                {"size": len(specs), "counts": counts, "settings": settings, "jobs": rows, "specs": specs},
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
        return 0
    from tabulate import tabulate

    prof = settings["profile"]
    print(
        f"suite {settings['suite']}, profile {prof['name']}: {prof['arch']}, {prof['epochs']} epochs × "
        f"{prof['steps_per_epoch'] or 'full pass'} steps, batch {prof['batch_size']}; devices "
        f"{', '.join(f'{k}={v}' for k, v in settings['devices'].items())}"
    )
    print(
        tabulate(
            [
                [
                    r["index"],
                    r["state"],
                    r["framework"],
                    r["method"],
                    r["variant"],
                    r["target"],
                    r["seed"],
                    r["job_id"],
                ]
                for r in rows
            ],
            headers=["#", "state", "framework", "method", "variant", "target", "seed", "job id"],
            tablefmt="simple",
        )
    )
    dims = " × ".join(
        f"{len(settings[k])} {k}" for k in ("frameworks", "methods", "variants", "targets", "seeds")
    )
    print(
        f"\n{len(specs)} jobs ({dims}): {counts[DONE]} done, {counts[FAILED]} failed, "
        f"{counts[PARTIAL]} interrupted (will resume), {counts[NEW]} new. Nothing was run (--dry-run)."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("matrix")
    g.add_argument(
        "--suite",
        default="digits",
        help="data suite: digits (default, offline), digit-five, domainnet, smoke",
    )
    g.add_argument("--root", default=None, help="data root for suites read from disk (digit-five, domainnet)")
    g.add_argument("--frameworks", default="torch", help="comma list of torch, keras (default: torch)")
    g.add_argument(
        "--methods",
        default=None,
        help=f"comma list of {', '.join(ALL_METHODS)} or all (default: {','.join(DEFAULT_METHODS)})",
    )
    g.add_argument(
        "--variants",
        default=None,
        help="comma list of static, ca, sr, sr_uniform (the capacity control), comb or all "
        "(default: static,sr)",
    )
    g.add_argument(
        "--targets",
        default=None,
        help="comma list of target domains or all (default: the profile's: "
        "one target for digits quick, all otherwise)",
    )
    g.add_argument("--seeds", default="0", help="seeds: 0,1,2 or 0-4 (default: 0)")
    g.add_argument(
        "--profile",
        default="quick",
        choices=PROFILES,
        help="quick (default), paper (the paper's schedules) or study (digits: the verdict study)",
    )
    g.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    g.add_argument("--steps-per-epoch", type=int, default=None, help="override the profile's steps per epoch")
    g.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    g.add_argument(
        "--hparams",
        action="append",
        default=None,
        help="method hyperparameter overrides: JSON object or name=value (repeatable)",
    )
    g.add_argument(
        "--hparams-seed",
        type=int,
        default=0,
        help="0: the registry's defaults; N > 0: a random-search draw seeded per (N, name), DomainBed-style",
    )
    g.add_argument(
        "--formulation",
        default="kernel_merge",
        choices=("auto", "output_mix", "residual_agg", "kernel_merge"),
        help="DRT layer formulation (default kernel_merge, the fastest on CPU; all give the same function)",
    )
    g.add_argument("--device", default="auto", choices=DEVICES, help="auto (CUDA when present), cpu, cuda")
    g.add_argument(
        "--data-check",
        default="header",
        choices=DATA_CHECKS,
        help="how a data root read from disk is checked before any job starts: header (default: split files, "
        "labels, classes, counts, every image's header), full (decode every image), exists, none",
    )
    g.add_argument(
        "--loader-workers",
        type=int,
        default=None,
        metavar="N",
        help="data-loading workers per loader (0: load in the training process); default: derived from the "
        "CPUs available to each job (harness.loop.loader_workers). Never changes results nor the job id",
    )
    g.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="training precision: fp32 (default), bf16 or fp16 mixed precision (float32 weights and loss); "
        "part of the job id (fp32 jobs keep their ids)",
    )
    g.add_argument(
        "--pretrained",
        default=None,
        metavar="PATH|none",
        help="start every backbone from this static weights file (a torchvision ResNet .pth/.pt, or a "
        "neutral .safetensors/.npz; loaded strictly, its sha256 is part of the job identity), or none to "
        "train from scratch; the domainnet paper profile requires one of the two",
    )
    g.add_argument(
        "--init",
        default="paired",
        choices=("paired", "independent"),
        help="paired (default): every variant of a seed starts from the static model's weights, dropout and "
        "data order (harness.loop.pair_init); independent: each variant initialises on its own, as jobs "
        "made before pairing did (for the pilot that measures what pairing buys)",
    )
    e = p.add_argument_group("execution")
    e.add_argument("--out", default="runs", help="job directories go to <out>/<suite>/ (default: runs)")
    e.add_argument(
        "--results",
        default="results",
        help="report root: writes <results>/<suite>/README.md (default: results)",
    )
    e.add_argument(
        "--launcher",
        default="auto",
        choices=LAUNCHER_NAMES,
        help="local (sequential, in this process), parallel (process pool: one worker per GPU or CPU slot), "
        "slurm (submitit); auto (default): parallel when there are several CPU slots or GPUs for the jobs, "
        "else local",
    )
    e.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel workers (default: one per GPU for CUDA jobs, else one per CPU)",
    )
    e.add_argument("--skip-failed", action="store_true", help="do not re-run jobs that failed before")
    e.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep a finished job's checkpoint/ (weights + optimiser state); by default only its trained "
        "networks stay, in model.safetensors",
    )
    e.add_argument("--dry-run", action="store_true", help="print the job matrix and its size; run nothing")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.add_argument("--quiet", action="store_true", help="no progress bars or per-job lines")
    e.add_argument("--no-plots", action="store_true", help="write the report without PNG plots")
    e.add_argument("--no-report", action="store_true", help="do not write <results>/<suite>/README.md")
    e.add_argument(
        "--selection",
        default="auto",
        choices=("auto", "last", "source-val", "oracle"),
        help="model selection in the printed table: auto (default; source-val where every job of a setting "
        "held out a source slice, else last), last, source-val or oracle (labelled as such); the written "
        "README.md always uses auto",
    )
    s = p.add_argument_group("slurm (submitit)")
    s.add_argument(
        "--submitit-cluster",
        default=None,
        choices=("slurm", "local", "debug"),
        help="submitit executor (default: slurm when available, else local)",
    )
    s.add_argument("--slurm-partition", default=None)
    s.add_argument("--slurm-time", type=int, default=None, help="minutes per job (default 60)")
    s.add_argument("--slurm-gpus-per-node", type=int, default=None)
    s.add_argument("--slurm-cpus-per-task", type=int, default=None)
    s.add_argument("--slurm-mem-gb", type=float, default=None)
    s.add_argument("--slurm-array-parallelism", type=int, default=None)
    return p


def pick_launcher(requested: str, n_jobs: int, use_gpus: bool) -> str:
    """``auto`` → ``parallel`` when more than one job can run at once (several GPUs for CUDA jobs, several CPU
    cores for CPU jobs: single-threaded workers beat one multi-threaded process on small convnets), else
    ``local``."""
    if requested != "auto":
        return requested
    from harness.launchers import visible_gpus

    slots = len(visible_gpus()) if use_gpus else (os.cpu_count() or 1)
    return "parallel" if slots > 1 and n_jobs > 1 else "local"


def _make_launcher(args: argparse.Namespace, out: Path, use_gpus: bool, name: str) -> Any:
    from harness.launchers import make_launcher

    return make_launcher(
        name,
        workers=args.workers,
        use_gpus=use_gpus,
        folder=out / ".submitit",
        cluster=args.submitit_cluster,
        timeout_min=args.slurm_time,
        slurm_partition=args.slurm_partition,
        gpus_per_node=args.slurm_gpus_per_node,
        cpus_per_task=args.slurm_cpus_per_task,
        mem_gb=args.slurm_mem_gb,
        slurm_array_parallelism=args.slurm_array_parallelism,
    )


def run(args: argparse.Namespace) -> int:
    """Build the matrix, run it with the chosen launcher, print the table and write the report."""
    out = Path(args.out)
    check_args(args)
    specs, settings = build_matrix(args)
    if args.dry_run:
        return _dry_run(specs, settings, out, args.json)
    check_outputs(args, out)
    check_data(args.suite, args.root, args.data_check)
    for fw in settings["frameworks"]:
        from harness.frameworks import available

        if not available(fw) and f"DRT_TRAINER_{fw.upper()}" not in os.environ:
            from harness.errors import FrameworkMissing

            raise FrameworkMissing(fw)
    show = not (args.quiet or args.json)
    states = [job_state(job_dir(out, s)) for s in specs]
    n_done = sum(s == DONE for s in states)
    n_failed = sum(s == FAILED for s in states)
    skip = [st == DONE or (st == FAILED and args.skip_failed) for st in states]
    if show:
        print(
            f"{len(specs)} jobs in {out / args.suite}: {n_done} already done (skipped)"
            + (
                f", {n_failed} failed before ({'skipped' if args.skip_failed else 're-run'})"
                if n_failed
                else ""
            )
            + f", {sum(s == PARTIAL for s in states)} interrupted (resume)"
            + f", {sum(not k for k in skip)} to run.",
            flush=True,
        )
        if n_done and n_done <= 20:
            for spec, st in zip(specs, states):
                if st == DONE:
                    print(f"  skip (done): {job_dir(out, spec).name}")
    tasks = [
        JobTask(
            spec=s,
            job_dir=str(job_dir(out, s)),
            trainer=trainer_for(s["framework"]),
            progress=show and args.launcher != "slurm",
            position=1,
            retry_failed=not args.skip_failed,
            keep_checkpoints=args.keep_checkpoints,
        )
        for s, k in zip(specs, skip)
        if not k
    ]
    use_gpus = any(s["device"].startswith("cuda") for s in specs)
    launcher = _make_launcher(args, out, use_gpus, pick_launcher(args.launcher, len(tasks), use_gpus))
    t0 = time.time()
    summaries: list[dict[str, Any]] = []
    bar = None
    if show and tasks:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(tasks),
            desc=f"{args.suite} ({launcher.name})",
            unit="job",
            position=0,
            dynamic_ncols=True,
        )

    def on_result(res: dict[str, Any]) -> None:
        summaries.append(res)
        if bar is not None:
            acc = res.get("target_acc")
            msg = (
                f"{res.get('status')}: {res.get('name')}"
                + (f"  target {100 * acc:.1f}%" if isinstance(acc, int | float) else "")
                + (f"  [{res.get('error')}]" if res.get("status") == FAILED else "")
            )
            bar.write(msg)
            bar.update(1)

    try:
        if tasks:
            launcher.run(tasks, on_result)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("\ninterrupted: finished jobs are kept; run the same command again to resume.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    wall = time.time() - t0
    return _finish(args, out, specs, summaries, wall, show)


def _finish(
    args: argparse.Namespace,
    out: Path,
    specs: list[dict[str, Any]],
    summaries: list[dict[str, Any]],
    wall: float,
    show: bool,
) -> int:
    from harness import report
    from harness.store import collect, record_from_dir

    mine = _records(out, specs, summaries, record_from_dir)
    failed = [r for r in mine if r.get("status") == FAILED]
    path = None
    report_error = None
    if not args.no_report:
        try:
            path = report.write_report(
                collect(out / args.suite, args.suite),
                args.suite,
                args.results,
                selection="auto",
                plots=not args.no_plots,
            )
        except OSError as exc:  # the jobs are kept; `python -m harness.report` rebuilds it from them
            report_error = (
                f"run.results = {str(args.results)!r}: cannot write the report "
                f"({exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}); the jobs are kept: "
                f"python -m harness.report --results {out} --suite {args.suite} --out FOLDER writes it"
            )
    if args.json:
        print(
            json.dumps(
                {
                    "wall_time_s": round(wall, 2),
                    "jobs": summaries,
                    "report": str(path) if path else None,
                    "records": [
                        {
                            k: r.get(k)
                            for k in (
                                "name",
                                "status",
                                "framework",
                                "method",
                                "variant",
                                "target",
                                "seed",
                                "target_acc",
                                "source_acc",
                                "wall_time_s",
                                "error",
                            )
                        }
                        for r in mine
                    ],
                },
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
    else:
        groups = report.groups_of(mine, args.suite, args.selection)
        print()
        for g in groups:
            print(report.render_group(g, level=2))
            print()
        print(
            f"{len(summaries)} jobs ran in {wall / 60:.1f} min; {len(failed)} of {len(mine)} jobs failed."
            + (f" Report: {path}" if path else "")
        )
        for r in failed:
            log = Path(str(r.get("job_dir"))) / "log.txt"
            print(
                f"  FAILED {r.get('name')}: {(str(r.get('error')).strip().splitlines() or [''])[-1]}"
                + (f"; log: {log}" if r.get("job_dir") and _is_file(log) else "")
            )
    if report_error:
        print(f"error: {report_error}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


_RECORD_KEYS = ("framework", "suite", "target", "method", "variant", "seed", "device", "profile")


def _records(
    out: Path, specs: list[dict[str, Any]], summaries: list[dict[str, Any]], record_from_dir: Any
) -> list[dict[str, Any]]:
    """The records of this command's jobs, read from their directories; a job this run failed whose
    directory holds no record of that failure (its directory or result.json could not be written) gets one
    built from its summary, so the failure is counted and reported."""
    by_dir = {str(r.get("job_dir")): r for r in summaries}
    mine = []
    for spec in specs:
        jd = job_dir(out, spec)
        rec = record_from_dir(jd)
        res = by_dir.get(str(jd))
        if res is not None and res.get("status") == FAILED and (rec is None or rec.get("status") != FAILED):
            rec = {
                "status": FAILED,
                "job_id": job_id(spec),
                "name": jd.name,
                "spec": spec,
                **{k: spec.get(k) for k in _RECORD_KEYS},
                "error": res.get("error"),
                "job_dir": str(jd),
                "history": [],
            }
        elif res is not None and res.get("status") == FAILED and res.get("error"):
            rec = {**rec, "error": res.get("error")}
        if rec is not None:
            mine.append(rec)
    return mine


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: returns 0 (all done), 1 (some job failed), 2 (bad arguments or data), 130
    (interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DrtBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
