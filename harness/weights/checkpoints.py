"""Framework-neutral helpers for weight files and torchvision checkpoints (no model is built here).

* :func:`read_torch_file` — a ``.pth``/``.pt`` file (a ``state_dict``, possibly wrapped in ``{"state_dict":
  …}`` or ``{"model": …}``, possibly with DataParallel's ``module.`` prefix) as numpy arrays (``torch.load``
  with ``weights_only=True``: no code from the file runs; torch is imported only for these files).
* :func:`read_arrays` — any weight file: ``.safetensors``/``.npz`` (neutral) or ``.pth``/``.pt`` (torch);
  :func:`backbone_arrays` — the static backbone part of one (a training job's ``pretrained`` file).
* :func:`match_pretrained` — the strict check of a torchvision checkpoint against a feature extractor: every
  static tensor must be present with its exact shape (``num_batches_tracked`` may be absent: checkpoints saved
  before torch 0.4.1, e.g. torchvision's original ResNet weights, lack it; it is then 0, as torch does), the
  DRT tensors (``bases``, ``router.*``) are reported as *new*, ``fc.*`` is reported as *ignored*; anything
  else is *unexpected*. Every offending name is listed in one :class:`~harness.errors.WeightsError`.
  ``impl_torch.pretrained`` / ``impl_keras.pretrained`` load the result into their models.
* :func:`spec_from_metadata` — the :class:`ModelSpec` a neutral file carries.

The conversion between the frameworks (``python -m harness.weights convert``) builds models, so it lives in
:mod:`harness.drivers.convert`. Nothing is ever downloaded, and a random initialisation is never silently
substituted for a missing file or tensor.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import WeightsError
from harness.spec.model import ModelSpec
from harness.spec.names import is_drt_tensor
from harness.weights import neutral

TORCH_SUFFIXES: tuple[str, ...] = (".pth", ".pt")
KERAS_SUFFIX = ".weights.h5"
IGNORED_PREFIXES: tuple[str, ...] = ("fc.",)
#: at most this many names of each kind in a mismatch message (then "… and N more")
LIST_LIMIT = 25


def is_drt_name(name: str) -> bool:
    """True for the tensors of a DRT layer that a static checkpoint cannot provide (the "new" parameters;
    :func:`harness.spec.names.is_drt_tensor`)."""
    return is_drt_tensor(name)


@dataclass
class PretrainedReport:
    """What :func:`match_pretrained` found: tensors loaded, new (DRT, freshly initialised), ignored
    (``fc.*``),
    and ``num_batches_tracked`` counters absent from the file (set to 0)."""

    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.loaded)} tensors loaded, {len(self.new)} new DRT tensors (fresh init), "
            f"{len(self.ignored)} ignored ({', '.join(self.ignored) or '-'}), "
            f"{len(self.defaulted)} absent num_batches_tracked set to 0"
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {"loaded": self.loaded, "new": self.new, "ignored": self.ignored, "defaulted": self.defaulted}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REFUSED = "WeightsUnpickler error:"


def _reason(exc: BaseException, limit: int = 240) -> str:
    """One line saying why a weight file could not be read: the exception's type and the first line of its
    message (torch's multi-paragraph weights-only refusal is reduced to the refused item)."""
    text = _ANSI.sub("", str(exc))
    if _REFUSED in text:
        tail = [ln.strip() for ln in text.split(_REFUSED, 1)[1].splitlines() if ln.strip()]
        first = (tail[0] if tail else "").split(". Please use", 1)[0].rstrip(".")
        why = "refused by torch's weights-only loader (nothing in the file was run)"
        return f"{why}: {first}" if first else why
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if len(first) > limit // 2 and ". " in first:  # a long explanation: its first sentence
        first = first.split(". ", 1)[0]
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _unreadable(path: Path, kind: str, exc: BaseException) -> WeightsError:
    """The error for a weight file that exists but cannot be read (empty, truncated, garbage)."""
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    why = "the file is empty (0 bytes)" if size == 0 else _reason(exc)
    return WeightsError(f"{path}: cannot read as {kind}: {why}")


def unwrap_state_dict(obj: Any, source: str = "") -> dict[str, Any]:
    """The tensor dict inside a loaded checkpoint (``state_dict``/``model`` wrappers, ``module.`` prefix)."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: not a state dict (got {type(obj).__name__})")
    out = dict(obj)
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def read_torch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A torch ``.pth``/``.pt`` state dict as numpy arrays (needs torch; ``weights_only=True``)."""
    from harness.frameworks import require

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file (nothing is downloaded: give a local file)")
    require("torch")
    import torch

    try:
        with warnings.catch_warnings():  # a hostile file's pickle protocol: no warning, it is refused
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise _unreadable(path, "a torch checkpoint", e) from e
    state = unwrap_state_dict(obj, str(path))
    out: dict[str, np.ndarray] = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"{path}: entry {k!r} is not a tensor ({type(v).__name__})")
        v = v.detach().cpu()
        if v.dtype in (torch.float16, torch.bfloat16):
            v = v.float()
        out[k] = v.numpy().copy()
    return out


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays of a neutral file (``.safetensors``/``.npz``) or a torch state dict (``.pth``/``.pt``)."""
    p = Path(path)
    if p.suffix in TORCH_SUFFIXES:
        return read_torch_file(p)
    if p.suffix in neutral.SUFFIXES:
        try:
            return neutral.load(p)
        except WeightsError:
            raise
        except Exception as e:  # noqa: BLE001 - safetensors, zipfile and numpy raise many types for bad files
            raise _unreadable(p, f"a {p.suffix} weight file", e) from e
    raise WeightsError(
        f"{p}: unknown weight file type {p.suffix!r}: expected .pth/.pt (torch), .safetensors/.npz (neutral)"
        f" or {KERAS_SUFFIX} (Keras, needs --arch)"
    )


def backbone_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Static backbone weights for a training job's ``pretrained`` file (:func:`read_arrays`: torchvision
    ``.pth`` or neutral; ``state_dict``/``model`` wrappers and a ``module.`` prefix already removed), with
    the ``backbone.`` or ``features.`` prefix of a whole-model file removed (the tensors under it only)."""
    arrays = read_arrays(path)
    for prefix in ("backbone", "features"):
        if any(k.startswith(prefix + ".") for k in arrays):
            return neutral.sub(arrays, prefix)
    return arrays


