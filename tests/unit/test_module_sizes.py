"""No module of the runtime's packages is over 500 lines (issue 10): a file that needs a
table of contents is two files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500


def test_no_module_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for package in ("orchestrator", "actors", "serve_app")
        for path in (ROOT / package).rglob("*.py")
    }
    assert len(sizes) > 50, "the packages were not found"
    over = {name: n for name, n in sizes.items() if n > LIMIT}
    assert over == {}, f"split these by concern: {over}"
