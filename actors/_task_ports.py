"""The typed seams of a running task: what the runner needs from a desktop, from the
records, and from the agent that hosts it (to delegate).

- ``TaskDesktop``: look and act (``orchestrator.desktop.Desktop`` is one; the unit tests'
  stand-in is another).
- ``TaskRecords``: store the task with the event announcing its state, and other events.
- ``TaskHost``: run a subtask on some specialist; the runner passes itself as the
  ``ParentTask``, so the subtask's id lands in the task record the runner owns.
- ``TaskFailed``: raised inside a task that cannot succeed (the message is the reason).

Example:
    >>> from orchestrator.desktop import Desktop
    >>> def fits(d: Desktop) -> TaskDesktop:
    ...     return d  # checked by mypy: a real desktop is a task desktop
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from orchestrator import actions as a
from orchestrator.domain import Event, Subtask, TaskInfo, TaskSpec

__all__ = ["ParentTask", "Shot", "TaskDesktop", "TaskFailed", "TaskHost", "TaskRecords"]


class TaskFailed(Exception):
    """The task cannot succeed; the message is the reason shown to users and parents."""


class Shot(Protocol):
    """An encoded screenshot (``orchestrator.desktop.Screenshot`` is one)."""

    @property
    def data(self) -> bytes: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def media_type(self) -> str: ...


class TaskDesktop(Protocol):
    """The part of a desktop a task uses."""

    @property
    def size(self) -> tuple[int, int]:
        """The screen's ``(width, height)`` in pixels."""
        ...

    async def screenshot(
        self,
        format: Literal["png", "jpeg"] = "png",
        *,
        quality: int = 85,
        size: tuple[int, int] | None = None,
    ) -> Shot:
        """Grab the screen, resized to ``size`` (``(width, height)``) when given."""
        ...

    async def act(self, action: a.Action) -> a.ActionResult:
        """Carry out one action; failures the model should read come back as a result."""
        ...

    async def wait_until_settled(
        self, *, quiet_s: float = 0.15, timeout_s: float = 3.0, poll_s: float = 0.03
    ) -> bool:
        """Wait until the screen stops changing for ``quiet_s``; False if it never did."""
        ...

    async def run(
        self,
        cmd: str,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - the command's own limit
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: Literal["agent", "root"] = "agent",
    ) -> a.CommandResult:
        """Run a shell command on the desktop."""
        ...

    async def download(
        self,
        remote: str,
        local: Path | str,
        *,
        user: Literal["agent", "root"] = "agent",
        max_bytes: int | None = None,
    ) -> None:
        """Copy a file or directory from the desktop to ``local``."""
        ...


class TaskRecords(Protocol):
    """Where a task's record and timeline are stored, durably."""

    async def put_task(self, task: TaskInfo, event: Event | None = None) -> TaskInfo:
        """Store ``task`` with the ``task`` event announcing its state, in one write; returns
        it as stored (a task that has ended stays as it ended)."""
        ...

    async def append_event(self, event: Event, blob: tuple[bytes, str] | None = None) -> None:
        """Store an event; ``blob`` (``(data, media_type)``: a screenshot or a file) first."""
        ...


class ParentTask(Protocol):
    """A delegating task, as its host sees it."""

    @property
    def task(self) -> TaskInfo:
        """The task as it stands."""
        ...

    async def add_subtask(self, child: TaskInfo) -> None:
        """Record that ``child`` (just assigned to a specialist) is one of its subtasks."""
        ...


class TaskHost(Protocol):
    """What the runner needs from its agent to delegate."""

    async def run_subtask(
        self,
        parent: ParentTask,
        subtask: Subtask,
        spec: TaskSpec,
        attempt: int,
        on: str | None = None,
    ) -> TaskInfo:
        """Run ``subtask`` (as ``spec``) on a specialist (a fresh one when ``attempt`` > 1;
        ``on``: that held child, for review rounds) and return the child task as it ended;
        cancelling this cancels the child task."""
        ...

    def hold(self, agent_id: str, held: bool) -> None:
        """Hold a child for review rounds (no other subtask is given to it), or let it go."""
        ...

    async def staff(self, role: str, avoid: str | None = None) -> str:
        """The id of an idle child with ``role`` (not ``avoid``), or of a new hire; held.
        ``TaskFailed`` when none can be hired."""
        ...

    async def copy_files(self, source: str, target: str, paths: list[str], into: str) -> list[str]:
        """Copy ``paths`` from child ``source``'s desktop into ``into`` on child ``target``'s;
        a line per path: where it went, or why it did not."""
        ...
