"""``python -m harness.equivalence <subcommand> ...``: dispatch to the subcommand modules.

A subcommand is a module with ``add_arguments(parser)`` and ``main(args) -> int``, registered in
:data:`harness.equivalence.SUBCOMMANDS`; a module that is not present (yet) is listed as unavailable.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from harness.equivalence import SUBCOMMANDS
from harness.errors import DrtBenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness.equivalence",
        description="Check that the PyTorch and Keras implementations compute the same function "
        "(weights ported through the neutral format, never shared seeds).",
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", required=True)
    for name, module_name in SUBCOMMANDS.items():
        if importlib.util.find_spec(module_name) is None:
            sub.add_parser(name, help="(not available in this checkout)")
            continue
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(
            name,
            help=doc[0] if doc else name,
            description=(module.__doc__ or "").strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        print(f"error: subcommand {args.command!r} is not available in this checkout", file=sys.stderr)
        return 2
    try:
        return int(module.main(args) or 0)
    except DrtBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
