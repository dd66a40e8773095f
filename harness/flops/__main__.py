"""``python -m harness.flops``: thin entry point; the command lives in :mod:`harness.drivers.flops.cli`."""

from __future__ import annotations

import sys

from harness.drivers.flops.cli import main

if __name__ == "__main__":
    sys.exit(main())
