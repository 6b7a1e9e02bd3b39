"""What a non-editable install (``pip install modelserve``) ships: every package in the tree.

setup.py imports Cython at the top (a build dependency, not installed in the test environment), so
the test runs only its ``_packages`` function, taken from the file as it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def _setup_packages() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_packages")
    namespace: dict = {"find_packages": find_packages}
    exec(compile(ast.Module([func], []), "setup.py", "exec"), namespace)  # noqa: S102
    return namespace["_packages"]()


def _tree_packages() -> set[str]:
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "modelserve").rglob("__init__.py")}
    found |= {"modelserve." + ".".join(p.parent.relative_to(ROOT).parts)
              for p in (ROOT / "engines").rglob("__init__.py")}
    return found


def test_every_package_in_the_tree_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # find_packages looks in the working directory, as pip runs setup.py
    packages, tree = set(_setup_packages()), _tree_packages()
    assert {"modelserve.monitoring", "modelserve.serving", "modelserve.engines.tensorrt"} <= tree
    assert tree <= packages, f"not installed by setup.py: {sorted(tree - packages)}"
    assert packages <= tree, f"setup.py names packages that do not exist: {sorted(packages - tree)}"
