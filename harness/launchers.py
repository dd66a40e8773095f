"""Launchers: where the jobs of a run matrix execute. No home-made scheduler.

* ``local`` — sequential, in this process (progress bars: overall + per job).
* ``parallel`` — ``concurrent.futures.ProcessPoolExecutor`` (spawned processes): one worker per GPU
  (``CUDA_VISIBLE_DEVICES`` pinned per worker) when the jobs use CUDA, else one per CPU slot, with the CPU
  threads split evenly between workers (``OMP_NUM_THREADS`` etc.).
* ``slurm`` — ``submitit`` (``AutoExecutor``): one SLURM job per run job, submitted as one array.
  ``cluster="local"`` uses submitit's ``LocalExecutor`` (each job a local subprocess; CI tests this path),
  ``"debug"`` runs in-process. Timed-out / pre-empted jobs are checkpointed and requeued by submitit; the
  requeued job resumes from the trainer's checkpoint.

Every launcher calls :func:`harness.jobs.run_task` for each :class:`harness.jobs.JobTask` and hands each
summary to ``on_result`` as soon as it is known; a failing job never stops the others.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from harness.jobs import FAILED, JobTask, job_id, run_task

LAUNCHERS: tuple[str, ...] = ("local", "parallel", "slurm")
OnResult = Callable[[dict[str, Any]], None]


def _crash_summary(task: JobTask, exc: BaseException, what: str = "worker crashed") -> dict[str, Any]:
    """Summary for a job whose *worker* died, or whose runner raised (the job's own result.json may be
    missing: it will resume)."""
    return {
        "job_id": job_id(task.spec),
        "name": Path(task.job_dir).name,
        "job_dir": task.job_dir,
        "status": FAILED,
        "error": f"{what}: {type(exc).__name__}: {exc}",
    }


class LocalLauncher:
    """Run the jobs one after another in this process."""

    name = "local"

    def run(self, tasks: Sequence[JobTask], on_result: OnResult) -> list[dict[str, Any]]:
        """Run every task; return the summaries in task order."""
        out = []
        for task in tasks:
            try:
                res = run_task(task)
            except Exception as exc:  # noqa: BLE001 - an unforeseen error fails its job only, as in a worker
                res = _crash_summary(task, exc, "the job runner failed")
            on_result(res)
            out.append(res)
        return out


# ---------------------------------------------------------------------------------------- parallel
_SLOT = 0
_GPU_ENV = ("CUDA_VISIBLE_DEVICES",)
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def _init_worker(counter: Any, threads: int, gpus: list[str], lock: Any) -> None:
    """Worker initializer: take a slot number, pin a GPU (if any), split CPU threads, share tqdm's lock."""
    global _SLOT
    with counter.get_lock():
        _SLOT = counter.value
        counter.value += 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[_SLOT % len(gpus)]
    for var in _THREAD_ENV:
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    if lock is not None:
        from tqdm import tqdm

        tqdm.set_lock(lock)


def _terminate_workers(pool: ProcessPoolExecutor, grace: float = 5.0) -> None:
    """Stop the pool's worker processes: SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        try:
            proc.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5.0)


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _stop_on_sigterm() -> Any:
    """While the pool runs, SIGTERM raises ``SystemExit`` in the main thread, so that the running jobs are
    stopped too (a killed parent would otherwise leave its workers training until their job ends). Returns
    the previous handler (None when not in the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_exit)


def _worker_run(task: JobTask) -> dict[str, Any]:
    """Run one task in a worker, drawing its per-job bar on the worker's own line."""
    return run_task(dataclasses.replace(task, position=_SLOT + 1))


