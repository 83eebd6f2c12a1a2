"""Progress of a task being waited on: a ``tqdm.auto`` bar (a widget in notebooks with
ipywidgets, a bar in terminals), or one status line on stderr when tqdm is not importable.

A task that does the work itself counts its steps (of its step budget); one that delegated
counts its subtasks done (of those it started), which is where a team's work shows.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Shows a task's state and how far it is: steps done, or subtasks done."""

    def __init__(self, task_id: str, step_budget: int, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._task_id = task_id
        self._budget = step_budget
        self._shown: tuple[str, int, int, str] = ("", 0, step_budget, "step")
        self._started = time.monotonic()
        self._bar: Any = None
        self._tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        if not enabled:
            return
        try:  # imported by name: it ships no type stubs
            tqdm = importlib.import_module("tqdm.auto").tqdm
        except ImportError:
            return
        self._bar = tqdm(total=step_budget, desc=task_id, unit="step", leave=True)

    def update(self, state: str, steps: int, subtasks: tuple[int, int] | None = None) -> None:
        """``steps`` the task took itself; ``subtasks``: (done, started) once it delegated."""
        if not self._enabled:
            return
        if subtasks is not None and subtasks[1] > 0:
            done, total, unit = subtasks[0], subtasks[1], "subtask"
        else:
            done, total, unit = steps, self._budget, "step"
        shown = (state, done, total, unit)
        if shown == self._shown:
            return
        if self._bar is not None:
            if (total, unit) != self._shown[2:]:
                self._bar.unit = unit
                self._bar.reset(total=total)
            self._bar.n = done
            self._bar.set_postfix_str(state, refresh=False)
            self._bar.refresh()
        elif state != self._shown[0] or self._tty:
            elapsed = time.monotonic() - self._started
            line = f"{self._task_id}: {state}, {done}/{total} {unit}s done, {elapsed:.0f} s"
            end = "" if self._tty else "\n"
            sys.stderr.write(("\r" if self._tty else "") + line + end)
            sys.stderr.flush()
        self._shown = shown

    def close(self) -> None:
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
