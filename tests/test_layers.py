"""Layering of lcpipe's packages: pipeline <- features <- models <- flows.

Every ``.py`` file under ``pipeline/``, ``features/``, ``models/`` and
``flows/`` is parsed (no import is executed) and each of its import
statements, wherever it is (module level, function body, ``try`` block), is
checked against the dependency direction:

- ``pipeline`` imports none of ``features``, ``models``, ``flows``;
- ``features`` imports neither ``models`` nor ``flows``;
- ``models`` imports no ``flows``;
- relative imports stay inside the file's own top-level package;
- the science packages (``pipeline``, ``features``, ``models``) never import
  ``prefect``;
- ``flows/__init__.py`` and ``flows/cli/__init__.py`` import ``prefect``,
  ``tensorflow`` and ``keras`` only inside functions, so that ``import flows``
  and ``lcpipe --help`` stay light (also checked by importing them in a fresh
  interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Top-level packages, lowest layer first.
PACKAGES = ("pipeline", "features", "models", "flows")

#: package -> packages it must not import (the layers above it).
FORBIDDEN = {pkg: set(PACKAGES[i + 1:]) for i, pkg in enumerate(PACKAGES)}

#: Packages that must run without Prefect.
SCIENCE = ("pipeline", "features", "models")

#: Modules that must not load heavy or optional frameworks when imported.
LIGHT_MODULES = ("flows/__init__.py", "flows/cli/__init__.py")
HEAVY = {"prefect", "tensorflow", "keras"}


@dataclass(frozen=True)
class Imported:
    """One imported module, as written in a file."""

    path: str          # file, relative to the repository root
    line: int
    module: str        # absolute dotted name ('' when a relative import leaves the package)
    statement: str     # the import as written (normalised)
    relative: bool
    top_level: bool    # executed at import time (not inside a function)

    @property
    def root(self) -> str:
        return self.module.split(".", 1)[0]

    def where(self) -> str:
        return f"{self.path}:{self.line}: `{self.statement}`"


def _python_files(package: str) -> list[Path]:
    files = sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)
    assert files, f"no Python files under {package}/"
    return files


def _module_package(path: Path, root: Path) -> list[str]:
    """Dotted package of a file, as parts: pipeline/io.py -> ['pipeline']."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1]  # for __init__.py, the package itself


def _alias_text(names: list[ast.alias]) -> str:
    return ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in names)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, root: Path = ROOT) -> list[Imported]:
    """Every import in a file, including those in functions and ``importlib.import_module('x')``."""
    rel = str(path.relative_to(root))
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    except SyntaxError as exc:  # pragma: no cover - would also break every other test
        pytest.fail(f"{rel}:{exc.lineno}: cannot parse: {exc.msg}")
    package = _module_package(path, root)
    found: list[Imported] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            top_level = False
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            # `if TYPE_CHECKING:` imports never run; they are still layer-checked
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, top_level)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                found.append(Imported(rel, node.lineno, a.name,
                                      f"import {a.name}" + (f" as {a.asname}" if a.asname else ""),
                                      relative=False, top_level=top_level))
        elif isinstance(node, ast.ImportFrom):
            text = f"from {'.' * node.level}{node.module or ''} import {_alias_text(node.names)}"
            if node.level == 0:
                module = node.module or ""
            elif node.level <= len(package):
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = ""  # climbs above the top-level package
            found.append(Imported(rel, node.lineno, module, text, relative=node.level > 0,
                                  top_level=top_level))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in {"import_module", "__import__"}))):
            name = node.args[0].value
            found.append(Imported(rel, node.lineno, name, f"{ast.unparse(node.func)}({name!r})",
                                  relative=False, top_level=top_level))
        for child in ast.iter_child_nodes(node):
            visit(child, top_level)

    visit(tree, True)
    return found


def _all_imports(package: str) -> list[Imported]:
    return [imp for path in _python_files(package) for imp in _imports(path)]


def _report(violations: list[str], rule: str) -> str:
    return f"{len(violations)} import(s) break the rule '{rule}':\n  " + "\n  ".join(violations)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_lower_layers(package):
    forbidden = FORBIDDEN[package]
    bad = [f"{imp.where()} imports {imp.root!r}" for imp in _all_imports(package)
           if imp.root in forbidden]
    rule = (f"{package}/ imports none of {', '.join(sorted(forbidden))}" if forbidden
            else f"{package}/ is the top layer")
    assert not bad, _report(bad, rule)


@pytest.mark.parametrize("package", PACKAGES)
def test_relative_imports_stay_in_their_package(package):
    bad = [f"{imp.where()} resolves to "
           + (repr(imp.module) if imp.module else "a module above the package")
           for imp in _all_imports(package)
           if imp.relative and imp.root != package]
    assert not bad, _report(bad, f"relative imports in {package}/ stay within {package}")


@pytest.mark.parametrize("package", SCIENCE)
def test_science_packages_do_not_import_prefect(package):
    bad = [imp.where() for imp in _all_imports(package) if imp.root == "prefect"]
    assert not bad, _report(bad, f"{package}/ runs without Prefect (no `prefect` import)")


@pytest.mark.parametrize("relpath", LIGHT_MODULES)
def test_flows_entry_modules_import_heavy_frameworks_only_in_functions(relpath):
    bad = [f"{imp.where()} at module level" for imp in _imports(ROOT / relpath)
           if imp.top_level and imp.root in HEAVY]
    assert not bad, _report(
        bad, f"{relpath} imports {', '.join(sorted(HEAVY))} only inside functions")


def test_importing_flows_and_the_cli_loads_no_heavy_framework():
    """Transitively too: a fresh interpreter that imports them has none of ``HEAVY`` loaded."""
    code = ("import sys, flows, flows.cli\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", (
        f"`import flows, flows.cli` loads {res.stdout.strip()} (must stay lazy: "
        "import them inside functions)")


def test_the_checker_sees_imports_everywhere(tmp_path):
    """The parser finds function-level, relative and import_module imports."""
    pkg = tmp_path / "pipeline" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text(
        "import os\n"
        "def f():\n"
        "    from models.forest import LightCurveForest\n"
        "    import importlib\n"
        "    importlib.import_module('flows.train')\n"
        "from ..x import y\n"
        "from ...features import z\n")
    got = {(i.line, i.module, i.top_level, i.relative)
           for i in _imports(pkg / "mod.py", root=tmp_path)}
    assert got == {(1, "os", True, False), (3, "models.forest", False, False),
                   (4, "importlib", False, False), (5, "flows.train", False, False),
                   (6, "pipeline.x", True, True), (7, "", True, True)}
