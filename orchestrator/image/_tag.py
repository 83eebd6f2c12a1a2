"""The desktop image's tag: a hash of its sources, so unchanged sources are never rebuilt."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["REPOSITORY", "source_digest", "tag_for"]

REPOSITORY = "orchestrator-desktop"
"""Repository name of the desktop image; the tag is the sources' digest."""

_SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def _files(directory: Path) -> list[tuple[str, Path]]:
    """Every regular file under ``directory`` as (relative POSIX path, path), sorted."""
    found: list[tuple[str, Path]] = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        if any(part in _SKIP_DIRS for part in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_file():
            found.append((rel.as_posix(), path))
    found.sort()
    return found


def source_digest(directory: Path) -> str:
    """sha256 over the sorted relative paths and contents of the files under ``directory``.

    Each file contributes its path, a NUL, its length and its bytes, so no two different
    trees hash alike by moving bytes between a name and a content.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"desktop image sources not found: {directory}")
    h = hashlib.sha256()
    for rel, path in _files(directory):
        data = path.read_bytes()
        h.update(rel.encode())
        h.update(b"\0")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def tag_for(directory: Path) -> str:
    """``orchestrator-desktop:<first 12 hex of the sources' digest>``."""
    return f"{REPOSITORY}:{source_digest(directory)[:12]}"
