"""``python -m harness.weights convert|inspect``: thin entry point.

The command builds framework models, so it lives in :mod:`harness.drivers.convert` (its docstring is the
command's documentation).
"""

from __future__ import annotations

from harness.drivers.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
