"""The package's layers point one way: a module imports only modules of its own layer or the layers below.

taxonomy, errors, risk, utils → corpus → data → metrics → models → evaluation → tasks, pipeline, tuning
→ deploy → scan, serve, monitoring, api, benchmarks. Imports are read with ``ast`` (those inside functions
too), so a lower layer cannot reach up by hiding an import in a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "training_pipeline"
LAYERS: dict[str, int] = {
    "taxonomy": 0, "errors": 0, "risk": 0, "utils": 0,
    "corpus": 1,
    "data": 2,
    "metrics": 3,
    "models": 4,
    "evaluation": 5,
    "tasks": 6, "pipeline": 6, "tuning": 6, "config": 0,
    "deploy": 7,
    "cli": 8, "__main__": 8,
    "scan": 8, "serve": 8, "monitoring": 8, "api": 8, "benchmarks": 8,
}  # fmt: skip


def room(module: str) -> str | None:
    """``training_pipeline.data.evm`` → ``data``; None for modules outside the package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "training_pipeline" and len(parts) > 1 else None


def imports_of(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, relative ones resolved, those inside functions too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    package = ".".join(path.relative_to(package_dir.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if room(module) is None and module == "training_pipeline":
                found += [(node.lineno, f"training_pipeline.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_room_has_a_layer() -> None:
    rooms = {room(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in modules()}
    assert rooms <= set(LAYERS), f"give these a layer in LAYERS: {sorted(rooms - set(LAYERS))}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    upward = upward_imports(path)
    assert not upward, f"{path.relative_to(PACKAGE)} imports a higher layer: " + "; ".join(upward)


def upward_imports(path: Path, package_dir: Path = PACKAGE) -> list[str]:
    me = room(".".join(path.relative_to(package_dir.parent).with_suffix("").parts))
    return [
        f"line {line}: {module} ({room(module)}, layer {LAYERS[room(module)]})"
        for line, module in imports_of(path, package_dir)
        if room(module) in LAYERS and LAYERS[room(module)] > LAYERS[me]
    ]


def test_the_checker_sees_hidden_and_relative_upward_imports(tmp_path: Path) -> None:
    """Imports inside functions and relative imports are read: what the check exists to catch."""
    package_dir = tmp_path / "training_pipeline"
    fake = package_dir / "data" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "from ..taxonomy import LABELS\n"
        "def f():\n    from training_pipeline.pipeline.runner import Pipeline\n"
        "def g():\n    from ..models import nets\n"
    )
    found = upward_imports(fake, package_dir)
    assert [f.split(":")[0] for f in found] == ["line 3", "line 5"]
    assert "training_pipeline.pipeline.runner" in found[0] and "training_pipeline.models" in found[1]