def match_pretrained(
    expected: Mapping[str, tuple[int, ...]],
    arrays: Mapping[str, Any],
    *,
    ignore_prefixes: tuple[str, ...] = IGNORED_PREFIXES,
    source: str = "checkpoint",
) -> PretrainedReport:
    """Check a torchvision-format ``arrays`` against a feature extractor's ``expected`` neutral names →
    shapes.

    Raises :class:`WeightsError` listing every missing static tensor, every mis-shaped one and every
    unexpected
    one; returns the :class:`PretrainedReport` otherwise.
    """
    rep = PretrainedReport()
    missing, misshaped = [], []
    for name, shape in expected.items():
        if is_drt_name(name):
            rep.new.append(name)
        elif name not in arrays:
            if name.endswith("num_batches_tracked"):
                rep.defaulted.append(name)
            else:
                missing.append(name)
        elif tuple(np.shape(arrays[name])) != tuple(shape):
            misshaped.append(f"{name}: expected {tuple(shape)}, got {tuple(np.shape(arrays[name]))}")
        else:
            rep.loaded.append(name)
    unexpected = []
    for name in arrays:
        if name in expected and not is_drt_name(name):
            continue
        if any(name.startswith(p) for p in ignore_prefixes):
            rep.ignored.append(name)
        else:
            unexpected.append(name)
    def names(kind: str, items: list[str], sep: str = ", ") -> str:
        items = sorted(items)
        shown = sep.join(items[:LIST_LIMIT])
        more = f"{sep}… and {len(items) - LIST_LIMIT} more" if len(items) > LIST_LIMIT else ""
        return f"{kind}: {shown}{more}"

    problems = []
    if missing:
        problems.append(names("missing", missing))
    if misshaped:
        problems.append(names("mis-shaped", misshaped, "; "))
    if unexpected:
        problems.append(names("unexpected", unexpected))
    if problems:
        raise WeightsError(f"{source} does not match the static part of the model: " + " | ".join(problems))
    return rep


def pretrained_arrays(
    expected: Mapping[str, tuple[int, ...]], arrays: Mapping[str, Any], report: PretrainedReport
) -> dict[str, np.ndarray]:
    """The arrays to load after :func:`match_pretrained` (absent ``num_batches_tracked`` → int64 0)."""
    out = {n: np.asarray(arrays[n]) for n in report.loaded}
    for n in report.defaulted:
        out[n] = np.zeros(tuple(expected[n]), dtype=np.int64)
    return out


# ---- conversion --------------------------------------------------------------------------------------------
def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a neutral weight file (:func:`neutral.load_metadata`); a :class:`WeightsError` naming
    the file and the reason when it cannot be read (empty, truncated, garbage)."""
    p = Path(path)
    try:
        meta = neutral.load_metadata(p)
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors, zipfile, numpy and json raise many types
        raise _unreadable(p, f"a {p.suffix} weight file", e) from e
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsError(f"{p}: its metadata is not a string → string mapping")
    return meta


def spec_from_metadata(path: str | os.PathLike) -> ModelSpec | None:
    """The :class:`ModelSpec` stored in a neutral file's metadata (key ``model_spec``), if any."""
    p = Path(path)
    if p.suffix not in neutral.SUFFIXES:
        return None
    meta = read_metadata(p)
    if "model_spec" not in meta:
        return None
    try:
        return ModelSpec.from_json(meta["model_spec"])
    except Exception as e:  # noqa: BLE001 - invalid JSON or an invalid field
        raise WeightsError(f"{p}: its model_spec metadata is not a valid model spec: {_reason(e)}") from e
