"""Every third-party package the library imports is declared, and the pins `make` installs fit the ranges.

A module-level import must be a runtime dependency (``[project.dependencies]``); an import inside a function
(a heavy or optional tool, e.g. the reference disassembler of a benchmark) may come from an extra instead.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "training_pipeline"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = {canonicalize_name(Requirement(r).name): Requirement(r) for r in PROJECT["dependencies"]}
EXTRAS = {
    canonicalize_name(Requirement(r).name): Requirement(r)
    for group in PROJECT["optional-dependencies"].values()
    for r in group
}
DISTRIBUTIONS = packages_distributions()


def third_party_imports(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(top-level module names imported at module level, those imported inside functions)."""
    top, nested = set(), set()
    inner = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(f)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = {node.module.split(".")[0]}
        else:
            continue
        names -= set(sys.stdlib_module_names) | {"training_pipeline", "__future__"}
        (nested if id(node) in inner else top).update(names)
    return top, nested


def distribution(module: str, declared: set[str] | None = None) -> str:
    """The distribution that provides ``module``: of several (``mlflow`` ships in mlflow and mlflow-skinny),
    the one in ``declared`` if any."""
    dists = [canonicalize_name(d) for d in DISTRIBUTIONS.get(module, [])]
    assert dists, f"{module}: imported but not installed, so not declared anywhere"
    return next((d for d in dists if d in (declared or set())), dists[0])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_are_declared(path: Path) -> None:
    top, nested = third_party_imports(ast.parse(path.read_text()))
    missing = sorted(m for m in top if distribution(m, set(RUNTIME)) not in RUNTIME)
    assert not missing, f"module-level imports not in [project.dependencies]: {missing}"
    declared = set(RUNTIME) | set(EXTRAS)
    missing = sorted(m for m in nested if distribution(m, declared) not in declared)
    assert not missing, f"imports declared nowhere (dependencies or an extra): {missing}"


def test_pins_satisfy_the_declared_ranges() -> None:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req
    for name, req in {**RUNTIME, **EXTRAS}.items():
        if name not in pins:
            assert name not in RUNTIME, f"{name}: a runtime dependency without a pin in requirements.txt"
            continue  # an extra `make` does not install
        (version,) = [s.version for s in pins[name].specifier]
        assert req.specifier.contains(version), f"{name}=={version} (requirements.txt) is outside {req}"


def test_the_checker_sees_undeclared_imports() -> None:
    tree = ast.parse("import numpy\nimport json\ndef f():\n    import pyevmasm\n")
    assert third_party_imports(tree) == ({"numpy"}, {"pyevmasm"})
    assert distribution("pyevmasm") in EXTRAS and distribution("pyevmasm") not in RUNTIME
