"""The PyTorch training loop: ``run_job(job, job_dir, *, on_epoch=None, on_step=None) -> dict``.

One loop for every method (docs/architecture.md, Training). It builds the data protocol, the model spec and
the method spec from the job, then per epoch: sets the learning-rate factor of the schedule, runs
``steps_per_epoch`` updates (each on one source batch — balanced over source domains for M3SDA-β, pooled
otherwise — and one target batch), evaluates, writes ``job_dir/checkpoint/state.pt`` atomically and calls
``on_epoch(record)``. An existing checkpoint is resumed from. A non-finite loss raises
:class:`~impl_torch.methods.base.NonFiniteLoss` naming the method.

Job keys read: ``suite``, ``root``, ``target``, ``method``, ``variant``, ``arch``, ``formulation``, ``seed``,
``epochs``, ``steps_per_epoch`` (None: one pass over the pooled sources), ``batch_size`` (per domain side:
``batch_size`` source + ``batch_size`` target images), ``hparams``, ``device`` (``auto``/``cpu``/``cuda``),
optional ``data`` (``train_per_domain``, ``test_per_domain``), ``model`` (extra ModelSpec fields, e.g.
``dropout``, ``head``), ``eval_batch_size``, ``source_eval_max`` (source samples scored per epoch, default
500: a fixed random subset across all sources), ``pretrained`` (a path: marks the backbone as pretrained for
the learning-rate groups and loads a torchvision ``.pth`` state dict or a neutral ``.safetensors``/``.npz``
file into every ``*features`` network non-strictly; DRT tensors and heads stay new).

Epoch record keys: ``epoch`` (1-based, epochs finished), ``stage``, ``losses`` (means of every metric the
method's ``update`` returned), ``source_acc``, ``target_acc`` (fractions in [0, 1]), ``lr`` (per optimiser
group), ``seconds`` (this epoch), ``steps``. The final record adds ``best_epoch``, ``best_target_acc`` (an
oracle: picked on target test accuracy, labelled as such), ``last_epoch``, ``seconds`` (total wall time),
``framework``, ``device``, ``versions``, ``num_parameters``.

A DRT job (``variant != "static"``) finally writes ``job_dir/coefficients.npz`` (:mod:`harness.coefficients`);
every job writes its trained networks to ``job_dir/model.safetensors``
(:func:`harness.jobs.save_final_weights`).
"""

from __future__ import annotations

import os
import pickle
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import coefficients
from harness.data import get_suite
from harness.data.iterate import Cursor
from harness.data.iterate import rewind as _epoch0
from harness.jobs import save_final_weights
from harness.spec.method import final_record, job_specs, job_suite_options
from impl_torch.coefficients import write as write_coefficients
from impl_torch.methods import build_algorithm
from impl_torch.weights import to_neutral


