"""Host-side display numbers for desktops' X sockets.

A desktop's Xvfb listens on ``<sockdir>/x11/X0`` (bind-mounted into the container as
``/tmp/.X11-unix``). libX11/xcb only open sockets under ``/tmp/.X11-unix``, so each desktop
gets a host display number ``n`` through the symlink ``/tmp/.X11-unix/X<n>`` pointing at its
socket. ``os.symlink`` fails when the name exists, which makes it an atomic allocator; an
X-style lock file ``/tmp/.X<n>-lock`` holding our pid keeps real X servers off the number.
A link whose target is gone or refuses connections is stale and is reclaimed, under a
file lock so that two processes never reclaim the same number.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from ..errors import DisplayError

__all__ = ["allocate_display", "release_display"]

X11_DIR = Path("/tmp/.X11-unix")
_SPAN = 2000


def _lock_path(n: int) -> Path:
    return Path(f"/tmp/.X{n}-lock")


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    X11_DIR.mkdir(mode=0o1777, exist_ok=True)
    with open(X11_DIR / ".orchestrator.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _is_stale(link: Path) -> bool:
    if not link.is_symlink():
        return False  # a real X server's socket: never ours to take
    target = link.resolve()
    if not target.exists():
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(target))
        except OSError:
            return True
    return False


def allocate_display(x_socket: Path, base: int) -> int:
    """Link a free display number to ``x_socket`` and return the number."""
    with _allocation_lock():
        for n in range(base, base + _SPAN):
            link = X11_DIR / f"X{n}"
            lock = _lock_path(n)
            if lock.exists() and not link.is_symlink():
                continue  # a real X server holds this number
            try:
                os.symlink(x_socket, link)
            except FileExistsError:
                if not _is_stale(link):
                    continue
                link.unlink(missing_ok=True)
                os.symlink(x_socket, link)
            lock.write_text(f"{os.getpid():10d}\n")
            return n
    raise DisplayError(f"no free display number in {base}..{base + _SPAN - 1} under {X11_DIR}")


def release_display(n: int, x_socket: Path | None = None) -> None:
    """Remove display ``n``'s link and lock (only if it still points at ``x_socket``)."""
    link = X11_DIR / f"X{n}"
    with _allocation_lock():
        try:
            if x_socket is not None and Path(os.readlink(link)) != x_socket:
                return
        except OSError:
            return
        link.unlink(missing_ok=True)
        _lock_path(n).unlink(missing_ok=True)
