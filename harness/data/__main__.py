"""``python -m harness.data {list,check,prepare,show,shift}``: inspect and validate data before a run.

Exit status: 0 fine, 1 ``check`` found problems, 2 bad input (a :class:`DataError`, printed without
a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import DEFAULT_SUITE, Suite, get_suite, list_suites, suite_options
from harness.errors import DataError


def _suite(args: argparse.Namespace) -> Suite:
    opts: dict[str, Any] = {}
    accepted = suite_options(args.suite) if args.suite in list_suites() else []
    for flag, key in (("n_train", "n_train"), ("n_test", "n_test"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            if key not in accepted:
                raise DataError(
                    f"--{flag.replace('_', '-')} is not an option of suite {args.suite!r} "
                    f"(options: {accepted})"
                )
            opts[key] = v
    if getattr(args, "expected", None):
        try:
            opts["expected"] = json.loads(Path(args.expected).read_text())
        except (OSError, ValueError) as e:
            raise DataError(
                f"{args.expected}: cannot read expected counts JSON ({e}); expected "
                '{"domain": {"train": N, "test": N}, ...}'
            ) from None
    if getattr(args, "domains", None):
        if "domains" not in accepted:
            raise DataError(f"--domains is not an option of suite {args.suite!r} (options: {accepted})")
        opts["domains"] = tuple(d.strip() for d in args.domains.split(",") if d.strip())
    if getattr(args, "num_classes", None) is not None:
        opts["num_classes"] = args.num_classes
    return get_suite(args.suite, root=args.root, **opts)


def grid_image(suite: Suite, split: str = "train", per_domain: int = 8, cell: int = 64, seed: int = 0) -> Any:
    """A PIL image: one row of ``per_domain`` random samples per domain, with the domain name and labels."""
    from PIL import Image, ImageDraw

    from harness.data.splits import ArraySplit
    from harness.data.transforms import TransformSpec, apply_transform

    spec = TransformSpec(resize=cell, crop=(cell, cell), mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))
    label_w, pad = 90, 2
    rows = len(suite.domains)
    canvas = Image.new(
        "RGB", (label_w + per_domain * (cell + pad), rows * (cell + 14 + pad)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    rng = np.random.default_rng(seed)
    for r, d in enumerate(suite.domains):
        sp = suite.split(d, split)
        y0 = r * (cell + 14 + pad)
        draw.text((4, y0 + cell // 2 - 6), f"{d}\n({len(sp)})", fill=(0, 0, 0))
        for c, i in enumerate(rng.permutation(len(sp))[:per_domain]):
            try:
                img = sp.images[i] if isinstance(sp, ArraySplit) else sp.load(int(i))
                tile = apply_transform(img, spec)
            except DataError:
                continue
            canvas.paste(
                Image.fromarray(np.clip(tile, 0, 255).astype(np.uint8)), (label_w + c * (cell + pad), y0)
            )
            draw.text((label_w + c * (cell + pad) + 2, y0 + cell), str(int(sp.labels[i])), fill=(0, 0, 0))
    return canvas


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.data", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--suite", default=DEFAULT_SUITE, help=f"one of {list_suites()} (default {DEFAULT_SUITE})"
        )
        p.add_argument("--root", default=None, help="data root (else the suite's env var or datasets/cache)")
        p.add_argument(
            "--n-train", dest="n_train", type=int, default=None, help="images per domain (generated)"
        )
        p.add_argument("--n-test", dest="n_test", type=int, default=None)
        p.add_argument("--seed", type=int, default=None, help="generator seed (digits, smoke)")
        p.add_argument("--domains", default=None, help="domainnet: comma-separated subset of domains to use")

    sub.add_parser("list", help="registered suites")
    p = sub.add_parser("check", help="validate a data root / cache; non-zero exit when anything is wrong")
    common(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--images",
        choices=["none", "exists", "header", "full"],
        default=None,
        help="file suites: how deeply to check every listed image (default header; full decodes)",
    )
    p.add_argument("--workers", type=int, default=4, help="threads for image checks")
    p.add_argument("--expected", default=None, help="JSON file of expected counts {domain: {train, test}}")
    p.add_argument("--num-classes", dest="num_classes", type=int, default=None, help="domainnet fixtures")
    p = sub.add_parser("prepare", help="build the suite's cache (digits)")
    common(p)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (digits: one per domain)")
    p = sub.add_parser("show", help="write a grid of sample images per domain")
    common(p)
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--per-domain", dest="per_domain", type=int, default=10)
    p.add_argument("--cell", type=int, default=64, help="tile size in pixels")
    p = sub.add_parser("shift", help="cross-domain accuracy matrix (HOG + logistic regression)")
    common(p)
    p.add_argument("--train-per-domain", dest="tpd", type=int, default=2000)
    p.add_argument("--test-per-domain", dest="epd", type=int, default=500)
    p.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    try:
        if args.cmd == "list":
            for n in list_suites():
                print(n)
            return 0
        suite = _suite(args)
        if args.cmd == "check":
            kw: dict[str, Any] = {}
            if suite.kind == "file":
                kw = {"images": args.images or "header", "workers": args.workers}
            elif args.images is not None:
                raise DataError(f"--images applies to file suites (domainnet), not {suite.name!r}")
            rep = suite.check(**kw)
            print(rep.to_json() if args.json else rep.format())
            return 0 if rep.ok else 1
        if args.cmd == "prepare":
            t0 = time.perf_counter()
            info = suite.prepare(workers=args.workers) if suite.name == "digits" else suite.prepare()
            info["wall_seconds"] = round(time.perf_counter() - t0, 2)
            print(json.dumps(info, indent=2))
            return 0
        if args.cmd == "show":
            img = grid_image(suite, args.split, args.per_domain, args.cell)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            img.save(args.out)
            print(f"wrote {args.out} ({img.size[0]}x{img.size[1]})")
            return 0
        if args.cmd == "shift":
            from harness.data.shift import cross_domain_matrix, format_matrix

            res = cross_domain_matrix(suite, args.tpd, args.epd)
            print(json.dumps(res, indent=2) if args.json else format_matrix(res))
            return 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
