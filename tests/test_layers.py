"""The core (store, ingestion, engine, sandbox, reports) never imports Qt: checked statically and at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rlm_desktop"
QT_MODULES = ("PySide6", "shiboken6", "qasync", "PyQt5", "PyQt6")
GUI_PACKAGE = "gui"  # rlm_desktop/gui/ is the only place Qt may be imported
# The command line is the composition root: `rlm-desktop gui` starts the window through one import made inside
# the function that runs it, so importing or running any other command never loads Qt (checked below).
LAZY_GUI_ENTRY = ("cli.py", "rlm_desktop.gui.app")


def _lazy_imports(tree: ast.Module) -> set[int]:
    """ids of import nodes inside a function body."""
    inner = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            inner |= {id(n) for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)}
    return inner


def core_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != GUI_PACKAGE]


def test_no_core_module_imports_qt():
    offenders = []
    for path in core_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lazy = _lazy_imports(tree)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level and node.module:
                names = [node.module]
                if node.module.split(".")[0] == GUI_PACKAGE:
                    offenders.append(f"{path.relative_to(PACKAGE)} imports the gui package")
            for name in names:
                if (str(path.relative_to(PACKAGE)), name) == LAZY_GUI_ENTRY and id(node) in lazy:
                    continue
                if name.split(".")[0] in QT_MODULES or name.startswith(f"rlm_desktop.{GUI_PACKAGE}"):
                    offenders.append(f"{path.relative_to(PACKAGE)}: import {name}")
    assert core_modules(), "no core modules found"
    assert not offenders, offenders


def test_importing_every_core_module_loads_no_qt():
    modules = sorted(
        ".".join(("rlm_desktop", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in core_modules()
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
