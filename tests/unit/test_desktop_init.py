"""desktop-init, the desktop's PID 1: standard library only, and checked like the package.

It runs on the image's own python3 (Debian's), where nothing but the standard library is
installed, and it has no ``.py`` suffix, so ruff and mypy see it only when named.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "desktop_image" / "desktop-init"


def _imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_desktop_init_imports_only_the_standard_library() -> None:
    imported = _imported_modules(INIT.read_text())
    assert imported, "no imports found: is this still the Python desktop-init?"
    assert imported - set(sys.stdlib_module_names) == set()


def test_the_import_check_sees_a_third_party_import() -> None:
    assert _imported_modules("import asyncssh\nfrom Xlib import X\n") - set(
        sys.stdlib_module_names
    ) == {"asyncssh", "Xlib"}


def test_desktop_init_is_a_target_of_ruff_and_mypy() -> None:
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert "desktop_image/desktop-init" in ruff.get("extend-include", [])
    mypy_lines = [
        line
        for line in (ROOT / "scripts" / "test.sh").read_text().splitlines()
        if "bin/mypy" in line
    ]
    assert mypy_lines and all("desktop_image/desktop-init" in line for line in mypy_lines)