def select_device(name: str | None) -> torch.device:
    """``auto`` → CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and disable cuDNN autotuning (deterministic choice)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh, pickle_protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@torch.no_grad()
def evaluate(algo: Any, loader: Any, device: torch.device, limit: int | None = None) -> float:
    """Accuracy (fraction) of ``algo.predict`` over ``loader`` (at most ``limit`` samples)."""
    correct = total = 0
    for x, y, _ in loader:
        p = algo.predict(x.to(device=device, dtype=next(algo.parameters()).dtype))
        correct += int((p.argmax(-1).cpu() == y).sum())
        total += len(y)
        if limit is not None and total >= limit:
            break
    return correct / max(total, 1)


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def run_job(
    job: dict[str, Any],
    job_dir: Path | str,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train one job (see the module docstring); returns the final record."""
    from impl_torch.data import make_loader

    t_start = time.time()
    job_dir = Path(job_dir)
    ckpt = job_dir / "checkpoint" / "state.pt"
    seed = int(job.get("seed", 0))
    seed_everything(seed)
    device = select_device(job.get("device"))
    suite = get_suite(job["suite"], job.get("root"), **job_suite_options(job))
    proto = suite.protocol(job["target"], seed=seed)
    model_spec, spec = job_specs(job, len(proto.sources), proto.num_classes)
    algo = build_algorithm(spec, model_spec, device=device)
    if job.get("pretrained"):
        _load_pretrained(algo, job["pretrained"])
    bs = int(job.get("batch_size", 32))
    sampler = "balanced" if spec.name == "m3sda" else "pooled"
    src = make_loader(proto.source_train, proto.transform_train, bs, train=True, seed=seed, sampler=sampler)
    tgt = make_loader(proto.target_train, proto.transform_train, bs, train=True, seed=seed + 7919)
    ebs = int(job.get("eval_batch_size", 256))
    test = make_loader(proto.target_test, proto.transform_test, ebs, train=False)
    # a fixed random subset of every source (eval transform): shuffled once (epoch 0), never advanced
    src_eval = make_loader(proto.source_train, proto.transform_test, ebs, train=True, seed=seed)
    epochs = int(job.get("epochs", 1))
    steps = int(job.get("steps_per_epoch") or len(src))
    total = epochs * steps
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        algo.load_checkpoint_state(state["algorithm"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
    src_it, tgt_it = Cursor(src), Cursor(tgt)
    if start_epoch:
        positions = state.get("loader_cursors") or state["loader_epochs"]
        src_it.restore(positions[0])
        tgt_it.restore(positions[1])
    dtype = next(algo.parameters()).dtype
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        algo.set_lr_factor(spec.lr_factor(epoch))
        sums: dict[str, float] = {}
        algo.train()
        for i in range(steps):
            xs, ys, ds = next(src_it)
            xt, _, _ = next(tgt_it)
            g = epoch * steps + i
            algo.set_progress(g, total)
            batch = {
                "xs": xs.to(device=device, dtype=dtype),
                "ys": ys.to(device),
                "ds": ds.to(device),
                "xt": xt.to(device=device, dtype=dtype),
            }
            for k, v in algo.update(batch).items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if on_step is not None:
                on_step(g + 1, total)
        record = {
            "epoch": epoch + 1,
            "stage": spec.stages()[algo.stage].name,
            "losses": {k: v / steps for k, v in sums.items()},
            "source_acc": evaluate(algo, _epoch0(src_eval), device, int(job.get("source_eval_max", 500))),
            "target_acc": evaluate(algo, test, device),
            "lr": algo.current_lrs(),
            "steps": steps,
            "seconds": round(time.time() - t0, 3),
        }
        history.append(record)
        _atomic_save(
            {
                "algorithm": algo.checkpoint_state(),
                "epoch": epoch + 1,
                "history": history,
                "loader_cursors": [src_it.state(), tgt_it.state()],
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()},
            },
            ckpt,
        )
        if on_epoch is not None:
            on_epoch(record)
    if model_spec.variant != "static" and not (job_dir / coefficients.FILENAME).exists():
        write_coefficients(algo, suite, job["target"], job_dir / coefficients.FILENAME, device, seed)
    save_final_weights(job_dir, to_neutral(algo.nets), model_spec, spec.name, "torch")
    return final_record(
        history,
        epochs,
        time.time() - t_start,
        str(device),
        versions(),
        "torch",
        sum(p.numel() for n, p in algo.nets.named_parameters() if not n.startswith("teacher_")),
    )


def _load_pretrained(algo: Any, path: str) -> None:
    """Load static backbone weights (``harness.weights.convert.backbone_arrays``: torchvision ``.pth`` or a
    neutral file) into every ``*features`` network, non-strictly (DRT tensors and heads stay new)."""
    from harness.weights.convert import backbone_arrays
    from impl_torch.weights import from_neutral

    arrays = backbone_arrays(path)
    for name, net in algo.nets.items():
        if name.endswith("features"):
            own = net.state_dict()
            from_neutral(net, {k: v for k, v in arrays.items() if k in own}, strict=False)
