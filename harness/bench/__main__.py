"""``python -m harness.bench``: thin entry point; the benchmarks live in :mod:`harness.drivers`.

* ``python -m harness.bench [flags]`` — DRT vs static wall-clock ratios (:mod:`harness.drivers.bench`);
* ``python -m harness.bench e2e [flags]`` — end-to-end training throughput, data loader vs model
  (:mod:`harness.drivers.bench_e2e`).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["e2e"]:
        from harness.drivers.bench_e2e import main as e2e_main

        return e2e_main(argv[1:])
    from harness.drivers.bench import main as bench_main

    return bench_main(argv)


if __name__ == "__main__":
    sys.exit(main())
