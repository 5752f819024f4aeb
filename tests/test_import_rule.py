"""The codebase's rule: ``probseg`` never imports ``simulator`` (the simulator uses the model through its
public API, and the model package must install and run without the benchmark harness)."""

from __future__ import annotations

import ast
from pathlib import Path

# This checkout's package, not whichever probseg is installed: the rule is about the code under test.
PROBSEG = Path(__file__).resolve().parents[1] / "probseg"
IMPORTERS = {"import_module", "__import__"}


def _is_simulator(module: str | None) -> bool:
    return module is not None and (module == "simulator" or module.startswith("simulator."))


def simulator_imports(source: str, filename: str = "<string>") -> list[str]:
    """``file:line`` of each import of ``simulator`` in ``source``: plain, from-imports and
    ``importlib.import_module``/``__import__`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            hit = any(_is_simulator(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            hit = node.level == 0 and _is_simulator(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0] if node.args else None
            hit = (name in IMPORTERS and isinstance(first, ast.Constant) and isinstance(first.value, str)
                   and _is_simulator(first.value))
        else:
            continue
        if hit:
            found.append(f"{filename}:{node.lineno}")
    return found


def test_the_checker_sees_every_form_of_import():
    sources = ["import simulator", "import os, simulator.session as s", "from simulator.corrections import Click",
               "from simulator import session", "def f():\n    import simulator", "importlib.import_module('simulator.cli')",
               "__import__('simulator')"]
    for src in sources:
        assert simulator_imports(src), src
    for src in ["import simulators", "from .simulator import x", "from probseg import interaction", "import_module(name)"]:
        assert not simulator_imports(src), src


def test_probseg_never_imports_simulator():
    files = sorted(PROBSEG.rglob("*.py"))
    assert len(files) > 10  # the walk found the package
    found = [hit for path in files for hit in simulator_imports(path.read_text(), str(path.relative_to(PROBSEG.parent)))]
    assert found == []
