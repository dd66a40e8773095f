"""Error types shared by the harness. Every message names the field/file/line and what was expected."""

from __future__ import annotations


class DrtBenchError(Exception):
    """Base class of every error drt-bench raises on purpose (the CLIs print these without a traceback)."""


class SpecError(DrtBenchError, ValueError):
    """An invalid value in a spec object: names the field, the value given and what is allowed."""

    def __init__(self, spec: str, field: str, value: object, allowed: str) -> None:
        self.spec, self.field, self.value, self.allowed = spec, field, value, allowed
        super().__init__(f"{spec}.{field} = {value!r} is invalid: expected {allowed}")


class DataError(DrtBenchError):
    """A defect in a data root or file: names the file (and line) and what was expected."""


class WeightsError(DrtBenchError):
    """Missing, unexpected or mis-shaped tensors when loading weights; lists every offending name."""


class FrameworkMissing(DrtBenchError):
    """A framework needed for this command is not installed; says how to install it."""

    def __init__(self, framework: str) -> None:
        extra = {"torch": "torch", "keras": "keras"}.get(framework, framework)
        super().__init__(
            f"{framework} is not installed in this environment: install it with "
            f"`pip install -e '.[{extra}]'` (or run inside `tox -e {extra}`)"
        )


class NonFiniteLoss(DrtBenchError):
    """A training loss became NaN or infinite (the job fails; both frameworks raise this one class)."""

    @classmethod
    def from_value(cls, method: str, value: float) -> NonFiniteLoss:
        """The error for ``method`` whose loss became ``value``, with the usual advice."""
        return cls(
            f"{method}: the training loss became {value} (non-finite); lower the learning rate or the loss "
            "weights, or check the input data"
        )


class JobIOError(DrtBenchError):
    """A job's directory or one of its files (spec.json, log.txt, metrics.jsonl, result.json, .lock) cannot be
    created, locked or written: names the path and the reason. It fails that job only; the matrix goes on."""
