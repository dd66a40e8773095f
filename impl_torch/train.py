"""The PyTorch backend of the neutral training loop (:mod:`harness.loop`).

``run_job(job, job_dir, *, on_epoch=None, on_step=None, on_start=None)`` trains one job with
:class:`TorchBackend`; the loop, the job keys and the records are documented in :mod:`harness.loop`. This
module holds only what is PyTorch's: seeding, device choice, loaders, batch conversion, prediction, the
algorithm's state as arrays (the torch RNG state included), parameter counting and versions.

Loaders: ``num_workers`` worker processes (:func:`harness.loop.loader_workers`); on CUDA the batches are
pinned and copied asynchronously. Precision (``job["precision"]``): the training steps run the networks under
``torch.autocast`` (:meth:`impl_torch.methods.base.Algorithm.set_precision`; ``fp16`` with a
``torch.amp.GradScaler``); predictions stay float32.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import loop
from harness.provenance import library_versions
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_torch.methods import Algorithm, build_algorithm


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


class TorchBackend:
    """PyTorch half of :class:`harness.loop.Backend`."""

    framework = "torch"

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.precision = "fp32"

    def scope(self, job: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
        self.device = select_device(job.get("device"))
        self.precision = loop.job_precision(job)
        return contextlib.nullcontext()

    def seed(self, seed: int) -> None:
        seed_everything(seed)

    def build(self, spec: MethodSpec, model_spec: ModelSpec, job: dict[str, Any]) -> Algorithm:
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(
                f"job field 'precision' = 'fp16' on device {self.device.type!r}: float16 training needs CUDA "
                "(torch's CPU float16 convolutions run ~200x slower than float32); use bf16 on a CPU"
            )
        algo = build_algorithm(spec, model_spec, device=self.device)
        algo.set_precision(self.precision, self.device.type)
        return algo

    def net_shapes(self, algo: Algorithm, net: str) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in algo.nets[net].state_dict().items()}

    def load_net(self, algo: Algorithm, net: str, arrays: dict[str, np.ndarray]) -> None:
        from impl_torch.weights import from_neutral

        from_neutral(algo.nets[net], arrays, strict=False)

    def make_loader(self, split: Any, transform: Any, batch_size: int, **kw: Any) -> Any:
        from impl_torch.data import make_loader

        kw.setdefault("pin_memory", self.device.type == "cuda")
        return make_loader(split, transform, batch_size, **kw)

    def _dtype(self, algo: Algorithm) -> torch.dtype:
        return next(algo.parameters()).dtype

    def batch(self, algo: Algorithm, xs: Any, ys: Any, ds: Any, xt: Any) -> dict[str, torch.Tensor]:
        dtype, nb = self._dtype(algo), self.device.type == "cuda"  # pinned batches: asynchronous copies
        return {
            "xs": xs.to(device=self.device, dtype=dtype, non_blocking=nb),
            "ys": ys.to(self.device, non_blocking=nb),
            "ds": ds.to(self.device, non_blocking=nb),
            "xt": xt.to(device=self.device, dtype=dtype, non_blocking=nb),
        }

    def train_mode(self, algo: Algorithm) -> None:
        algo.train()

    @torch.no_grad()
    def predict(self, algo: Algorithm, x: Any) -> np.ndarray:
        return algo.predict(x.to(device=self.device, dtype=self._dtype(algo))).float().cpu().numpy()

    def state(self, algo: Algorithm) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = algo.checkpoint_state()
        arrays["rng/torch"] = torch.get_rng_state().numpy()
        return arrays, meta

    def load_state(self, algo: Algorithm, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        algo.load_checkpoint_state(arrays, meta)
        torch.set_rng_state(torch.from_numpy(arrays["rng/torch"].copy()))

    def neutral_weights(self, algo: Algorithm) -> dict[str, np.ndarray]:
        from impl_torch.weights import to_neutral

        return to_neutral(algo.nets)

    def copy_shared(self, algo: Algorithm, twin: Algorithm) -> None:
        from impl_torch.weights import from_neutral, to_neutral

        from_neutral(algo.nets, to_neutral(twin.nets), strict=False)

    def write_coefficients(self, algo: Algorithm, suite: Any, target: str, path: Path, seed: int) -> Any:
        from impl_torch.coefficients import write

        return write(algo, suite, target, path, self.device, seed)

    def num_parameters(self, algo: Algorithm) -> int:
        return sum(p.numel() for n, p in algo.nets.named_parameters() if not n.startswith("teacher_"))

    def device_name(self, job: dict[str, Any]) -> str:
        return str(self.device)

    def versions(self) -> dict[str, str]:
        return library_versions("torch")


#: ``run_job(job, job_dir, *, on_epoch=None, on_step=None, on_start=None)``: the trainer entry point
run_job = loop.trainer(TorchBackend)


def _load_pretrained(algo: Any, path: str) -> None:
    """:func:`harness.loop.load_pretrained` with this framework's backend."""
    loop.load_pretrained(TorchBackend(), algo, path)
