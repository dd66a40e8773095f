"""``python -m harness.weights``: weight files between PyTorch and Keras through the neutral format.

Commands::

    python -m harness.weights convert SRC DST --to torch|keras [--arch A --variant V … | --spec FILE]
    python -m harness.weights convert DST --pretrained TORCHVISION.pth --to torch|keras --arch A [--variant …]
    python -m harness.weights inspect FILE

``SRC`` is a whole-model weight file of either framework: a torch ``state_dict`` (``.pth``/``.pt``), a neutral
file (``.safetensors``/``.npz``; the spec is read from its metadata when no ``--arch``/``--spec`` is given) or
a Keras ``.weights.h5`` (needs the spec). ``DST``: ``--to torch`` → ``.pth``/``.pt`` or neutral; ``--to
keras`` → ``.weights.h5`` (Keras' native format, for ``model.load_weights`` on
``impl_keras.backbones.build_model(spec)``) or neutral (``.safetensors`` preferred). The weights are always
loaded strictly into the target framework's model, so a mismatching file is rejected with every missing /
unexpected / mis-shaped tensor named. ``--pretrained`` takes a *local* torchvision checkpoint (nothing is ever
downloaded): its static tensors are checked strictly and loaded; the DRT tensors and the head are freshly
initialised (``--seed``) and reported. Exit status: 0 on success, 2 on an error (message without traceback).

This is the part of the weights tooling that builds framework models (``impl_*.backbones.build_model``) and
loads torchvision checkpoints into them (``impl_*.pretrained``), so it lives with the drivers and is entered
through the thin :mod:`harness.weights.__main__`. The neutral format (:mod:`harness.weights.neutral`) and the
framework-free file reading and torchvision matching (:mod:`harness.weights.checkpoints`) stay in the core.

* :func:`read_model_arrays` — neutral arrays of a whole-model weight file of either framework;
* :func:`convert` — the work of ``python -m harness.weights convert``;
* :func:`main` — the command line (``convert`` and ``inspect``).

Nothing is ever downloaded, and a random initialisation is never silently substituted for a missing file or
tensor: :func:`convert` raises instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import DrtBenchError, WeightsError
from harness.spec.layer import FORMULATION_CHOICES, VARIANTS
from harness.spec.model import ARCHS, HEADS, ModelSpec
from harness.weights import neutral
from harness.weights.checkpoints import (
    KERAS_SUFFIX,
    TORCH_SUFFIXES,
    read_arrays,
    read_metadata,
    spec_from_metadata,
)


def _torch_model(spec: ModelSpec) -> Any:
    from harness.frameworks import require

    require("torch")
    from impl_torch.backbones import build_model

    return build_model(spec)


def _keras_model(spec: ModelSpec) -> Any:
    from harness.frameworks import require

    require("keras")
    from impl_keras.backbones import build_model

    return build_model(spec)


def read_model_arrays(src: str | os.PathLike, spec: ModelSpec | None) -> dict[str, np.ndarray]:
    """Neutral arrays of a whole-model weight file in any supported format (Keras ``.weights.h5`` needs
    ``spec``)."""
    p = Path(src)
    if not p.is_file():
        raise WeightsError(f"{p}: no such weight file")
    if p.name.endswith(KERAS_SUFFIX):
        if spec is None:
            raise DrtBenchError(f"{p}: a Keras weight file needs the model spec (--arch … or --spec FILE)")
        model = _keras_model(spec)
        try:
            model.load_weights(str(p))
        except Exception as e:  # noqa: BLE001 - Keras raises several types for a mismatching file
            raise WeightsError(f"{p}: does not match the Keras model of {spec.to_json()}: {e}") from e
        return model.to_neutral()
    return read_arrays(p)


def convert(
    src: str | os.PathLike | None,
    dst: str | os.PathLike,
    to: str,
    spec: ModelSpec | None = None,
    *,
    pretrained: str | os.PathLike | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Convert ``src`` (a whole-model weight file) or a torchvision checkpoint (``pretrained``) to ``dst``.

    The arrays always pass through the neutral format and are loaded *strictly* into a model of the target
    framework built from ``spec`` (so a file that does not match the spec is rejected by name). ``dst``:

    * ``--to torch``: ``.pth``/``.pt`` (a torch ``state_dict``) or ``.safetensors``/``.npz`` (neutral);
    * ``--to keras``: ``.weights.h5`` (Keras' native format, for ``model.load_weights`` on a model built from
      the same spec) or ``.safetensors``/``.npz`` (neutral, as written back by the Keras model).

    Neutral outputs carry the spec as metadata (``model_spec``). With ``pretrained``, the static part of the
    feature extractor comes from the torchvision checkpoint and the DRT tensors and the head are initialised
    freshly (``seed``). Returns a summary dict.
    """
    if to not in ("torch", "keras"):
        raise DrtBenchError(f"--to {to!r}: expected torch or keras")
    if (src is None) == (pretrained is None):
        raise DrtBenchError(
            "give either SRC (a model weight file) or --pretrained PATH (a torchvision checkpoint)"
        )
    if spec is None and src is not None:
        spec = spec_from_metadata(src)
    if spec is None:
        raise DrtBenchError("the model spec is unknown: give --arch (and --variant …) or --spec FILE")
    dst = Path(dst)
    if not (
        dst.suffix in neutral.SUFFIXES
        or (to == "torch" and dst.suffix in TORCH_SUFFIXES)
        or (to == "keras" and dst.name.endswith(KERAS_SUFFIX))
    ):
        allowed = ".pth/.pt" if to == "torch" else KERAS_SUFFIX
        raise DrtBenchError(
            f"{dst}: for --to {to} the destination must end in {allowed}, .safetensors or .npz"
        )
    summary: dict[str, Any] = {"to": to, "dst": str(dst), "spec": spec.to_dict()}
    from harness.frameworks import require

    require(to)  # a one-line FrameworkMissing rather than an ImportError traceback
    if to == "torch":
        import torch

        torch.manual_seed(seed)
        model = _torch_model(spec)
        if pretrained is not None:
            from impl_torch.pretrained import load_torchvision

            summary["pretrained"] = load_torchvision(model, pretrained).to_dict()
        else:
            from impl_torch.weights import from_neutral

            from_neutral(model, read_model_arrays(src, spec), strict=True)
        from impl_torch.weights import to_neutral

        arrays = to_neutral(model)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.suffix in TORCH_SUFFIXES:
            torch.save(model.state_dict(), str(dst))
        else:
            neutral.save(dst, arrays, {"model_spec": spec.to_json(), "framework": "torch"})
    else:
        import keras

        keras.utils.set_random_seed(seed)
        model = _keras_model(spec)
        if pretrained is not None:
            from impl_keras.pretrained import load_torchvision

            summary["pretrained"] = load_torchvision(model, pretrained).to_dict()
        else:
            model.from_neutral(read_model_arrays(src, spec), strict=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.name.endswith(KERAS_SUFFIX):
            model.save_weights(str(dst))
        else:
            neutral.save(dst, model.to_neutral(), {"model_spec": spec.to_json(), "framework": "keras"})
        arrays = None
    summary["tensors"] = None if arrays is None else len(arrays)
    return summary


# ---- command line ---------------------------------------------------------------------------------------
def _spec(args: argparse.Namespace) -> ModelSpec | None:
    if args.spec:
        try:
            with open(args.spec, encoding="utf-8") as f:
                return ModelSpec.from_json(f.read())
        except OSError as e:
            raise DrtBenchError(f"--spec {args.spec}: cannot read it: {e.strerror or e}") from e
        except DrtBenchError as e:
            raise DrtBenchError(f"--spec {args.spec}: {e}") from e
        except (ValueError, TypeError, KeyError) as e:
            raise DrtBenchError(
                f"--spec {args.spec}: not a ModelSpec JSON file ({type(e).__name__}: {e})"
            ) from e
    if args.arch is None:
        return None
    fields = dict(
        arch=args.arch,
        variant=args.variant,
        num_classes=args.num_classes,
        head=args.head,
        formulation=args.formulation,
        placement=args.placement,
        K=args.K,
    )
    if args.basis_kernel is not None:
        fields["basis_kernel"] = "full" if args.basis_kernel == "full" else int(args.basis_kernel)
    return ModelSpec(**fields)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.weights", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "convert", help="convert a weight file (or a torchvision checkpoint) to torch or keras"
    )
    c.add_argument("paths", nargs="+", metavar="SRC DST", help="SRC DST, or only DST with --pretrained")
    c.add_argument("--to", required=True, choices=("torch", "keras"))
    c.add_argument("--pretrained", default=None, metavar="PATH", help="a local torchvision checkpoint (.pth)")
    c.add_argument("--spec", default=None, metavar="FILE", help="a ModelSpec JSON file")
    c.add_argument("--arch", default=None, choices=ARCHS)
    c.add_argument("--variant", default="static", choices=VARIANTS)
    c.add_argument("--num-classes", type=int, default=345)
    c.add_argument("--head", default="linear", choices=HEADS)
    c.add_argument("--formulation", default="kernel_merge", choices=FORMULATION_CHOICES)
    c.add_argument("--placement", default="default")
    c.add_argument("--K", type=int, default=4)
    c.add_argument("--basis-kernel", default=None, choices=("1", "full"))
    c.add_argument("--seed", type=int, default=0, help="seed of the fresh DRT/head init with --pretrained")
    i = sub.add_parser("inspect", help="list the tensors (name, shape, dtype) and metadata of a weight file")
    i.add_argument("path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.frameworks import prepare_process

    prepare_process()
    try:
        if args.command == "inspect":
            arrays = read_arrays(args.path)
            for k, v in arrays.items():
                print(f"{k}\t{tuple(v.shape)}\t{v.dtype}")
            if args.path.endswith(neutral.SUFFIXES):
                print(json.dumps(read_metadata(args.path), indent=2))
            return 0
        if args.pretrained is not None:
            if len(args.paths) != 1:
                raise DrtBenchError("with --pretrained give only DST")
            src, dst = None, args.paths[0]
        else:
            if len(args.paths) != 2:
                raise DrtBenchError("give SRC and DST (or DST with --pretrained PATH)")
            src, dst = args.paths
        summary = convert(src, dst, args.to, _spec(args), pretrained=args.pretrained, seed=args.seed)
        pre = summary.get("pretrained")
        if pre is not None:
            print(
                f"pretrained: {len(pre['loaded'])} loaded, {len(pre['new'])} new (DRT, fresh init), "
                f"ignored: {', '.join(pre['ignored']) or '-'}"
            )
            for n in pre["new"]:
                print(f"  new: {n}")
        print(f"wrote {summary['dst']} ({args.to})")
        return 0
    except DrtBenchError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a destination under a file, an unwritable folder, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{_one_line(e.strerror or str(e))}", file=sys.stderr)
        return 2


def _one_line(text: str) -> str:
    """An error message on one line (a library's multi-line message joined with "; ")."""
    return "; ".join(ln.strip() for ln in text.splitlines() if ln.strip())
