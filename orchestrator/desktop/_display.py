"""Host-side display numbers for desktops' X sockets.

A desktop's Xvfb listens on ``<sockdir>/x11/X0`` (bind-mounted into the container as
``/tmp/.X11-unix``, where the container can replace it). libX11/xcb only open sockets under
``/tmp/.X11-unix``, so each desktop gets a host display number ``n`` through the symlink
``/tmp/.X11-unix/X<n>``, pointing at ``/proc/<pid>/fd/<fd>``: an ``O_PATH`` pin the
desktop holds on the X socket it checked (``_hostfs``), so a name the container swaps
later is never followed. ``os.symlink`` fails when the name exists, which makes it an
atomic allocator; an X-style lock file ``/tmp/.X<n>-lock`` holding our pid keeps real X
servers off the number. A link whose pin is gone (its process or descriptor closed) is
stale and is reclaimed, under a file lock so that two processes never reclaim the same
number; nothing here connects to a socket.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .._flock import file_lock
from ..errors import DisplayError

__all__ = ["allocate_display", "point_display", "release_display"]

X11_DIR = Path("/tmp/.X11-unix")
_SPAN = 2000


def _lock_path(n: int) -> Path:
    return Path(f"/tmp/.X{n}-lock")


def _allocation_lock() -> contextlib.AbstractContextManager[None]:
    X11_DIR.mkdir(mode=0o1777, exist_ok=True)
    return file_lock(X11_DIR / ".orchestrator.lock")


_PIN = re.compile(r"/proc/(\d+)/fd/(\d+)")


def _pinned(target: str) -> str | None:
    """What a ``/proc/<pid>/fd/<fd>`` link target pins (its path), None if not a pin or
    gone; a plain target is returned as it is."""
    if _PIN.fullmatch(target) is None:
        return target
    try:
        return os.readlink(target)
    except PermissionError:
        return ""  # another user's live pin: not ours to judge
    except OSError:
        return None  # the process or the descriptor is gone


def _is_stale(link: Path) -> bool:
    """Whether a display link may be reclaimed: its pin is closed, or (a link of an older
    runtime) its target no longer exists. Never connects: the target may be the
    container's."""
    if not link.is_symlink():
        return False  # a real X server's socket: never ours to take
    try:
        target = os.readlink(link)
    except OSError:
        return True
    pinned = _pinned(target)
    if pinned is None:
        return True
    return pinned == target and not os.path.lexists(target)


def allocate_display(target: Path | str, base: int) -> int:
    """Link a free display number to ``target`` (a pin's ``/proc`` path) and return it."""
    with _allocation_lock():
        for n in range(base, base + _SPAN):
            link = X11_DIR / f"X{n}"
            lock = _lock_path(n)
            if lock.exists() and not link.is_symlink():
                continue  # a real X server holds this number
            try:
                os.symlink(target, link)
            except FileExistsError:
                if not _is_stale(link):
                    continue
                link.unlink(missing_ok=True)
                os.symlink(target, link)
            lock.write_text(f"{os.getpid():10d}\n")
            return n
    raise DisplayError(f"no free display number in {base}..{base + _SPAN - 1} under {X11_DIR}")


def point_display(n: int, target: str) -> None:
    """Point display ``n``'s link (ours) at ``target`` instead, atomically."""
    link = X11_DIR / f"X{n}"
    tmp = X11_DIR / f".X{n}.{os.getpid()}.tmp"
    with _allocation_lock():
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)


def release_display(n: int, x_socket: Path | str | None = None) -> None:
    """Remove display ``n``'s link and lock (only if it still points at ``x_socket``: the
    target itself, or the path of the pin it names)."""
    link = X11_DIR / f"X{n}"
    with _allocation_lock():
        try:
            target = os.readlink(link)
        except OSError:
            return
        # (a pin's path ends in " (deleted)" once the container removed the socket)
        pinned = (_pinned(target) or "").removesuffix(" (deleted)")
        if x_socket is not None and str(x_socket) not in (target, pinned):
            return
        link.unlink(missing_ok=True)
        _lock_path(n).unlink(missing_ok=True)
