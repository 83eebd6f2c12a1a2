"""``file_lock``: one process at a time on this machine, through ``flock`` on a file.

The kernel drops the lock when its holder exits, however it exits, so a crashed process
never leaves a lock behind. The file is opened without following a symbolic link (some
live in shared directories such as ``/tmp/.X11-unix``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created empty, 0644, if missing) while inside.

    Example:
        >>> import tempfile
        >>> with file_lock(Path(tempfile.mkdtemp()) / ".lock"):
        ...     pass
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
