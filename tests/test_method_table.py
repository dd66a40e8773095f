"""The method table is the one place a method's shape lives (issue 11).

* every row is consistent (stages end in order, steps name trained networks that exist, hyperparameters it
  uses are registered, defaults are for known hyperparameters);
* every row's per-step loss code exists in both frameworks, found from the row alone (no registry line);
* no module outside the table branches on a method's name (read from the source: a comparison with, or
  membership test in, a literal method name fails).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from harness import hparams as H
from harness import method_table
from harness.spec.method import MethodSpec

ROOT = Path(__file__).resolve().parent.parent
NAMES = set(method_table.METHODS)


@pytest.mark.parametrize("name", method_table.METHODS)
def test_row_is_consistent(name: str) -> None:
    row = method_table.TABLE[name]
    spec = MethodSpec.create(name, "digits", num_sources=max(2, row.min_sources))
    nets = {n.name for n in spec.networks()}
    ends = [s.end for s in spec.stages()]
    assert ends == sorted(ends) and ends[-1] == 1.0 and all(0 < e <= 1 for e in ends)
    for i, stage in enumerate(row.stages):
        for step, trains, repeat in spec.steps(i):
            assert set(trains) <= nets, (step, trains)
            assert repeat >= 1
        for dst, src in stage.copies:
            assert {dst, src} <= nets
        assert stage.predict_features in nets
    assert set(row.uses) <= set(H.REGISTRY), set(row.uses) - set(H.REGISTRY)
    assert set(row.defaults) <= set(H.names(name)), set(row.defaults) - set(H.names(name))
    assert row.display and row.doc


@pytest.mark.parametrize("framework", ["impl_torch", "impl_keras"])
@pytest.mark.parametrize("name", method_table.METHODS)
def test_every_step_has_loss_code_in_both_frameworks(framework: str, name: str) -> None:
    row = method_table.TABLE[name]
    path = ROOT / framework / "methods" / f"{row.module}.py"
    assert path.exists(), path
    tree = ast.parse(path.read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert row.cls in classes, f"{path} has no class {row.cls}"
    defined = {f.name for f in classes[row.cls].body if isinstance(f, ast.FunctionDef)}
    for stage in row.stages:
        for step in stage.steps:
            assert step.loss in defined, f"{path}: {row.cls}.{step.loss} (step of stage {stage.name})"
    if any(n.kind == "fixed" for n in row.nets):
        assert "build_fixed" in defined, f"{path}: {row.cls}.build_fixed"


def _method_literals(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_method_literals(e) for e in node.elts)) if node.elts else set()
    return set()


def _is_method_name(node: ast.AST) -> bool:
    """An expression that holds a method's name: ``method``, ``spec.name``, ``job["method"]``,
    ``job.get("method")``, ``self.spec.name``, ``rec["method"]`` ... (other values that happen to equal a
    method name, such as the GRL schedule ``grl == "dann"`` or the head kind ``head == "mcd"``, are not)."""
    text = ast.unparse(node)
    return "method" in text or text.endswith("spec.name") or text == "name"


def name_branches(path: Path) -> list[str]:
    """``file:line`` of every comparison of a method's name with a literal method name (``method ==
    "adda"``, ``spec.name in ("mcd", "mcd_grl")``) in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            hit = set().union(*(_method_literals(s) for s in sides))
            if hit and any(_is_method_name(s) for s in sides if not _method_literals(s)):
                out.append((node.lineno, f"{path.relative_to(ROOT)}:{node.lineno}: {sorted(hit)}"))
    return [text for _, text in sorted(out)]


def test_no_module_branches_on_a_method_name() -> None:
    files = [
        p
        for d in ("harness", "impl_torch", "impl_keras")
        for p in sorted((ROOT / d).rglob("*.py"))
        if p != ROOT / "harness" / "method_table.py"
    ]
    found = [hit for p in files for hit in name_branches(p)]
    assert not found, "branch on a method name outside harness/method_table.py:\n" + "\n".join(found)


def test_the_checker_sees_a_planted_branch(tmp_path: Path) -> None:
    planted = ROOT / "harness" / "_planted_branch_for_test.py"
    planted.write_text(
        'def f(method, spec, grl):\n'
        '    a = 1 if method in ("adda", "dann") else 0\n'
        '    b = spec.name == "mcd"\n'
        '    c = grl == "dann"\n'  # a schedule's name, not a method's: not flagged
    )
    try:
        assert name_branches(planted) == [
            "harness/_planted_branch_for_test.py:2: ['adda', 'dann']",
            "harness/_planted_branch_for_test.py:3: ['mcd']",
        ]
    finally:
        planted.unlink()


def test_modules_are_found_from_the_row_alone() -> None:
    for row in method_table.ROWS:
        for fw in ("impl_torch", "impl_keras"):
            assert importlib.util.find_spec(f"{fw}.methods.{row.module}") is not None
