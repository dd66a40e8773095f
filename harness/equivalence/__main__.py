"""``python -m harness.equivalence <subcommand> ...``: thin entry point.

The subcommands (``layer``, ``model``, ``step``) live in :mod:`harness.drivers.equivalence`.
"""

from __future__ import annotations

import sys

from harness.drivers.equivalence.cli import main

if __name__ == "__main__":
    sys.exit(main())
