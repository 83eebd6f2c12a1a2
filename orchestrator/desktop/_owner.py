"""Who owns a desktop, written on its container as a label, and whether that owner lives.

An owner is a string ``kind:details``. ``process:<boot_id>:<pid>:<start_ticks>`` names a
process on this machine (the start time guards against pid reuse). Other kinds (such as
Ray actors) register a liveness check with ``register_owner_kind``; an owner of a kind
nobody registered is treated as alive, so the reaper never removes what it cannot judge.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

__all__ = ["owner_is_alive", "process_owner", "register_owner_kind"]

_checks: dict[str, Callable[[str], bool]] = {}


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of stat: start time in clock ticks since boot


def process_owner(pid: int | None = None) -> str:
    """The owner string naming a process (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return f"process:{_boot_id()}:{pid}:{_start_ticks(pid)}"


def _process_alive(details: str) -> bool:
    boot_id, pid, ticks = details.rsplit(":", 2)
    if boot_id != _boot_id():
        return False
    return _start_ticks(int(pid)) == ticks


def register_owner_kind(kind: str, is_alive: Callable[[str], bool]) -> None:
    """Teach the reaper how to tell whether owners of ``kind`` are still alive."""
    _checks[kind] = is_alive


def owner_is_alive(owner: str) -> bool:
    """Whether the owner named by ``owner`` still exists (unknown kinds count as alive)."""
    kind, _, details = owner.partition(":")
    check = _checks.get(kind)
    if check is None:
        return True
    try:
        return check(details)
    except (ValueError, IndexError):
        return False


register_owner_kind("process", _process_alive)
