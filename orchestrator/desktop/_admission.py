"""Admission of desktop starts on a node: at most N start at once, the others queue.

A desktop start is CPU-heavy (Xvfb, the window manager, the panel, VNC and sshd all come
up at once); on a small node, dozens started together starve each other past their ready
deadline. So a start first takes one of N *start slots*, shared by every process on the
node (agent actors are separate processes): the slots are files under
``<runtime_dir>/start-slots`` locked with ``flock``, which the kernel releases when the
holding process dies, so a crashed starter never leaks one. The slot is held until the
desktop is ready (or has failed); the ready deadline counts from when the slot was taken.

Waiting for a slot has no deadline of its own: every holder gives its slot back within its
own ready deadline, so a queue of K starts ahead waits at most about K/N ready deadlines.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from ..config import settings

__all__ = ["SLOT_POLL_S", "default_start_slots", "slot_dir", "start_slot", "start_slots"]

log = logging.getLogger(__name__)

SLOT_POLL_S = 0.05
"""How often a queued start looks for a free slot (a slot is held for seconds)."""


def default_start_slots() -> int:
    """Concurrent desktop starts a node sustains best, from its cores (see the setting)."""
    return max(2, len(os.sched_getaffinity(0)))


def start_slots() -> int:
    """This node's number of start slots; 0 means starts are not limited."""
    n = settings().desktop_start_slots
    return default_start_slots() if n is None else n


def slot_dir() -> Path:
    """Where this node's start-slot files live."""
    return settings().runtime_dir / "start-slots"


def _try_take(fds: list[int]) -> int | None:
    """Lock one of the slot files (tried from a random one on); its index, or None."""
    first = random.randrange(len(fds))
    for k in range(len(fds)):
        i = (first + k) % len(fds)
        try:
            fcntl.flock(fds[i], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        return i
    return None


@asynccontextmanager
async def start_slot(
    on_queued: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[int | None]:
    """Hold one of this node's desktop start slots for the body; yields its index (None
    when starts are not limited). Waits for a free one first, after awaiting ``on_queued``
    (once) if every slot is taken."""
    n = start_slots()
    if n == 0:
        yield None
        return
    where = slot_dir()
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Each open() is its own open file description, so the locks also exclude each other
    # between starts in one process. Non-inheritable: children (ssh, docker) get none.
    fds = [os.open(where / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600) for i in range(n)]
    try:
        taken = _try_take(fds)
        if taken is None:
            t0 = time.monotonic()
            if on_queued is not None:
                await on_queued()
            while True:
                await asyncio.sleep(SLOT_POLL_S)  # polling a lock that is held for seconds
                taken = _try_take(fds)
                if taken is not None:
                    break
            log.info("desktop start waited %.2f s for a start slot", time.monotonic() - t0)
        yield taken
    finally:
        for fd in fds:  # closing the locked one releases its lock
            with suppress(OSError):
                os.close(fd)
