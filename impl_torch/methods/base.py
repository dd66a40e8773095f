"""Base class of every method (PyTorch): networks by name, one optimiser per network, stages, schedules.

Everything about a method's shape comes from its row of :mod:`harness.method_table` (through
:class:`~harness.spec.method.MethodSpec`): :meth:`Algorithm.build_nets` builds ``features``, the classifier
heads and the row's extra networks; :meth:`Algorithm.update` runs the steps of the current stage, each
``loss, metrics = self.<step.loss>(batch, scalars)`` followed by an optimiser step of the networks the step
trains (``repeat`` times); :meth:`Algorithm.enter_stage` copies the networks the new stage names;
:meth:`Algorithm.predict` applies the row's prediction rule. A method subclass holds only its per-step loss
code. Batches are dicts ``{"xs", "ys", "ds", "xt"}`` (source images, labels, source-domain ids, target
images); ``scalars`` holds ``lam``, the GRL coefficient of this update. The neutral loop
(:mod:`harness.loop`) calls :meth:`set_progress` before every update and :meth:`set_lr_factor` every epoch.

Mixed precision (:meth:`Algorithm.set_precision`, ``bf16``/``fp16``): while a step's loss is computed, every
network of ``self.nets`` runs under ``torch.autocast`` (convolutions and matmuls in the low-precision type,
the DRT layers included) and its outputs are cast to float32 at the network's boundary, so the loss code —
cross-entropies, discrepancies, moment matching, gradient reversal — always computes in float32, outside
autocast, whatever autocast's op lists say. Weights, gradients and optimiser state stay float32.
``fp16`` scales the loss with a ``torch.amp.GradScaler`` (one per algorithm, stepped after each backward;
a step whose gradients overflow is skipped and the scale halved; its state is checkpointed). ``bf16`` needs
no scaling. :meth:`predict` never autocasts: evaluation stays in the parameters' dtype.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.algorithm import AlgorithmCore
from harness.errors import NonFiniteLoss
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_torch.optim import make_optimizer, set_lr_factor

#: autocast dtype of each training precision (``fp32``: no autocast)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def _to_float32(out: Any) -> Any:
    """Every floating tensor of a network output (tensor, tuple, list or dict) cast to float32."""
    if torch.is_tensor(out):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, tuple | list):
        return type(out)(_to_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_float32(v) for k, v in out.items()}
    return out


def _autocast_forward(
    forward: Callable[..., Any], device_type: str, dtype: torch.dtype
) -> Callable[..., Any]:
    """``forward`` run under ``torch.autocast(device_type, dtype)``, its outputs cast to float32."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, dtype=dtype):
            out = forward(*args, **kwargs)
        return _to_float32(out)

    return run


@contextlib.contextmanager
def autocast_networks(
    nets: dict[str, nn.Module], device_type: str, dtype: torch.dtype | None
) -> Iterator[None]:
    """Within the block every network of ``nets`` computes under autocast and returns float32 outputs
    (``dtype`` None: nothing changes). The networks' ``forward`` is wrapped per instance and unwrapped after,
    so parameter names, ``state_dict`` and every other use of the networks are untouched."""
    if dtype is None:
        yield
        return
    wrapped: list[nn.Module] = []
    try:
        for net in {id(n): n for n in nets.values()}.values():  # a network under two names: wrapped once
            net.forward = _autocast_forward(net.forward, device_type, dtype)
            wrapped.append(net)
        yield
    finally:
        for net in wrapped:
            del net.forward


def build_critic(in_features: int, hidden: int, depth: int) -> nn.Sequential:
    """Domain critic: (Linear(·, hidden)-ReLU) × depth - Linear(hidden, 1); Linear N(0, 0.01²), bias 0."""
    layers: list[nn.Module] = []
    d = in_features
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, 1))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


