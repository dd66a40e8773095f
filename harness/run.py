"""``python -m harness.run``: run a matrix of jobs (frameworks × methods × variants × targets × seeds).

With no arguments: the offline ``digits`` suite, ``quick`` profile, the five baselines (source-only, DANN,
ADDA, MCD in the one-step form the paper's MCD rows use, M3SDA-β) × {static, DRT (sr)} on one target
(mnistm), torch, on the local machine; prints the table (target and source accuracy) and writes
``results/digits/README.md``.

Each job is identified by a hash of its fully resolved spec (:mod:`harness.jobs`), so re-running a command
skips the finished jobs and resumes interrupted ones from their checkpoint; a failed job (exception, NaN) is
recorded with its error and the others go on. ``--dry-run`` prints the matrix and its size, running nothing.

Trainer hook: the function that trains one job is looked up in :data:`TRAINERS` (framework →
``"module:function"``, the contract ``run_job(job, job_dir, *, on_epoch=None, on_step=None) -> dict`` of
``docs/architecture.md``). The environment variable ``DRT_TRAINER_<FRAMEWORK>`` (e.g.
``DRT_TRAINER_TORCH=mypkg.fake:run_job``) overrides an entry; it reaches worker processes and SLURM jobs
too, which is how the tests inject a fake trainer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import data as hdata
from harness import hparams as H
from harness import method_table
from harness.errors import DataError, DrtBenchError, SpecError
from harness.jobs import DONE, FAILED, NEW, PARTIAL, JobTask, build_spec, job_dir, job_id, job_state
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


def parse_seeds(text: str | None) -> list[int]:
    """``"0,1,2"``, ``"0-4"`` or a mix; default ``[0]``."""
    out: list[int] = []
    for item in _split(text) or ["0"]:
        try:
            if "-" in item[1:]:
                lo, hi = item.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(item))
        except ValueError:
            raise SpecError("run", "seeds", item, "integers, e.g. 0,1,2 or 0-4") from None
    if any(s < 0 for s in out):
        raise SpecError("run", "seeds", text, "non-negative integers")
    return list(dict.fromkeys(out))


def suite_domains(suite: str, root: str | None) -> list[str]:
    """The suite's domains from the data layer (which raises a DrtBenchError for a missing data root)."""
    doms = hdata.get_suite(suite, root=root).domains
    if not doms:
        raise DrtBenchError(f"suite {suite!r}: the data layer gives no domain list")
    return [str(d) for d in doms]


def check_data(suite: str, root: str | None) -> None:
    """Validate a data root read from disk (``digit-five``, ``domainnet``) before any job starts.

    Generated suites (``digits``, ``smoke``) are built on first use by the trainer and need no check.
    """
    if suite not in ("digit-five", "domainnet"):
        return
    report = hdata.get_suite(suite, root=root).check(full=False)
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
    overrides = {**prof.hparams, **parse_hparams(args.hparams)}
    root = str(Path(args.root).resolve()) if args.root else None
    if getattr(args, "launcher", "local") == "slurm" and args.device == "auto":
        # the jobs run on compute nodes, not here: decide from what the SLURM jobs ask for
        gpus = getattr(args, "slurm_gpus_per_node", None)
        devices = {fw: "cuda" if gpus else "cpu" for fw in frameworks}
    else:
        devices = {fw: resolve_device(fw, args.device) for fw in frameworks}
    backends = {fw: (keras_backend_for(devices[fw]) if fw == "keras" else None) for fw in frameworks}
    hp_cache: dict[str, dict[str, Any]] = {}
    specs = []
    for seed in seeds:
        for target in targets:
            for method in methods:
                if method not in hp_cache:
                    hp_cache[method] = resolve_hparams(method, suite, overrides, args.hparams_seed)
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
                            hparams=hp_cache[method],
                        )
                        spec["hparams_overrides"] = dict(sorted(overrides.items()))
                        if args.hparams_seed:
                            spec["hparams_seed"] = args.hparams_seed
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
        "out": str(args.out),
    }
    return specs, settings


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
        "--variants", default=None, help="comma list of static, ca, sr, comb or all (default: static,sr)"
    )
    g.add_argument(
        "--targets",
        default=None,
        help="comma list of target domains or all (default: the profile's: "
        "one target for digits quick, all otherwise)",
    )
    g.add_argument("--seeds", default="0", help="seeds: 0,1,2 or 0-4 (default: 0)")
    g.add_argument("--profile", default="quick", choices=PROFILES, help="quick (default) or paper schedules")
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
        default="last",
        choices=("last", "oracle"),
        help="model selection in the printed table (oracle is labelled as such)",
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
    specs, settings = build_matrix(args)
    if args.dry_run:
        return _dry_run(specs, settings, out, args.json)
    check_data(args.suite, args.root)
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

    mine = [r for r in (record_from_dir(job_dir(out, s)) for s in specs) if r is not None]
    failed = [r for r in mine if r.get("status") == FAILED]
    path = None
    if not args.no_report:
        path = report.write_report(
            collect(out / args.suite, args.suite),
            args.suite,
            args.results,
            selection="last",
            plots=not args.no_plots,
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
            print(
                f"  FAILED {r.get('name')}: {(str(r.get('error')).strip().splitlines() or [''])[-1]}; "
                f"log: {Path(str(r.get('job_dir'))) / 'log.txt'}"
            )
    return 1 if failed else 0


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
