"""The package's shape: no import cycles (function-level imports included), the layering of DESIGN
(`cli -> tasks -> metrics / inference -> data / models -> ops`), every module importable in a fresh interpreter in
dependency order, and public names that are what they say (functions and classes, not modules)."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import mtp.ops

SRC = Path(__file__).resolve().parents[1] / "src"

#: Top-level sub-packages each one may import (the package root ``mtp`` itself is allowed everywhere).
#: ``weights`` (the catalogue of release files) sits below ``models``, which resolves names through it; its one
#: use of ``models`` is the safe checkpoint reader (a leaf module, see WEIGHTS_MAY_IMPORT).
ALLOWED = {
    "ops": set(),
    "weights": set(),
    "data": {"ops"},
    "models": {"ops", "weights"},
    "metrics": {"ops", "data"},
    "inference": {"ops", "data", "models", "metrics", "weights"},
    "tasks": {"ops", "data", "models", "metrics", "inference", "weights"},
    "demo": {"ops", "data", "models", "metrics", "inference", "weights", "tasks"},
}
WEIGHTS_MAY_IMPORT = {"mtp.models.checkpoint_reader"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: mtp modules it imports anywhere in its body (top level, functions, TYPE_CHECKING blocks)}."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _area(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_no_import_cycles():
    try:
        order = list(TopologicalSorter(import_graph()).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
    assert "mtp.ops" in order and "mtp.cli" in order


def test_layers_import_only_downwards():
    wrong = []
    for module, deps in import_graph().items():
        area = _area(module)
        if area not in ALLOWED:
            continue
        for dep in deps:
            target = _area(dep)
            if area == "weights" and dep in WEIGHTS_MAY_IMPORT:
                continue
            if target not in (area, "mtp") and target not in ALLOWED[area]:
                wrong.append(f"{module} imports {dep}")
    assert not wrong, "\n".join(wrong)


def test_the_checkpoint_reader_weights_uses_is_a_leaf():
    """``mtp.weights`` reads files with ``mtp.models.checkpoint_reader``, which must import nothing from mtp (so the
    models -> weights -> reader chain can never close a circle)."""
    graph = import_graph()
    for module in WEIGHTS_MAY_IMPORT:
        assert graph[module] == set(), f"{module} imports {graph[module]}"


@pytest.mark.timeout(180)
def test_every_module_imports_in_dependency_order_in_a_fresh_interpreter():
    order = [m for m in TopologicalSorter(import_graph()).static_order() if not m.endswith("__main__")]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    result = subprocess.run([sys.executable, "-c", code, *order], capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr[-3000:]


def test_ops_public_names_are_functions_and_classes():
    assert len(mtp.ops.__all__) == len(set(mtp.ops.__all__)) >= 20
    for name in mtp.ops.__all__:
        obj = getattr(mtp.ops, name)
        assert inspect.isfunction(obj) or inspect.isclass(obj), f"mtp.ops.{name} is {type(obj).__name__}"
        assert obj.__doc__, f"mtp.ops.{name} has no docstring"
    namespace: dict = {}
    exec("from mtp.ops import *", namespace)
    assert set(mtp.ops.__all__) <= set(namespace)
