"""Files on an agent's desktop as bytes, for callers on other nodes (the HTTP API).

A directory is read as a gzipped tarball of its tree. Reads are capped so that one request
cannot move an unbounded amount of data through the object store.
"""

from __future__ import annotations

import asyncio
import errno
import io
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from orchestrator.errors import AgentError

if TYPE_CHECKING:
    from orchestrator.desktop import Desktop

__all__ = ["MAX_READ_BYTES", "read_path", "write_file"]

MAX_READ_BYTES = 256 << 20
"""Largest file or directory tree read at once (256 MiB)."""

_TAR_SLACK = 1 << 20
"""What the archive of a tree may hold beyond its files' bytes (headers, padding)."""

User = Literal["agent", "root"]


def _tree_size(root: Path) -> int:
    if root.is_file():
        return root.stat().st_size
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _gzip_tree(root: Path, name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=name)
    return buf.getvalue()


async def read_path(
    desktop: Desktop, path: str, user: User = "agent", limit: int = MAX_READ_BYTES
) -> tuple[bool, bytes]:
    """``(is_directory, data)`` of ``path`` on the desktop: a file's bytes, or a directory as
    a gzipped tarball. Raises ``FileNotFoundError``/``PermissionError``/``OSError`` as the
    desktop's copy does, ``AgentError`` when it is over ``limit`` bytes."""
    with tempfile.TemporaryDirectory(prefix="read-") as tmp:
        local = Path(tmp) / "x"
        try:  # capped while it arrives: a huge file never lands on this node's disk
            await desktop.download(path, local, user=user, max_bytes=limit + _TAR_SLACK)
        except OSError as e:
            if e.errno == errno.EFBIG:
                raise AgentError(
                    f"{path} holds more than the read limit of {limit} bytes"
                ) from None
            raise
        size = await asyncio.to_thread(_tree_size, local)
        if size > limit:
            raise AgentError(f"{path} holds {size} bytes, over the read limit of {limit}")
        if local.is_dir():
            name = Path(path.rstrip("/")).name or "root"
            return True, await asyncio.to_thread(_gzip_tree, local, name)
        return False, await asyncio.to_thread(local.read_bytes)


async def write_file(desktop: Desktop, path: str, data: bytes, user: User = "agent") -> int:
    """Write ``data`` to the file ``path`` on the desktop (owned by ``user``; parents made,
    an existing file replaced); returns the number of bytes written."""
    with tempfile.TemporaryDirectory(prefix="write-") as tmp:
        local = Path(tmp) / "file"
        await asyncio.to_thread(local.write_bytes, data)
        await desktop.upload(local, path, user=user)
    return len(data)
