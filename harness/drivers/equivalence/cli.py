"""``python -m harness.equivalence <subcommand> ...``: dispatch to the subcommand modules.

A subcommand is a module with ``add_arguments(parser)`` and ``main(args) -> int``, registered in
:data:`harness.drivers.equivalence.SUBCOMMANDS`; a module that is not present (yet) is listed as unavailable.
The entry point :mod:`harness.equivalence.__main__` calls :func:`main`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from harness.drivers.equivalence import SUBCOMMANDS
from harness.errors import DrtBenchError


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """All subcommands; only ``selected`` (or every one, when None) is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.equivalence",
        description="Check that the PyTorch and Keras implementations compute the same function "
        "(weights ported through the neutral format, never shared seeds).",
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", required=True)
    for name, module_name in SUBCOMMANDS.items():
        if selected is not None and name != selected:
            sub.add_parser(name, add_help=False)
            continue
        if importlib.util.find_spec(module_name) is None:
            sub.add_parser(name, help="(not available in this checkout)")
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # another subcommand's module is broken: keep the others usable
            sub.add_parser(name, help=f"(unavailable: {type(e).__name__}: {e})")
            continue
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
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if a in SUBCOMMANDS), None)
    args = build_parser(selected).parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        print(f"error: subcommand {args.command!r} is not available in this checkout", file=sys.stderr)
        return 2
    try:
        return int(module.main(args) or 0)
    except DrtBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
