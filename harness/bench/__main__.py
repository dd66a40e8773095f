"""``python -m harness.bench``: thin entry point; the benchmark lives in :mod:`harness.drivers.bench`."""

from __future__ import annotations

import sys

from harness.drivers.bench import main

if __name__ == "__main__":
    sys.exit(main())
