"""The framework-neutral half of every method's ``Algorithm`` (``impl_*/methods/base.py``).

:class:`AlgorithmCore` keeps the progress (global step, total steps), the current stage, the learning-rate
factor, and runs one training iteration from the method table: every :class:`~harness.method_table.StepDef`
of the current stage, ``repeat`` times, each through the framework's :meth:`AlgorithmCore.run_step` (which
computes the step's loss with the method's ``<step.loss>`` code and applies the optimisers of the networks
the step trains). Entering a stage copies the networks the stage names and makes the optimisers of the
networks it trains. A framework supplies ``run_step``, ``copy_net``, ``make_optimizers`` and
``apply_lr_factor``.
"""

from __future__ import annotations

from typing import Any

from harness.spec.method import MethodSpec


class AlgorithmCore:
    """Progress, stages, learning-rate factor and the table-driven update (see the module docstring)."""

    spec: MethodSpec
    nets: Any

    def init_progress(self) -> None:
        self.step_count = 0
        self.total_steps = 1
        self.stage = 0
        self.lr_factor = 1.0

    # ---- supplied by the framework ----------------------------------------------------------------------
    def run_step(
        self, key: str, loss_fn: Any, train: list[str], batch: dict[str, Any], scalars: dict[str, float]
    ) -> tuple[float, dict[str, float]]:  # pragma: no cover - abstract
        """One optimisation step of ``train``'s networks on ``loss_fn``; ``(loss, metrics)`` as floats."""
        raise NotImplementedError

    def copy_net(self, src: str, dst: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_optimizers(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply_lr_factor(self) -> None:
        """Push :attr:`lr_factor` into the optimisers (frameworks that read it per step need nothing)."""

    # ---- schedule -----------------------------------------------------------------------------------------
    def set_progress(self, step: int, total_steps: int) -> None:
        """Global step (0-based, of the update about to run) and the total; enters new stages."""
        self.step_count, self.total_steps = int(step), max(1, int(total_steps))
        target = self.spec.stage_at(self.step_count, self.total_steps)
        while self.stage < target:
            self.stage += 1
            self.enter_stage(self.stage)

    def enter_stage(self, stage: int) -> None:
        """Called once when training reaches ``stage`` (> 0): copies the networks the stage names, then makes
        the optimisers of the networks it trains."""
        for dst, src in self.spec.stage_def(stage).copies:
            self.copy_net(src, dst)
        self.make_optimizers()

    def set_lr_factor(self, factor: float) -> None:
        self.lr_factor = float(factor)
        self.apply_lr_factor()

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One training iteration: every step of the current stage (its ``repeat`` count); returns the merged
        metrics (a later step's key wins)."""
        scalars = self.spec.scalars(self.step_count, self.total_steps)
        metrics: dict[str, float] = {}
        for step, trains, repeat in self.spec.steps(self.stage):
            loss_fn = getattr(self, step.loss)
            for _ in range(repeat):
                metrics.update(self.run_step(step.loss, loss_fn, trains, batch, scalars)[1])
        return metrics

    # ---- checkpoint meta ----------------------------------------------------------------------------------
    def progress_meta(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "total": self.total_steps,
            "stage": self.stage,
            "lr_factor": self.lr_factor,
        }

    def restore_progress(self, meta: dict[str, Any]) -> None:
        """Re-enter the checkpoint's stage (making its optimisers), then restore the counters."""
        while self.stage < int(meta["stage"]):
            self.stage += 1
            self.enter_stage(self.stage)
        self.step_count, self.total_steps = int(meta["step"]), int(meta["total"])
        self.lr_factor = float(meta["lr_factor"])
