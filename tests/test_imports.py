"""The framework-neutral core is sealed.

* Importing every module under ``harness`` in a fresh interpreter imports none of torch, tensorflow, keras or
  jax (the torch and Keras tests share one tox environment, so this is checked here, not by leaving a
  framework out), and importing every *core* module imports no ``impl_torch``/``impl_keras`` module and no
  ``harness.drivers`` module.
* Read from the source (``ast``), no core module imports ``impl_torch``, ``impl_keras`` or
  ``harness.drivers`` anywhere — at the top or inside a function, ``import x``, ``from x import y``, relative
  imports, ``importlib.import_module("...")`` / ``__import__("...")`` with a string literal. The core is every
  module under ``harness/`` except ``harness/drivers/**`` (the drivers that need both frameworks) and the
  entry-point ``__main__.py`` files (thin command-line wrappers that call into ``harness.drivers``). A string
  that is not imported — e.g. the trainer registry ``"impl_torch.train:run_job"`` of ``harness/run.py``,
  resolved by ``harness.jobs.load_trainer`` — is a plugin path, not an import, and is allowed.
* The checker is a function of a source path, so a planted reach-in proves that it catches one.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
#: Module prefixes a core module must not import.
FORBIDDEN: tuple[str, ...] = ("impl_torch", "impl_keras", "harness.drivers")
#: Calls whose first (string literal) argument is a module that gets imported.
_IMPORT_CALLS = frozenset({"import_module", "__import__"})


def _forbidden(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in FORBIDDEN)


def module_name(path: Path) -> str | None:
    """Dotted module name of a file inside the repository (``None`` outside it)."""
    try:
        rel = path.resolve().relative_to(ROOT)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str | None, is_package: bool, level: int, target: str | None) -> str | None:
    """Absolute name of ``from <level dots><target> import ...`` in ``module`` (None if unknown)."""
    if module is None:
        return None
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(package):
        return None
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def reach_ins(path: str | Path, module: str | None = None) -> list[str]:
    """Every import of ``impl_torch``, ``impl_keras`` or ``harness.drivers`` in the source file ``path``.

    Walks the whole syntax tree (module level, functions, classes, conditionals). ``module`` is the file's
    dotted name, used to resolve relative imports; by default it is derived from the path inside the
    repository. Returns ``"path:line: imported.name"`` strings (empty when the file is clean).
    """
    path = Path(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module if module is not None else module_name(path)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                node.module
                if node.level == 0
                else _resolve_relative(module, is_package, node.level, node.module)
            )
            if base is not None:
                # ``from harness import drivers`` imports harness.drivers: check "base.name" too
                names = [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if fname in _IMPORT_CALLS and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names = [arg.value]
        for name in names:
            if _forbidden(name):
                found.append((node.lineno, name))
                break
    return [f"{path}:{line}: {name}" for line, name in sorted(found)]


def core_modules() -> list[Path]:
    """Every source file of the framework-neutral core (``harness/`` minus drivers and ``__main__.py``)."""
    drivers = HARNESS / "drivers"
    return sorted(
        p
        for p in HARNESS.rglob("*.py")
        if drivers not in p.parents and p.name != "__main__.py" and "__pycache__" not in p.parts
    )


# ---- import-time checks (fresh interpreter) -----------------------------------------------------------
ALL_CODE = """
import importlib, json, pkgutil, sys
import harness
names = sorted(m.name for m in pkgutil.walk_packages(harness.__path__, "harness."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"count": len(names), "frameworks": [m for m in ("torch", "tensorflow", "keras", "jax")
                                                        if m in sys.modules]}))
"""
# The core's names are listed from the files (pkgutil.walk_packages would import harness.drivers itself).
CORE_CODE = """
import importlib, json, sys
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("impl_torch", "impl_keras")
                        or m == "harness.drivers" or m.startswith("harness.drivers."))))
