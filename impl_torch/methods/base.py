"""Base class of every method (PyTorch): networks by name, one optimiser per network, stages, schedules.

A method is a small subclass that builds its networks (:meth:`Algorithm.build_nets`) and implements
:meth:`Algorithm.update` (one training iteration on a batch dict ``{"xs", "ys", "ds", "xt"}``: source images,
labels, source-domain ids, target images) and :meth:`Algorithm.predict` (class probabilities). The training
loop (:mod:`impl_torch.train`) calls :meth:`set_progress` before every update (stages, GRL schedule) and
:meth:`set_lr_factor` at every epoch (learning-rate schedule).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from harness.errors import DrtBenchError
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from impl_torch.optim import make_optimizer, set_lr_factor


class NonFiniteLoss(DrtBenchError):
    """A loss became NaN or infinite."""


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


class Algorithm(nn.Module):
    """Networks (``self.nets``), optimisers (``self.optimizers``), progress and stage bookkeeping."""

    def __init__(self, spec: MethodSpec, model_spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.model_spec = model_spec
        self.nets = nn.ModuleDict(self.build_nets())
        self.step_count = 0
        self.total_steps = 1
        self.stage = 0
        self.lr_factor = 1.0
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._make_optimizers()

    # ---- construction ------------------------------------------------------------------------------------
    def build_nets(self) -> dict[str, nn.Module]:
        """Default networks: ``features`` + the classifier heads of the spec (+ ``critic`` for DANN/ADDA)."""
        from impl_torch.backbones import build_features, build_head

        nets: dict[str, nn.Module] = {"features": build_features(self.model_spec)}
        for name in self.spec.classifier_names():
            nets[name] = build_head(self.model_spec, num_classes=self.spec.num_classes)
        if self.spec.name in ("dann", "adda"):
            nets["critic"] = build_critic(
                self.model_spec.feature_dim, int(self.spec["critic_hidden"]), int(self.spec["critic_depth"])
            )
        return nets

    def _make_optimizers(self) -> None:
        for net in self.spec.trained_nets(self.stage):
            self.optimizers[net] = make_optimizer(
                net, self.nets[net], self.spec.optimizer(net, self.stage), self.spec.pretrained
            )
            set_lr_factor(self.optimizers[net], self.lr_factor)

    def enter_stage(self, stage: int) -> None:
        """Called once when training reaches ``stage`` (> 0): subclasses copy networks, then optimisers are
        made."""
        self._make_optimizers()

    # ---- schedule ----------------------------------------------------------------------------------------
    def set_progress(self, step: int, total_steps: int) -> None:
        """Global step (0-based, of the update about to run) and the total; enters new stages."""
        self.step_count, self.total_steps = int(step), max(1, int(total_steps))
        target = self.spec.stage_at(self.step_count, self.total_steps)
        while self.stage < target:
            self.stage += 1
            self.enter_stage(self.stage)

    def set_lr_factor(self, factor: float) -> None:
        self.lr_factor = float(factor)
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
        loss.backward()
        for n in nets:
            self.optimizers[n].step()
        for p in self.parameters():
            p.grad = None

    def classify(self, x: torch.Tensor, head: str = "head", features: str = "features") -> torch.Tensor:
        return self.nets[head](self.nets[features](x))

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

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
        return torch.softmax(self.classify(x), dim=-1)

    # ---- checkpoint --------------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "nets": self.nets.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "meta": {
                "step": self.step_count,
                "total": self.total_steps,
                "stage": self.stage,
                "lr_factor": self.lr_factor,
            },
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        meta = state["meta"]
        self.lr_factor = float(meta["lr_factor"])
        while self.stage < int(meta["stage"]):
            self.stage += 1
            self.enter_stage(self.stage)
        self.step_count, self.total_steps = int(meta["step"]), int(meta["total"])
        self.nets.load_state_dict(state["nets"])
        for k, s in state["optimizers"].items():
            self.optimizers[k].load_state_dict(s)
        self.set_lr_factor(self.lr_factor)


def check_finite(loss: torch.Tensor, method: str) -> None:
    """Raise :class:`NonFiniteLoss` when ``loss`` is NaN/inf."""
    if not torch.isfinite(loss.detach()).all():
        raise NonFiniteLoss(
            f"{method}: the training loss became {float(loss.detach())} (non-finite); lower the "
            "learning rate or the loss weights, or check the input data"
        )


def copy_net(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter and buffer of ``src`` into ``dst`` (same architecture)."""
    dst.load_state_dict(copy.deepcopy(src.state_dict()))


def f(t: torch.Tensor) -> float:
    """A scalar tensor as a Python float."""
    return float(t.detach())
