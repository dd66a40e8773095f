"""Cross-framework equivalence checks, run by ``python -m harness.equivalence layer|model|step``.

Each subcommand lives in its own module (``layer``, ``model``, ``step``) exposing
``add_arguments(parser)`` and ``main(args) -> int``; :mod:`harness.drivers.equivalence.compare` holds the
shared difference measures and table/JSON output, :mod:`harness.drivers.equivalence.cli` the dispatcher.
Importing this package imports no framework.
"""

SUBCOMMANDS: dict[str, str] = {
    "layer": "harness.drivers.equivalence.layer",
    "model": "harness.drivers.equivalence.model",
    "step": "harness.drivers.equivalence.step",
}