def visible_gpus() -> list[str]:
    """GPU ids visible to this process (from CUDA_VISIBLE_DEVICES or nvidia-smi), without importing torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in (x.strip() for x in env.split(",")) if g and g != "-1"]
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class ParallelLauncher:
    """A process pool: one worker per GPU (CUDA jobs) or per CPU slot; ``workers`` overrides the count."""

    name = "parallel"

    def __init__(self, workers: int | None = None, *, use_gpus: bool = False) -> None:
        if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
            raise ValueError(f"workers = {workers!r}: expected a positive integer (or None: the default)")
        self.gpus = visible_gpus() if use_gpus else []
        cpus = os.cpu_count() or 1
        default = len(self.gpus) if self.gpus else cpus
        self.workers = max(1, int(workers if workers is not None else default))
        self.threads = max(1, cpus // self.workers)

    def run(self, tasks: Sequence[JobTask], on_result: OnResult) -> list[dict[str, Any]]:
        """Run every task in the pool; return the summaries in task order."""
        if not tasks:
            return []
        ctx = mp.get_context("spawn")  # never fork a process that may hold torch/TF threads
        counter = ctx.Value("i", 0)
        lock = ctx.RLock() if any(t.progress for t in tasks) else None
        results: dict[int, dict[str, Any]] = {}
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(counter, self.threads, self.gpus, lock),
        )
        old_term = _stop_on_sigterm()
        try:
            futures: dict[Future, int] = {pool.submit(_worker_run, t): i for i, t in enumerate(tasks)}
            pending = set(futures)
            while pending:
                # a timeout, so that the main thread wakes up to handle a signal while jobs run
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = futures[fut]
                    try:
                        res = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a dead worker fails its job only
                        res = _crash_summary(tasks[i], exc)
                    results[i] = res
                    on_result(res)
        except BaseException:
            # Ctrl-C (a SIGINT sent to this process alone does not reach the workers) or an error here: stop
            # the running jobs too (SIGTERM, then SIGKILL after a grace period) and do not wait for them in
            # the pool's shutdown; their checkpoints are written atomically, so a re-run resumes them.
            _terminate_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        pool.shutdown(wait=True)
        return [results[i] for i in range(len(tasks))]


# ---------------------------------------------------------------------------------------- submitit
class SubmititTask:
    """The callable submitit pickles: runs one job; on timeout/pre-emption submitit calls :meth:`checkpoint`,
    which resubmits the same task (the trainer then resumes from its ``checkpoint/``)."""

    def __call__(self, task: JobTask) -> dict[str, Any]:
        return run_task(dataclasses.replace(task, progress=False))

    def checkpoint(self, task: JobTask) -> Any:
        """Requeue the same job (duck-typed submitit checkpoint hook)."""
        import submitit

        return submitit.helpers.DelayedSubmission(SubmititTask(), task)


class SlurmLauncher:
    """Submit every job through ``submitit.AutoExecutor`` and wait for them.

    ``cluster``: ``None`` (auto-detect: SLURM if available, else local), ``"slurm"``, ``"local"`` or
    ``"debug"``. ``parameters`` go to ``executor.update_parameters`` (e.g. ``timeout_min``,
    ``slurm_partition``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``, ``slurm_array_parallelism``).
    """

    name = "slurm"

    def __init__(
        self, folder: Path | str, *, cluster: str | None = None, poll_s: float = 2.0, **parameters: Any
    ) -> None:
        self.folder = Path(folder)
        self.cluster = cluster
        self.poll_s = poll_s
        self.parameters = {k: v for k, v in parameters.items() if v is not None}

    def run(self, tasks: Sequence[JobTask], on_result: OnResult) -> list[dict[str, Any]]:
        """Submit all tasks as one array, then collect the summaries as jobs finish (in task order)."""
        if not tasks:
            return []
        import submitit

        executor = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.cluster)
        params = {"name": "drt-bench", "timeout_min": 60, **self.parameters}
        if executor.cluster != "slurm":
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        jobs = []
        with executor.batch():
            for task in tasks:
                jobs.append(executor.submit(SubmititTask(), dataclasses.replace(task, progress=False)))
        index = {id(j): i for i, j in enumerate(jobs)}
        results: dict[int, dict[str, Any]] = {}
        try:
            for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_s):
                i = index[id(job)]
                try:
                    res = job.result()
                except Exception as exc:  # noqa: BLE001 - a failed SLURM job fails its run job only
                    res = _crash_summary(tasks[i], exc)
                    res["submitit_job_id"] = job.job_id
                results[i] = res
                on_result(res)
        except KeyboardInterrupt:
            for job in jobs:
                if not job.done():
                    job.cancel(check=False)
            raise
        return [results[i] for i in range(len(tasks))]


def make_launcher(
    name: str,
    *,
    workers: int | None = None,
    use_gpus: bool = False,
    folder: Path | str = "runs/.submitit",
    cluster: str | None = None,
    **slurm: Any,
) -> LocalLauncher | ParallelLauncher | SlurmLauncher:
    """Build the launcher ``name`` (one of :data:`LAUNCHERS`)."""
    if name == "local":
        return LocalLauncher()
    if name == "parallel":
        return ParallelLauncher(workers, use_gpus=use_gpus)
    if name == "slurm":
        return SlurmLauncher(folder, cluster=cluster, **slurm)
    raise ValueError(f"unknown launcher {name!r}: expected one of {', '.join(LAUNCHERS)}")
