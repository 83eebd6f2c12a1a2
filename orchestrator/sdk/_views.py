"""What the sync and async handles share: read-only views of the records they hold."""

from __future__ import annotations

from ..domain import AgentInfo, TaskInfo, TaskState, Usage, Waiting

__all__ = ["NEEDS_PERSON", "AgentView", "TaskView"]

NEEDS_PERSON = (TaskState.INPUT_REQUIRED, TaskState.APPROVAL_REQUIRED)
"""The states in which a task waits for a person to answer or approve (``paused`` waits for a
resume, which the person who paused it gives)."""


class AgentView:
    """An agent's record as last read (``info``), and what follows from it."""

    info: AgentInfo

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def usage(self) -> Usage | None:
        """What the agent's tasks spent (model calls, tokens, cost, steps, running time), as
        last read (``refresh()`` reads it again)."""
        return self.info.usage

    @property
    def subtree_usage(self) -> Usage | None:
        """What the tasks of the agent and of every agent below it spent, as last read."""
        return self.info.subtree_usage


class TaskView:
    """A task's record as last read (``info``), and what follows from it."""

    info: TaskInfo

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def state(self) -> TaskState:
        return self.info.state

    @property
    def done(self) -> bool:
        return self.info.state.done

    @property
    def result(self) -> str | None:
        """What the agent reported when it succeeded."""
        return self.info.result

    @property
    def error(self) -> str | None:
        """Why it failed or was cancelled."""
        return self.info.error

    @property
    def usage(self) -> Usage | None:
        """What the task itself spent (model calls, tokens, cost in USD of the priced
        calls and ``unpriced_calls``, whose cost is unknown, steps, running seconds), as
        last read (``refresh()``)."""
        return self.info.usage

    @property
    def subtree_usage(self) -> Usage | None:
        """What it and all its subtasks, recursively, spent: what its ``spec.budget``
        limits. Example: ``task.refresh().subtree_usage.tokens``."""
        return self.info.subtree_usage

    @property
    def needs_person(self) -> bool:
        """True while the task waits for a person's answer (``input_required``: see
        ``waiting.question``) or approval (``approval_required``: ``waiting.actions``)."""
        return self.info.state in NEEDS_PERSON

    @property
    def waiting(self) -> Waiting | None:
        """What the task waits on while it ``needs_person``: the question, or the actions
        and why, and the screenshot's address (``screenshot_waiting()`` reads it)."""
        return self.info.waiting if self.needs_person else None
