"""``python -m harness.weights``: weight files between PyTorch and Keras through the neutral format.

Commands::

    python -m harness.weights convert SRC DST --to torch|keras [--arch A --variant V … | --spec FILE]
    python -m harness.weights convert DST --pretrained TORCHVISION.pth --to torch|keras --arch A [--variant V
    …]
    python -m harness.weights inspect FILE

``SRC`` is a whole-model weight file of either framework: a torch ``state_dict`` (``.pth``/``.pt``), a neutral
file (``.safetensors``/``.npz``; the spec is read from its metadata when no ``--arch``/``--spec`` is given)
or a
Keras ``.weights.h5`` (needs the spec). ``DST``: ``--to torch`` → ``.pth``/``.pt`` or neutral; ``--to keras``
→
``.weights.h5`` (Keras' native format, for ``model.load_weights`` on
``impl_keras.backbones.build_model(spec)``)
or neutral (``.safetensors`` preferred). The weights are always loaded strictly into the target framework's
model, so a mismatching file is rejected with every missing / unexpected / mis-shaped tensor named.
``--pretrained`` takes a *local* torchvision checkpoint (nothing is ever downloaded): its static tensors are
checked strictly and loaded; the DRT tensors and the head are freshly initialised (``--seed``) and reported.
Exit status: 0 on success, 2 on an error (message without traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.errors import DrtBenchError
from harness.spec.layer import FORMULATION_CHOICES, VARIANTS
from harness.spec.model import ARCHS, HEADS, ModelSpec


def _spec(args: argparse.Namespace) -> ModelSpec | None:
    if args.spec:
        with open(args.spec, encoding="utf-8") as f:
            return ModelSpec.from_json(f.read())
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
            from harness.weights import neutral
            from harness.weights.convert import read_arrays

            arrays = read_arrays(args.path)
            for k, v in arrays.items():
                print(f"{k}\t{tuple(v.shape)}\t{v.dtype}")
            if args.path.endswith(neutral.SUFFIXES):
                print(json.dumps(neutral.load_metadata(args.path), indent=2))
            return 0
        from harness.weights.convert import convert

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
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
