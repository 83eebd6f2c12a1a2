"""A task's output files: copied off the agent's desktop into the records when it ends.

Each output path (``TaskSpec.outputs``) is a file or a directory on the desktop; every
regular file under it is stored as a blob with a ``file`` event naming its desktop path, so
that the task's artifacts keep it after the desktop is gone. Limits keep one task from
filling the records: files past them are skipped and named in the problems returned.
"""

from __future__ import annotations

import asyncio
import posixpath
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import OrchestratorError
from orchestrator.records import media_type

if TYPE_CHECKING:
    from ._task_ports import TaskDesktop

__all__ = ["MAX_FILES", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES", "collect_outputs"]

MAX_FILES = 200
"""Most files kept per task."""
MAX_FILE_BYTES = 64 << 20
"""Largest single file kept (64 MiB)."""
MAX_TOTAL_BYTES = 256 << 20
"""Most bytes kept per task (256 MiB)."""

KeepFile = Callable[[str, bytes, str], Awaitable[None]]
"""``keep(desktop_path, data, media_type)``: store one file durably."""


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


async def collect_outputs(desktop: TaskDesktop, paths: Sequence[str], keep: KeepFile) -> list[str]:
    """Copy each of ``paths`` off ``desktop`` and ``keep`` every file; returns the problems
    (a missing path, a refused read, a file over a limit) as sentences, empty if none."""
    problems: list[str] = []
    count = total = 0
    with tempfile.TemporaryDirectory(prefix="outputs-") as tmp:
        for i, path in enumerate(paths):
            local = Path(tmp) / str(i)
            try:
                await desktop.download(path, local)
            except FileNotFoundError:
                problems.append(f"output {path}: no such file or directory")
                continue
            except (OSError, ValueError, OrchestratorError) as e:
                problems.append(f"output {path}: {e}")
                continue
            for f in await asyncio.to_thread(_files_under, local):
                rel = f.relative_to(local).as_posix()
                remote = path if rel == "." else posixpath.join(path.rstrip("/"), rel)
                size = f.stat().st_size
                if count >= MAX_FILES:
                    problems.append(f"output {remote}: skipped, more than {MAX_FILES} files")
                    continue
                if size > MAX_FILE_BYTES or total + size > MAX_TOTAL_BYTES:
                    problems.append(
                        f"output {remote}: skipped, {size} bytes is over the limit "
                        f"({MAX_FILE_BYTES} per file, {MAX_TOTAL_BYTES} per task)"
                    )
                    continue
                data = await asyncio.to_thread(f.read_bytes)
                await keep(remote, data, media_type(remote))
                count += 1
                total += size
    return problems