"""


def _run(code: str, *args: str) -> object:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_every_harness_module_imports_without_a_framework() -> None:
    res = _run(ALL_CODE)
    assert res["count"] > 30, res  # the walk really found the package's modules
    assert res["frameworks"] == [], f"harness modules imported {res['frameworks']} at import time"


def test_core_modules_do_not_import_drivers_or_implementations() -> None:
    """Importing every core module (all of ``harness`` but ``harness.drivers`` and the ``__main__``
    entry points) loads no ``harness.drivers`` and no ``impl_torch``/``impl_keras`` module."""
    names = [module_name(p) for p in core_modules()]
    assert len(names) > 30 and "harness.autotune" in names and "harness.weights" in names, names
    loaded = _run(CORE_CODE, json.dumps(names))
    assert loaded == [], f"importing the core loaded {loaded}"


# ---- source checks -----------------------------------------------------------------------------------
def test_core_sources_have_no_reach_ins() -> None:
    files = core_modules()
    assert len(files) > 30, files  # the scan really covers the core
    assert HARNESS / "autotune.py" in files and HARNESS / "weights" / "neutral.py" in files
    assert not [f for f in files if "drivers" in f.relative_to(HARNESS).parts]
    bad = [hit for f in files for hit in reach_ins(f)]
    assert bad == [], "core modules import a framework implementation or a driver:\n" + "\n".join(bad)


def test_no_core_module_imports_harness_drivers() -> None:
    hits = [hit for f in core_modules() for hit in reach_ins(f) if "harness.drivers" in hit]
    assert hits == [], "\n".join(hits)


def test_entry_points_call_into_drivers() -> None:
    """The four command-line entry points are thin wrappers that call into ``harness.drivers``."""
    for pkg in ("equivalence", "bench", "flops", "weights"):
        main = HARNESS / pkg / "__main__.py"
        hits = reach_ins(main)
        assert hits and all("harness.drivers" in h for h in hits), (main, hits)
        assert not reach_ins(HARNESS / pkg / "__init__.py"), pkg


def test_checker_sees_the_drivers_reach_ins() -> None:
    """The checker finds the real (allowed) imports of the framework implementations in the drivers."""
    hits = reach_ins(HARNESS / "drivers" / "equivalence" / "layer.py")
    assert any("impl_torch" in h for h in hits) and any("impl_keras" in h for h in hits), hits


PLANTED = {
    "from_in_function": "def f():\n    from impl_torch.layers import DRTConv2d\n    return DRTConv2d\n",
    "import_top": "import impl_keras.layers\n",
    "import_as": "import impl_torch as it\n",
    "in_class_method": "class A:\n    def m(self):\n        import impl_keras\n",
    "in_conditional": "import sys\nif 'torch' in sys.modules:\n    from impl_torch import weights\n",
    "import_module": "import importlib\n\ndef f():\n    return importlib.import_module('impl_torch.train')\n",
    "from_importlib": "from importlib import import_module\nm = import_module('impl_keras.methods')\n",
    "dunder_import": "m = __import__('impl_keras')\n",
    "drivers_from": "def f():\n    from harness.drivers.bench import main\n",
    "drivers_package": "from harness import drivers\n",
    "drivers_import": "import harness.drivers.flops.cli\n",
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_planted_reach_in_is_flagged(case: str, tmp_path: Path) -> None:
    src = tmp_path / "planted.py"
    src.write_text('"""A core module with a planted reach-in."""\n\n' + PLANTED[case])
    hits = reach_ins(src)
    assert len(hits) == 1 and hits[0].startswith(f"{src}:"), hits


def test_planted_relative_reach_in_is_flagged(tmp_path: Path) -> None:
    """``from ..drivers import bench`` inside ``harness/weights/x.py`` is ``harness.drivers.bench``."""
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from ..drivers import bench\n    from . import neutral\n")
    assert len(reach_ins(src, module="harness.weights.x")) == 1
    assert reach_ins(src, module="harness.spec.weights.x") == []  # harness.spec.drivers: allowed


def test_planted_reach_in_in_the_core_tree_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reach-in planted as a core module file is caught by the same scan the core test runs."""
    fake = tmp_path / "harness"
    (fake / "drivers").mkdir(parents=True)
    (fake / "sub").mkdir()
    (fake / "sub" / "mod.py").write_text("def f():\n    from impl_torch.layers import DRTConv2d\n")
    (fake / "drivers" / "ok.py").write_text("from impl_torch.layers import DRTConv2d\n")
    (fake / "sub" / "__main__.py").write_text("from harness.drivers.ok import main\n")
    monkeypatch.setattr(sys.modules[__name__], "HARNESS", fake)
    files = core_modules()
    assert files == [fake / "sub" / "mod.py"]
    assert [h for f in files for h in reach_ins(f)] == [f"{fake / 'sub' / 'mod.py'}:2: impl_torch.layers"]


def test_clean_sources_are_not_flagged(tmp_path: Path) -> None:
    src = tmp_path / "clean.py"
    src.write_text(
        '"""Mentions impl_torch.layers and harness.drivers only in text."""\n'
        "from harness.spec.layer import DRTConvSpec\n"
        "import importlib\n"
        'TRAINERS = {"torch": "impl_torch.train:run_job"}  # a plugin path, resolved elsewhere\n'
        "def load(name: str):\n"
        "    return importlib.import_module(name)\n"
        "import impl_torchvision_like  # a different top-level name\n"
    )
    assert reach_ins(src) == []
