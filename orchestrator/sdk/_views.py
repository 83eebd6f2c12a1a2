"""What the sync and async handles share: read-only views of the records they hold."""

from __future__ import annotations

from ..domain import AgentInfo, TaskInfo, TaskState

__all__ = ["AgentView", "TaskView"]


class AgentView:
    """An agent's record as last read (``info``), and what follows from it."""

    info: AgentInfo

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def path(self) -> str:
        return self.info.path


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
