"""Cross-framework equivalence checks: ``python -m harness.equivalence layer|model|step``.

Each subcommand lives in its own module (``layer``, ``model``, ``step``) exposing
``add_arguments(parser)`` and ``main(args) -> int``; :mod:`harness.equivalence.compare` holds the shared
difference measures and table/JSON output. Importing this package imports no framework.
"""

SUBCOMMANDS: dict[str, str] = {
    "layer": "harness.equivalence.layer",
    "model": "harness.equivalence.model",
    "step": "harness.equivalence.step",
}
