"""Progress of a task being waited on: a ``tqdm.auto`` bar when tqdm is importable (a
widget in notebooks, a bar in terminals), otherwise one status line on stderr."""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Shows a task's state and how many of its steps are done (of its step budget)."""

    def __init__(self, task_id: str, total: int, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._task_id = task_id
        self._total = total
        self._steps = 0
        self._state = ""
        self._started = time.monotonic()
        self._bar: Any = None
        self._tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        if not enabled:
            return
        try:  # optional, never a dependency (imported by name: it ships no type stubs)
            tqdm = importlib.import_module("tqdm.auto").tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, desc=task_id, unit="step", leave=True)

    def update(self, state: str, steps: int) -> None:
        if not self._enabled:
            return
        changed = state != self._state
        if self._bar is not None:
            if steps > self._steps:
                self._bar.update(steps - self._steps)
            if changed:
                self._bar.set_postfix_str(state)
        elif changed or (self._tty and steps != self._steps):
            elapsed = time.monotonic() - self._started
            line = f"{self._task_id}: {state}, {steps}/{self._total} steps, {elapsed:.0f} s"
            end = "" if self._tty else "\n"
            sys.stderr.write(("\r" if self._tty else "") + line + end)
            sys.stderr.flush()
        self._steps, self._state = steps, state

    def close(self) -> None:
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
