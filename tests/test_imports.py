"""The framework-neutral package imports no framework: every module under ``harness`` is imported in a
fresh interpreter and none of torch, tensorflow, keras or jax may appear in ``sys.modules`` afterwards (the
torch and Keras tests share one tox environment, so this is checked here, not by leaving a framework out)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import harness
names = sorted(m.name for m in pkgutil.walk_packages(harness.__path__, "harness."))
for name in names:
    importlib.import_module(name)
bad = [m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules]
print(len(names), ",".join(bad))
"""


def test_every_harness_module_imports_without_a_framework() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    count, bad = out.strip().split(" ") if " " in out.strip() else (out.strip(), "")
    assert int(count) > 30, out  # the walk really found the package's modules
    assert bad == "", f"harness modules imported {bad} at import time"