class Algorithm(AlgorithmCore, nn.Module):
    """Networks (``self.nets``), optimisers (``self.optimizers``), progress and stage bookkeeping."""

    def __init__(self, spec: MethodSpec, model_spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.model_spec = model_spec
        self.nets = nn.ModuleDict(self.build_nets())
        self.init_progress()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.make_optimizers()
        self.precision = "fp32"
        self.amp_device = "cpu"
        self.scaler: torch.amp.GradScaler | None = None

    # ---- precision ----------------------------------------------------------------------------------------
    def set_precision(self, precision: str, device_type: str) -> None:
        """Train in ``precision`` (``fp32``, ``bf16``, ``fp16``) on ``device_type`` (``cpu``/``cuda``); see
        the module docstring. ``fp16`` makes a ``GradScaler``; float16 on a CPU works but is slow (the
        trainer refuses it: :meth:`impl_torch.train.TorchBackend.build`)."""
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(AUTOCAST_DTYPES)}")
        if precision != "fp32" and self._param_dtype() != torch.float32:
            raise ValueError(
                f"precision {precision!r} needs float32 parameters (mixed precision), the networks are "
                f"{self._param_dtype()}"
            )
        self.precision, self.amp_device = precision, device_type
        self.scaler = torch.amp.GradScaler(device_type) if precision == "fp16" else None

    def _param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The context a training step's loss is computed in (:func:`autocast_networks`)."""
        return autocast_networks(dict(self.nets.items()), self.amp_device, AUTOCAST_DTYPES[self.precision])

    # ---- construction ------------------------------------------------------------------------------------
    def build_nets(self) -> dict[str, nn.Module]:
        """``features``, the classifier heads and the extra networks of the method's table row."""
        from impl_torch.backbones import build_features, build_head

        nets: dict[str, nn.Module] = {"features": build_features(self.model_spec)}
        for name in self.spec.classifier_names():
            nets[name] = build_head(self.model_spec, num_classes=self.spec.num_classes)
        for net in self.spec.row.nets:
            if net.kind == "features":
                nets[net.name] = build_features(self.model_spec)
            elif net.kind == "classifier":
                nets[net.name] = build_head(self.model_spec, num_classes=self.spec.num_classes)
            elif net.kind == "critic":
                nets[net.name] = build_critic(
                    self.spec.critic_in(self.model_spec.feature_dim),
                    int(self.spec["critic_hidden"]),
                    int(self.spec["critic_depth"]),
                )
            else:
                nets[net.name] = self.build_fixed(net.name)
            if net.frozen:
                nets[net.name].requires_grad_(False)
        return nets

    def build_fixed(self, name: str) -> nn.Module:
        """A ``fixed`` network of the row (non-trainable tensors); methods that have one override this."""
        raise NotImplementedError(f"{type(self).__name__} must build its fixed network {name!r}")

    def make_optimizers(self) -> None:
        """One optimiser per network the current stage trains (:meth:`MethodSpec.optimizer`)."""
        for net in self.spec.trained_nets(self.stage):
            self.optimizers[net] = make_optimizer(
                net, self.nets[net], self.spec.optimizer(net, self.stage), self.spec.pretrained
            )
            set_lr_factor(self.optimizers[net], self.lr_factor)

    def copy_net(self, src: str, dst: str) -> None:
        copy_net(self.nets[src], self.nets[dst])

    def apply_lr_factor(self) -> None:
        for opt in self.optimizers.values():
            set_lr_factor(opt, self.lr_factor)

    def current_lrs(self) -> dict[str, float]:
        """``{net/group: lr}`` of every optimiser group."""
        return {
            f"{n}/{g['group']}": float(g["lr"]) for n, o in self.optimizers.items() for g in o.param_groups
        }

    # ---- helpers -----------------------------------------------------------------------------------------
    def optimize(self, loss: torch.Tensor, nets: list[str]) -> None:
        """Backpropagate ``loss`` and step the optimisers of ``nets`` only (grads of the others discarded)."""
        check_finite(loss, self.spec.name)
        for p in self.parameters():
            p.grad = None
        if self.scaler is None:
            loss.backward()
            for n in nets:
                self.optimizers[n].step()
        else:  # fp16: scaled backward; a step whose gradients overflow is skipped, the scale adapts
            self.scaler.scale(loss).backward()
            for n in nets:
                self.scaler.step(self.optimizers[n])
            self.scaler.update()
        for p in self.parameters():
            p.grad = None

    def classify(self, x: torch.Tensor, head: str = "head", features: str = "features") -> torch.Tensor:
        return self.nets[head](self.nets[features](x))

    def run_step(
        self, key: str, loss_fn: Any, train: list[str], batch: dict[str, torch.Tensor], scalars: dict
    ) -> tuple[float, dict[str, float]]:
        """``loss, metrics = loss_fn(batch, scalars)`` (networks under :meth:`autocast` in mixed precision),
        then an optimiser step of ``train``'s networks."""
        with self.autocast():
            loss, metrics = loss_fn(batch, scalars)
        self.optimize(loss.float(), train)
        return float(loss.detach()), {
            k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in metrics.items()
        }

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, C) in inference mode (the networks are put back in train mode after)."""
        was = self.training
        self.eval()
        try:
            return self._predict(x)
        finally:
            self.train(was)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        """The table row's rule: ``head`` (softmax of the head), ``pair`` (:func:`two_head_predict` with
        ``mcd_predict``) or ``all_heads`` (mean of every head's softmax), on the stage's features."""
        fx = self.nets[self.spec.predict_features(self.stage)](x)
        heads = self.spec.classifier_names()
        rule = self.spec.row.predict
        if rule == "pair":
            z1, z2 = self.nets[heads[0]](fx), self.nets[heads[1]](fx)
            return two_head_predict(z1, z2, self.spec["mcd_predict"])
        if rule == "all_heads":
            return torch.stack([torch.softmax(self.nets[h](fx), -1) for h in heads]).mean(0)
        return torch.softmax(self.nets[heads[0]](fx), dim=-1)

    # ---- checkpoint (arrays + plain data: harness.checkpoint) ------------------------------------------
    def checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Networks, optimiser slots and progress as ``(arrays, JSON-able meta)``."""
        arrays = {f"nets/{k}": v.detach().cpu().numpy() for k, v in self.nets.state_dict().items()}
        optim_meta: dict[str, Any] = {}
        for name, opt in self.optimizers.items():
            sd = opt.state_dict()
            plain: dict[str, dict[str, Any]] = {}
            for pid, slots in sd["state"].items():
                for key, val in slots.items():
                    if torch.is_tensor(val):
                        arrays[f"optim/{name}/{pid}/{key}"] = val.detach().cpu().numpy()
                    else:
                        plain.setdefault(str(pid), {})[key] = val
            optim_meta[name] = {"param_groups": sd["param_groups"], "plain": plain}
        meta = self.progress_meta() | {"optimizers": optim_meta}
        if self.scaler is not None:
            meta["grad_scaler"] = dict(self.scaler.state_dict())  # floats and ints: plain JSON
        return arrays, meta

    def load_checkpoint_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.restore_progress(meta)
        nets = {k[5:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("nets/")}
        self.nets.load_state_dict(nets)
        for name, om in meta["optimizers"].items():
            state: dict[int, dict[str, Any]] = {}
            prefix = f"optim/{name}/"
            for k, v in arrays.items():
                if k.startswith(prefix):
                    pid, key = k[len(prefix) :].split("/", 1)
                    state.setdefault(int(pid), {})[key] = torch.from_numpy(v.copy())
            for pid, slots in om["plain"].items():
                state.setdefault(int(pid), {}).update(slots)
            self.optimizers[name].load_state_dict({"state": state, "param_groups": om["param_groups"]})
        if self.scaler is not None and "grad_scaler" in meta:
            self.scaler.load_state_dict(dict(meta["grad_scaler"]))
        self.set_lr_factor(self.lr_factor)


def check_finite(loss: torch.Tensor, method: str) -> None:
    """Raise :class:`NonFiniteLoss` when ``loss`` is NaN/inf."""
    if not torch.isfinite(loss.detach()).all():
        raise NonFiniteLoss.from_value(method, float(loss.detach()))


def copy_net(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter and buffer of ``src`` into ``dst`` (same architecture)."""
    dst.load_state_dict(copy.deepcopy(src.state_dict()))


def two_head_predict(z1: torch.Tensor, z2: torch.Tensor, how: str) -> torch.Tensor:
    """Probabilities of a classifier pair: ``mean_softmax`` or ``max_logit`` (softmax of the classifier whose
    max logit is larger, per sample; ties go to the first, as in the release)."""
    p1, p2 = torch.softmax(z1, -1), torch.softmax(z2, -1)
    if how == "mean_softmax":
        return 0.5 * (p1 + p2)
    use2 = (z1.max(-1).values < z2.max(-1).values)[:, None]
    return torch.where(use2, p2, p1)
