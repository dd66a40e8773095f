"""Optimisers with PyTorch semantics, written out explicitly for Keras 3 (pure functions of values).

``keras.optimizers.SGD`` is *not* torch's SGD: its momentum keeps ``v = m·v − lr·g`` (the learning rate
inside the velocity, so a schedule change acts differently) and its ``weight_decay`` is decoupled
(``w −= lr·wd·w``), while torch adds ``wd·w`` to the gradient before the momentum. The drt-bench optimisers
therefore implement torch's update rules (``torch.optim.SGD`` / ``torch.optim.Adam``, no dampening, no
Nesterov, no AMSGrad):

* SGD: ``g ← g + wd·w``; ``buf ← m·buf + g`` (``buf = g`` at the first step; equal since ``buf`` starts at 0);
  ``w ← w − lr·buf`` (``m = 0``: ``w ← w − lr·g``).
* Adam: ``g ← g + wd·w``; ``m ← m + (1−β1)(g − m)``; ``v ← β2·v + (1−β2)·g²``; ``t ← t + 1``;
  ``w ← w − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps)``.

A parameter whose gradient is ``None`` is skipped (no decay, no momentum), as in torch. State lives in Keras
variables (:attr:`KOptimizer.variables`) so it is checkpointed and can be passed through a compiled step.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops
from keras.backend import standardize_dtype

from harness.spec.method import OptimSpec


class KOptimizer:
    """Torch-semantics SGD/Adam over ``variables``; per-variable base lr (``lr`` or ``lr_new``)."""

    def __init__(
        self, spec: OptimSpec, variables: list[keras.Variable], is_new: list[bool], name: str = ""
    ) -> None:
        self.spec = spec
        self.base_lrs = [spec.lr_new if n else spec.lr for n in is_new]
        self.is_new = list(is_new)
        self.name = name
        self.slots: list[list[keras.Variable]] = []
        if spec.kind == "sgd":
            if spec.momentum > 0:
                self.slots.append([self._zeros(v, "momentum") for v in variables])
        elif spec.kind == "adam":
            self.slots.append([self._zeros(v, "exp_avg") for v in variables])
            self.slots.append([self._zeros(v, "exp_avg_sq") for v in variables])
            dtype = variables[0].dtype if variables else "float32"
            self.step_var = keras.Variable(0.0, dtype=dtype, trainable=False, name=f"{name}_step")
        else:
            raise ValueError(f"unknown optimiser kind {spec.kind!r}")

    @staticmethod
    def _zeros(v: keras.Variable, what: str) -> keras.Variable:
        return keras.Variable(ops.zeros(v.shape, dtype=v.dtype), trainable=False, name=f"{what}")

    @property
    def variables(self) -> list[keras.Variable]:
        out = [v for slot in self.slots for v in slot]
        if self.spec.kind == "adam":
            out.append(self.step_var)
        return out

    def apply(
        self, params: list[Any], grads: list[Any], state: list[Any], lr_factor: Any
    ) -> tuple[list, list]:
        """Pure update: ``(new_params, new_state)`` from values (``state`` ordered as :attr:`variables`)."""
        s = self.spec
        n = len(params)
        new_params = list(params)
        if s.kind == "sgd":
            bufs = list(state[:n]) if s.momentum > 0 else []
            for i, (p, g) in enumerate(zip(params, grads)):
                if g is None:
                    continue
                lr = self.base_lrs[i] * lr_factor
                if s.weight_decay:
                    g = g + s.weight_decay * p
                if s.momentum > 0:
                    bufs[i] = bufs[i] * s.momentum + g
                    g = bufs[i]
                new_params[i] = p - lr * g
            return new_params, bufs
        b1, b2 = s.betas
        ms, vs, t = list(state[:n]), list(state[n : 2 * n]), state[2 * n] + 1.0
        # the betas enter as float64 constants: ops.cast(0.9, "float64") would round 0.9 to float32 first
        beta1 = ops.convert_to_tensor(np.asarray(b1, dtype=standardize_dtype(t.dtype)))
        beta2 = ops.convert_to_tensor(np.asarray(b2, dtype=standardize_dtype(t.dtype)))
        bc1 = 1.0 - ops.power(beta1, t)
        bc2_sqrt = ops.sqrt(1.0 - ops.power(beta2, t))
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            lr = self.base_lrs[i] * lr_factor
            if s.weight_decay:
                g = g + s.weight_decay * p
            ms[i] = ms[i] + (g - ms[i]) * (1.0 - b1)
            vs[i] = vs[i] * b2 + (1.0 - b2) * (g * g)
            denom = ops.sqrt(vs[i]) / ops.cast(bc2_sqrt, p.dtype) + s.eps
            new_params[i] = p - ops.cast(lr / bc1, p.dtype) * (ms[i] / denom)
        return new_params, [*ms, *vs, t]


def lr_for(spec: OptimSpec, is_new: bool, factor: float) -> float:
    """The effective learning rate of a parameter (for records)."""
    return (spec.lr_new if is_new else spec.lr) * factor


__all__ = ["KOptimizer", "lr_for"]
