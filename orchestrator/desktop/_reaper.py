"""Find desktop containers whose owner is gone and remove them, with their host files.

Runs once in the background when a process first starts a desktop, and on demand
(``orchestrator desktops reap``). Owners are judged by ``_owner.owner_is_alive``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from .._docker import client, translate_errors
from ..config import settings
from ..errors import OrchestratorError
from . import _container
from ._display import X11_DIR, release_display
from ._owner import owner_is_alive

__all__ = ["reap", "reap_in_background"]

log = logging.getLogger(__name__)

_started = False
_started_lock = threading.Lock()


REAP_GRACE_S = 15.0
"""Background sweeps leave containers younger than this alone: one may still be starting
for a process that will not own it (a test's deliberate orphan, a hand-over), and the
sweeps of other processes on the node must not take it from under its start."""


def reap(min_age_s: float = REAP_GRACE_S) -> list[str]:
    """Remove every desktop container whose owner is gone (and that is at least
    ``min_age_s`` old: 0 for everything, as ``orchestrator desktops reap`` does); return
    their names."""
    with translate_errors("listing desktop containers"):
        containers = client().containers.list(all=True, filters={"label": _container.LABEL})
    removed: list[str] = []
    now = time.time()
    for c in containers:
        owner = c.labels.get("orchestrator.owner", "")
        if owner and owner_is_alive(owner):
            continue
        if min_age_s > 0 and now - _created(c.attrs.get("Created", "")) < min_age_s:
            continue
        log.info("reaping desktop %s (owner %s is gone)", c.name, owner or "unknown")
        _container.remove(c.id)
        sockdir = c.labels.get("orchestrator.sockdir")
        if sockdir and _is_ours(Path(sockdir)):
            _release_links_to(Path(sockdir) / "x11" / "X0")
            shutil.rmtree(sockdir, ignore_errors=True)
        removed.append(c.name)
    return removed


def _created(stamp: str) -> float:
    """Docker's ``Created`` (RFC 3339, nanoseconds) as epoch seconds; 0 when unreadable."""
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        when = datetime.fromisoformat(head).replace(tzinfo=UTC)
        return when.timestamp() + (float(f"0.{frac}") if frac.isdigit() else 0.0)
    except ValueError:
        return 0.0


def _is_ours(path: Path) -> bool:
    """Whether a container's ``orchestrator.sockdir`` label names a directory right under
    the runtime's ``desktops/`` (spelled plainly: no ``..``, not a link), the only place a
    desktop's socket directory can be; anything else is never removed."""
    root = (settings().runtime_dir / "desktops").resolve()
    plain = path.is_absolute() and os.path.normpath(path) == str(path)
    if not plain or path.name in ("", ".", "..") or path.parent.resolve() != root:
        return False
    return path.is_dir() and not path.is_symlink()


def _release_links_to(x_socket: Path) -> None:
    try:
        names = os.listdir(X11_DIR)
    except OSError:
        return
    for name in names:
        if name.startswith("X") and name[1:].isdigit():
            release_display(int(name[1:]), x_socket)


def reap_in_background() -> None:
    """Reap once per process, on a daemon thread, without delaying the caller."""
    global _started
    with _started_lock:
        if _started:
            return
        _started = True

    def run() -> None:
        try:
            names = reap()
        except OrchestratorError as e:
            log.warning("desktop reaper failed: %s", e)
            return
        if names:
            log.info("reaped %d orphaned desktop(s): %s", len(names), ", ".join(names))

    threading.Thread(target=run, name="desktop-reaper", daemon=True).start()
