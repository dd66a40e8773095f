"""Jobs: resolved specs, identities, job directories, and running one job safely.

A *job* is one training run: one framework × suite × target × method × variant × seed under a profile.
Its **spec** is a fully resolved, JSON-ready dict (every default filled in); its **identity** is
``sha256(canonical JSON of the spec less its execution-only keys)[:16]`` (keys sorted, no whitespace), as
DomainBed names its sweep directories by a hash of the arguments. The same command therefore maps to the
same directories, which is what makes a run matrix resumable.

*Execution-only* keys (:data:`EXECUTION_KEYS`, e.g. ``loader_workers``) say how a job is executed, not what
it computes: the trainer must give bit-identical results for every value, so they are left out of the
identity (:func:`identity_fields`). They stay in the spec handed to the trainer and in ``result.json``'s
``spec``; a job resumed with another value keeps its directory and id. A key that changes results
(``precision``) is part of the identity; its default (``fp32``) is written as an *absent* key so that jobs
made before it existed keep their ids (the same rule as ``init`` and ``route``).

Job directory ``<out>/<suite>/<name>`` (``name = fw_method_variant_target_s<seed>_<hash>``)::

    spec.json        the resolved spec (written atomically, first)
    metrics.jsonl    one JSON record per finished epoch (rewritten atomically on every epoch)
    checkpoint/      written by the trainer at each epoch end; the trainer resumes from it
    coefficients.npz optional, DRT jobs: dynamic coefficients for the t-SNE plot (docs/architecture.md)
    log.txt          everything the job printed, plus start/end/traceback lines (appended across attempts)
    result.json      the final record, written atomically (tmp + os.replace) when the job ends:
                     ``status`` is ``"done"`` or ``"failed"`` (with ``error`` and ``traceback``)
    .lock            an flock held while a process works on the job (released by the OS if it dies)

A job with ``result.json`` status ``done`` is finished and skipped; a ``failed`` one is run again (unless the
caller skips failed jobs); a directory without ``result.json`` is an interrupted job and resumes from its
checkpoint. No file is ever left half-written: every write is tmp-file + ``os.replace``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import functools
import hashlib
import importlib
import inspect
import io
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from harness import atomic
from harness.errors import JobIOError
from harness.provenance import hardware, library_versions

SCHEMA = 1
DONE, FAILED, PARTIAL, NEW, RUNNING = "done", "failed", "partial", "new", "running"

#: Keys every resolved spec has (docs/architecture.md, Training). Extra keys are allowed.
SPEC_KEYS: tuple[str, ...] = (
    "framework",
    "backend",
    "suite",
    "root",
    "target",
    "method",
    "variant",
    "arch",
    "formulation",
    "seed",
    "profile",
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "data",
    "hparams",
    "device",
    "selection",
)


#: Spec keys that change how a job runs but never what it computes (left out of :func:`job_id`):
#: ``loader_workers`` (data-loading workers; the batch stream is identical for every count).
EXECUTION_KEYS: frozenset[str] = frozenset({"loader_workers"})
#: Training precisions (``precision`` spec key; absent = ``fp32``): ``bf16``/``fp16`` are mixed precision
#: (float32 weights, optimiser and loss; networks compute in the low-precision type).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


class JobFailed(RuntimeError):
    """Raised inside a job for a failure the runner detects itself (e.g. a NaN loss)."""


# --------------------------------------------------------------------------------------------- identity
def canonical_json(obj: Any) -> str:
    """Sorted-key, whitespace-free JSON: the text a job's identity is hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set | frozenset):
        return sorted(obj) if isinstance(obj, set | frozenset) else list(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON-serialisable in a job spec: {obj!r} ({type(obj).__name__})")


def identity_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of ``spec`` its identity is hashed from: every key but the :data:`EXECUTION_KEYS`."""
    return {k: v for k, v in spec.items() if k not in EXECUTION_KEYS}


def job_id(spec: dict[str, Any]) -> str:
    """The job's identity: the first 16 hex digits of sha256 over :func:`canonical_json` of
    :func:`identity_fields` of the spec (a spec without execution-only keys: of the whole spec)."""
    return hashlib.sha256(canonical_json(identity_fields(spec)).encode()).hexdigest()[:16]


def job_name(spec: dict[str, Any]) -> str:
    """Readable, unique directory name: ``fw_method_variant_target_s<seed>_<id[:10]>``."""
    parts = [spec["framework"], spec["method"], spec["variant"], spec["target"], f"s{spec['seed']}"]
    safe = "_".join(str(p).replace("/", "-").replace(" ", "-") for p in parts)
    return f"{safe}_{job_id(spec)[:10]}"


def job_dir(out: Path | str, spec: dict[str, Any]) -> Path:
    """``<out>/<suite>/<job_name>``."""
    return Path(out) / str(spec["suite"]) / job_name(spec)


def build_spec(
    *,
    framework: str,
    suite: str,
    target: str,
    method: str,
    variant: str,
    seed: int,
    profile: dict[str, Any],
    device: str,
    backend: str | None = None,
    root: str | None = None,
    formulation: str = "auto",
    hparams: dict[str, Any] | None = None,
    selection: str = "last",
) -> dict[str, Any]:
    """Assemble a fully resolved spec (see :data:`SPEC_KEYS`); ``profile`` is ``Profile.job_fields()``.

    ``hparams`` must already be resolved (defaults + overrides) by the caller so the identity covers them.
    """
    spec: dict[str, Any] = {
        "framework": framework,
        "backend": backend if framework == "keras" else None,
        "suite": suite,
        "root": None if root is None else str(root),
        "target": target,
        "method": method,
        "variant": variant,
        "formulation": formulation,
        "seed": int(seed),
        "hparams": dict(sorted((hparams or {}).items())),
        "device": device,
        "selection": selection,
    }
    spec.update(profile)
    json.loads(canonical_json(spec))  # fail early on anything non-JSON (or NaN)
    return spec


# --------------------------------------------------------------------------------------------- files
#: The trained networks of a finished job, neutral format (torch ``state_dict`` names of every network of the
#: method, e.g. ``features.*``, ``head.*``; float as trained), written by both trainers.
FINAL_WEIGHTS = "model.safetensors"


def save_final_weights(
    job_dir: Path | str, arrays: dict[str, Any], model_spec: Any, method: str, framework: str
) -> Path:
    """Write ``job_dir/model.safetensors`` atomically, with the model spec (``python -m harness.weights``
    reads it), the method and the framework as metadata."""
    from harness.weights import neutral

    meta = {"model_spec": model_spec.to_json(), "method": method, "framework": framework}
    return neutral.save(Path(job_dir) / FINAL_WEIGHTS, arrays, meta, atomic=True)


@dataclass(frozen=True)
class JobPaths:
    """The files of one job directory."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def coefficients(self) -> Path:
        return self.root / "coefficients.npz"

    @property
    def weights(self) -> Path:
        return self.root / FINAL_WEIGHTS

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN/inf become null, see :func:`clean_floats`)."""
    atomic.write_text(
        path, json.dumps(clean_floats(obj), indent=2, sort_keys=True, default=_json_default) + "\n"
    )


def clean_floats(obj: Any) -> Any:
    """Replace NaN/inf floats by None recursively (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_floats(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):
        try:
            return clean_floats(obj.item())
        except (TypeError, ValueError):
            return obj
    return obj


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when absent or unreadable (a corrupt file counts as absent)."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Per-epoch records of ``metrics.jsonl``; undecodable lines are dropped (never raises on bad content)."""
    out: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Add one epoch record; earlier records with ``epoch >= record['epoch']`` (a resumed, re-run epoch) are
    replaced. The whole file is rewritten atomically, so it is never left with a partial line."""
    records = read_metrics(path)
    ep = record.get("epoch")
    if isinstance(ep, int | float):
        records = [r for r in records if not (isinstance(r.get("epoch"), int | float) and r["epoch"] >= ep)]
    records.append(clean_floats(record))
    atomic.write_text(
        path, "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in records)
    )


def job_state(path: Path | str) -> str:
    """``done`` / ``failed`` (from result.json), ``partial`` (started, no result), or ``new`` (also for a path
    that cannot be read: running the job then fails it with the reason)."""
    p = JobPaths(Path(path))
    res = read_json(p.result)
    if res is not None and res.get("status") in (DONE, FAILED):
        return str(res["status"])
    try:
        started = p.spec.exists()
    except OSError:
        started = False
    return PARTIAL if started else NEW


def _why(exc: OSError) -> str:
    """The reason of an OSError in words (``strerror``), without the repeated file name."""
    return exc.strerror or str(exc) or type(exc).__name__


@contextlib.contextmanager
def _io_step(what: str, path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` in the block into a :class:`JobIOError` ``cannot <what> <path>: <reason>``."""
    try:
        yield
    except OSError as exc:
        raise JobIOError(f"cannot {what} {path}: {_why(exc)}") from exc


def _make_job_dir(path: Path) -> None:
    """Create the job directory (and its parents); a clear :class:`JobIOError` when that is impossible."""
    for p in (*reversed(path.parents), path):
        if os.path.lexists(p) and not p.is_dir():
            kind = "a broken link" if p.is_symlink() and not p.exists() else "a file, not a folder"
            where = "it" if p == path else str(p)
            raise JobIOError(f"cannot create the job directory {path}: {where} is {kind}")
    with _io_step("create the job directory", path):
        path.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def job_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive, non-blocking flock on ``path/.lock``; yields False when another process holds it.

    Creates ``path``. Raises :class:`JobIOError` (naming the path and the reason) when the directory or its
    lock file cannot be created or locked."""
    _make_job_dir(path)
    with _io_step("create the lock file", JobPaths(path).lock):
        fh = open(JobPaths(path).lock, "a+")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JobIOError(f"cannot lock {JobPaths(path).lock}: {_why(exc)}") from exc
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


# --------------------------------------------------------------------------------------------- provenance
def git_commit(cwd: Path | str | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding this package (cached per
    process: a run does not change its own commit)."""
    return dict(_git_commit(str(Path(cwd).resolve()) if cwd else str(Path(__file__).resolve().parent.parent)))


@functools.lru_cache(maxsize=8)
def _git_commit(cwd: str) -> dict[str, Any]:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            != ""
        )
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(spec: dict[str, Any]) -> dict[str, Any]:
    """Commit, versions, host and hardware for a result record."""
    return {
        "git": git_commit(),
        "versions": library_versions(spec.get("framework")),
        "hostname": socket.gethostname(),
        "hardware": hardware(spec.get("device")),
        "platform": platform.platform(),
        "keras_backend": spec.get("backend")
        or (os.environ.get("KERAS_BACKEND") if spec.get("framework") == "keras" else None),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


# --------------------------------------------------------------------------------------------- records
def find_nonfinite(record: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of NaN/inf floats in a (nested) record."""
    bad: list[str] = []
    for k, v in record.items():
        name = f"{prefix}{k}"
        if isinstance(v, float) and not math.isfinite(v):
            bad.append(name)
        elif isinstance(v, dict):
            bad.extend(find_nonfinite(v, name + "."))
        elif hasattr(v, "item") and not isinstance(v, str | bytes):
            try:
                f = float(v.item())
            except (TypeError, ValueError):
                continue
            if not math.isfinite(f):
                bad.append(name)
    return bad


def summarize(final: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers the report needs, from the trainer's final record and the per-epoch history.

    ``target_acc``/``source_acc``: last epoch. ``source_val_target_acc``/``source_val_source_acc``/
    ``source_val_step``: the evaluation with the best accuracy on the held-out source slice (no target label
    used; only for jobs that held one out). ``oracle_target_acc`` and ``oracle_epoch``: the best *target test*
    accuracy over epochs — an oracle that peeks at test labels, reported only when asked for and always
    labelled as such.
    """
    out: dict[str, Any] = {k: final.get(k) for k in ("target_acc", "source_acc")}
    last = history[-1] if history else {}
    for k in ("target_acc", "source_acc"):
        if out[k] is None:
            out[k] = last.get(k)
    out["epochs_done"] = final.get("epoch") or last.get("epoch") or len(history) or None
    accs = [(r.get("target_acc"), r.get("epoch")) for r in history]
    accs = [(a, e) for a, e in accs if isinstance(a, int | float)]
    if accs:
        best_acc, best_ep = max(accs, key=lambda t: t[0])
        out["oracle_target_acc"], out["oracle_epoch"] = best_acc, best_ep
    else:
        out["oracle_target_acc"] = final.get("best_target_acc")
        out["oracle_epoch"] = final.get("best_epoch")
    # the label-free selection on the held-out source slice (harness.loop.select), when the job held one out
    picked = (final.get("selection") or {}).get("source-val")
    if isinstance(picked, dict):
        out["source_val_target_acc"] = picked.get("target_acc")
        out["source_val_source_acc"] = picked.get("source_acc")
        out["source_val_step"] = picked.get("step")
    return out


# --------------------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class JobTask:
    """Everything a worker needs to run one job (picklable: plain data only)."""

    spec: dict[str, Any]
    job_dir: str
    trainer: str  # "package.module:function"
    progress: bool = False
    position: int = 1  # tqdm line for the per-job bar
    retry_failed: bool = True
    keep_checkpoints: bool = False  # False: a job that finished drops checkpoint/ (model.safetensors stays)


def load_trainer(path: str) -> Callable[..., dict[str, Any]]:
    """Import ``"package.module:function"`` and return the function."""
    if ":" not in path:
        raise ValueError(f"trainer path {path!r} must look like 'package.module:function'")
    mod_name, fn_name = path.split(":", 1)
    module = importlib.import_module(mod_name)
    try:
        return getattr(module, fn_name)
    except AttributeError as exc:
        raise ImportError(f"{mod_name} has no attribute {fn_name!r} (trainer {path!r})") from exc


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class _Tee(io.TextIOBase):
    """A text stream that writes to the job log (and nowhere else) while the job runs.

    It is installed as ``sys.stdout``/``sys.stderr`` for the trainer, so libraries may keep a reference to it
    past the job (absl's logging handler, created by TensorFlow, does, and closes it at interpreter exit). It
    is therefore a complete text stream: ``close()`` only flushes (the log belongs to the runner),
    ``fileno()`` raises :class:`io.UnsupportedOperation`, and once the job's log is closed, text still
    written to it goes to ``fallback`` (the stream it replaced), or nowhere."""

    def __init__(self, fh: TextIO, fallback: TextIO | None = None) -> None:
        super().__init__()
        self._fh = fh
        self._fallback = fallback

    def _target(self) -> TextIO | None:
        if not self._fh.closed:
            return self._fh
        fb = self._fallback
        return fb if fb is not None and not getattr(fb, "closed", False) else None

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._fh, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._fh, "errors", None)

    @property
    def newlines(self) -> None:  # type: ignore[override]
        return None

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return False  # never closed by its users: see close()

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("the job log stream has no file descriptor")

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        target = self._target()
        if target is not None:
            target.write(s)
        return len(s)

    def writelines(self, lines: Any) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        target = self._target()
        if target is not None:
            with contextlib.suppress(OSError, ValueError):
                target.flush()

    def close(self) -> None:
        """Flush only: the job log is closed by the runner, the fallback stream by its owner."""
        self.flush()


def _prepare_framework(spec: dict[str, Any]) -> None:
    """Process setup before the trainer is imported: Keras backend, torch-before-TF import order."""
    if spec.get("framework") == "keras" and spec.get("backend"):
        os.environ["KERAS_BACKEND"] = str(spec["backend"])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if spec.get("framework") == "keras":  # torch must be imported before TensorFlow (segfault otherwise)
        from harness.frameworks import prepare_process

        prepare_process()


def run_task(task: JobTask) -> dict[str, Any]:
    """Run one job to completion in this process and return a short summary; never raises for job errors.

    Skips a finished job (``status: skipped``), and a job another live process holds (``status: busy``).
    A failed job's ``result.json`` has ``status: failed``, ``error`` and ``traceback``; the caller goes on.
    """
    jdir = Path(task.job_dir)
    paths = JobPaths(jdir)
    spec = task.spec
    jid = job_id(spec)
    base = {"job_id": jid, "name": jdir.name, "job_dir": str(jdir)}
    state = job_state(jdir)
    if state == DONE or (state == FAILED and not task.retry_failed):
        return {**base, **_short(read_json(paths.result) or {}), "status": "skipped", "previous": state}
    started = _now()
    try:
        with job_lock(jdir) as locked:
            if not locked:
                return {**base, "status": "busy"}
            existing = read_json(paths.spec)
            if existing is not None and job_id(existing) != jid:
                return {
                    **base,
                    "status": FAILED,
                    "error": f"{paths.spec} holds another spec (id {job_id(existing)}); refusing to mix jobs",
                }
            if existing is None:
                with _io_step("write", paths.spec):
                    atomic_write_json(paths.spec, spec)
            record = _run_locked(task, paths, spec, jid, resumed=state in (PARTIAL, FAILED))
            return {**base, **_short(record)}
    except (JobIOError, OSError) as exc:
        # this job's directory or files cannot be created, locked or written: fail this job only
        error = (
            f"JobIOError: {exc}"
            if isinstance(exc, JobIOError)
            else f"JobIOError: I/O error in the job directory {jdir}: {exc}"
        )
        _record_io_failure(task, paths, spec, jid, error, started)
        return {**base, "status": FAILED, "error": error}


def _record_io_failure(
    task: JobTask, paths: JobPaths, spec: dict[str, Any], jid: str, error: str, started: str
) -> None:
    """Best effort: a ``failed`` result.json (and a log line) for a job stopped by an I/O error before its own
    record could be written; silently nothing when the job directory cannot take them either."""
    record = {
        **_record_head(FAILED, jid, paths, spec),
        "started": started,
        "finished": _now(),
        "trainer": task.trainer,
        "error": error,
        "traceback": None,
    }
    with contextlib.suppress(OSError, ValueError, TypeError):
        if paths.root.is_dir() and job_state(paths.root) != DONE:
            atomic_write_json(paths.result, record)
    with contextlib.suppress(OSError, ValueError):
        with open(paths.log, "a", encoding="utf-8") as log:
            log.write(f"=== {_now()} FAILED: {error}\n")


def _record_head(status: str, jid: str, paths: JobPaths, spec: dict[str, Any]) -> dict[str, Any]:
    """The identifying fields every ``result.json`` starts with."""
    keys = ("framework", "suite", "target", "method", "variant", "seed", "device", "profile")
    return {
        "schema": SCHEMA,
        "status": status,
        "job_id": jid,
        "name": paths.root.name,
        "spec": spec,
        **{k: spec.get(k) for k in keys},
    }


def _short(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "target_acc", "source_acc", "wall_time_s", "error", "resumed_from_epoch")
    return {k: record[k] for k in keys if k in record}


def _run_locked(
    task: JobTask, paths: JobPaths, spec: dict[str, Any], jid: str, resumed: bool
) -> dict[str, Any]:
    started, t0, c0 = _now(), time.time(), time.process_time()
    prior = read_metrics(paths.metrics)
    resumed_from = max((r.get("epoch", 0) for r in prior if isinstance(r.get("epoch"), int)), default=None)
    bar = None
    orig_out, orig_err = sys.stdout, sys.stderr
    with _io_step("open the job log", paths.log):
        log = open(paths.log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed by `with log` below
    with log:
        with _io_step("write the job log", paths.log):
            log.write(
                f"\n=== {_now()} start job {jid} ({paths.root.name}) pid {os.getpid()} on "
                f"{socket.gethostname()}{f' (resuming after epoch {resumed_from})' if resumed_from else ''}\n"
            )
            log.write(f"spec: {canonical_json(spec)}\n")

        def note(text: str) -> None:
            """A line in the log after the job ran: best effort (its record matters more)."""
            with contextlib.suppress(OSError, ValueError):
                log.write(text)

        def on_epoch(rec: dict[str, Any]) -> None:
            bad = find_nonfinite(rec)
            try:
                append_metrics(paths.metrics, rec)
            except OSError as exc:
                raise JobIOError(f"cannot write {paths.metrics}: {_why(exc)}") from exc
            log.write(f"[epoch] {json.dumps(clean_floats(rec), sort_keys=True, default=_json_default)}\n")
            if bad:
                raise JobFailed(
                    f"non-finite value(s) in epoch record: {', '.join(bad)} (epoch {rec.get('epoch')})"
                )

        def on_start(start_epoch: int) -> None:
            """The trainer resumes after ``start_epoch`` (0: from scratch): epoch records beyond what its
            checkpoint covers are dropped, so history and ``resumed_from_epoch`` stay true."""
            nonlocal resumed_from
            kept = [r for r in read_metrics(paths.metrics) if int(r.get("epoch", 0)) <= start_epoch]
            if len(kept) != len(read_metrics(paths.metrics)):
                atomic.write_text(
                    paths.metrics,
                    "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in kept),
                )
                log.write(f"=== {_now()} dropped epoch records after epoch {start_epoch} (no checkpoint)\n")
            resumed_from = start_epoch or None

        def on_step(i: int, n: int) -> None:
            if bar is None:
                return
            if n and bar.total != n:
                bar.total = n
            if bar.n == 0 and int(i) > 1:  # a resumed job: count the rate and ETA from here
                bar.initial = bar.n = bar.last_print_n = int(i) - 1
            bar.update(max(0, int(i) - bar.n))

        if task.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=None,
                desc=f"  {paths.root.name[:48]}",
                position=task.position,
                leave=False,
                file=orig_err,
                unit="step",
                dynamic_ncols=True,
            )
        status, error, tb, final = DONE, None, None, {}
        try:
            with (
                contextlib.redirect_stdout(_Tee(log, orig_out)),
                contextlib.redirect_stderr(_Tee(log, orig_err)),
            ):
                _prepare_framework(spec)
                run_job = load_trainer(task.trainer)
                hooks: dict[str, Any] = {"on_epoch": on_epoch, "on_step": on_step}
                if "on_start" in inspect.signature(run_job).parameters:
                    hooks["on_start"] = on_start
                final = run_job(dict(spec), paths.root, **hooks) or {}
            if not isinstance(final, dict):
                raise JobFailed(f"trainer returned {type(final).__name__}, expected a dict")
            bad = find_nonfinite(final)
            if bad:
                raise JobFailed(f"non-finite value(s) in the final record: {', '.join(bad)}")
        except KeyboardInterrupt:
            note(f"=== {_now()} interrupted\n")
            raise
        except BaseException as exc:  # noqa: BLE001 - a failed job must never stop the others
            if isinstance(exc, SystemExit | GeneratorExit):
                raise
            status, error, tb = FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc()
            note(f"=== {_now()} FAILED: {error}\n{tb}\n")
        finally:
            if bar is not None:
                bar.close()
        wall = time.time() - t0
        history = read_metrics(paths.metrics)
        record: dict[str, Any] = {
            **_record_head(status, jid, paths, spec),
            **summarize(final, history),
            "final": clean_floats(final),
            "epochs_recorded": len(history),
            "resumed_from_epoch": resumed_from,
            "started": started,
            "finished": _now(),
            "wall_time_s": round(wall, 3),
            "cpu_time_s": round(time.process_time() - c0, 3),  # all threads of this process
            "trainer": task.trainer,
            "provenance": provenance(spec),
            "artifacts": {
                key: p.name
                for key, p in (("coefficients", paths.coefficients), ("weights", paths.weights))
                if p.exists()
            },
        }
        if status == FAILED:
            record["error"], record["traceback"] = error, tb
        try:
            atomic_write_json(paths.result, record)
        except OSError as exc:
            # the job cannot be recorded as finished: it failed (its checkpoint stays, so a re-run resumes)
            status = record["status"] = FAILED
            error = record["error"] = f"JobIOError: cannot write {paths.result}: {_why(exc)}"
            record.setdefault("traceback", None)
        if status == DONE and not task.keep_checkpoints and paths.checkpoint.exists():
            # resuming was its only use; optimiser state triples the size of the trained weights
            shutil.rmtree(paths.checkpoint, ignore_errors=True)
            note(f"=== {_now()} removed {paths.checkpoint.name}/ (done; --keep-checkpoints keeps it)\n")
        note(f"=== {_now()} {status} in {wall:.1f} s{'' if status == DONE else ': ' + str(error)}\n")
    return record
