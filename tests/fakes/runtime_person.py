"""A person's part of the in-process runtime (``LocalRuntime``): answer, approve, reject,
pause and resume, with the runner's rules and errors, on the real record store.

Nothing runs a task here, so a test puts it where a brain would (``ask``,
``await_approval``, ``run``, ``subtask``) and reads what the person gave (``given``). A pause
is taken at once (no step is ever in flight), a resume goes back to ``running``.

Example:
    >>> rt.ask(task.id, "Which port?")                                # doctest: +SKIP
    >>> await rt.answer(task.id, "8080", "t-a")                       # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator import actions as a
from orchestrator.domain import Event, EventKind, TaskInfo, TaskState, Waiting, new_id
from orchestrator.errors import AgentError
from orchestrator.records import RecordStore

__all__ = ["PersonPart"]


class PersonPart:
    """Mixed into ``LocalRuntime`` (which provides ``store``, ``calls`` and ``task``)."""

    store: RecordStore
    calls: list[str]
    given: list[tuple[str, str, Any]]
    """``(task id, what, value)`` for every answer, approval, refusal, pause and resume."""

    async def task(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        raise NotImplementedError

    # ------------------------------------------------------------------ what a brain would do

    def move(self, task_id: str, state: TaskState, waiting: Waiting | None = None) -> TaskInfo:
        """Put the task in ``state`` (recorded with its event), ``waiting`` on what."""
        task = self.store.get_task(task_id)
        assert task is not None, task_id
        moved = task.model_copy(
            update={"state": state, "waiting": waiting, "updated_at": time.time()}
        )
        data = {"state": state.value, "result": None, "error": None}
        if waiting is not None:
            data |= waiting.model_dump(mode="json", exclude_none=True)
        said = Event(kind=EventKind.TASK, agent_id=task.agent_id, task_id=task.id, data=data)
        return self.store.put_task(moved, said)

    def run(self, task_id: str) -> TaskInfo:
        """The task's agent starts on it (``running``)."""
        return self.move(task_id, TaskState.RUNNING)

    def ask(self, task_id: str, question: str, screenshot: str | None = None) -> TaskInfo:
        """The agent asks a person (``input_required``)."""
        waiting = Waiting(question=question, screenshot=screenshot)
        return self.move(task_id, TaskState.INPUT_REQUIRED, waiting)

    def await_approval(self, task_id: str, actions: list[a.Action], reason: str) -> TaskInfo:
        """The agent waits for a person to approve ``actions`` (``approval_required``)."""
        waiting = Waiting(actions=actions, reason=reason)
        return self.move(task_id, TaskState.APPROVAL_REQUIRED, waiting)

    def subtask(self, parent_id: str, agent_id: str, description: str = "part") -> TaskInfo:
        """A running subtask of ``parent_id`` on ``agent_id`` (the parent records it)."""
        parent = self.store.get_task(parent_id)
        assert parent is not None, parent_id
        sub = TaskInfo(
            id=new_id("task"),
            agent_id=agent_id,
            parent_task_id=parent_id,
            spec=parent.spec.model_copy(update={"description": description}),
        )
        said = Event(
            kind=EventKind.TASK, agent_id=agent_id, task_id=sub.id, data={"state": "pending"}
        )
        self.store.put_task(sub, said)
        self.store.put_task(
            parent.model_copy(update={"subtask_ids": [*parent.subtask_ids, sub.id]})
        )
        return self.run(sub.id)

    # ------------------------------------------------------------------ the Runtime protocol

    async def _waiting(self, task_id: str, tenant: str | None, state: TaskState, what: str) -> None:
        task = await self.task(task_id, tenant)
        if task.state != state:
            raise AgentError(f"task {task_id} is not waiting for {what} ({task.state.value})")

    async def answer(self, task_id: str, text: str, tenant: str | None = None) -> TaskInfo:
        self.calls.append("answer")
        await self._waiting(task_id, tenant, TaskState.INPUT_REQUIRED, "an answer")
        self.given.append((task_id, "answer", text))
        return self.run(task_id)

    async def approve(self, task_id: str, tenant: str | None = None) -> TaskInfo:
        self.calls.append("approve")
        await self._waiting(task_id, tenant, TaskState.APPROVAL_REQUIRED, "approval")
        self.given.append((task_id, "approve", True))
        return self.run(task_id)

    async def reject(self, task_id: str, reason: str, tenant: str | None = None) -> TaskInfo:
        self.calls.append("reject")
        await self._waiting(task_id, tenant, TaskState.APPROVAL_REQUIRED, "approval")
        self.given.append((task_id, "reject", reason))
        return self.run(task_id)

    def _below(self, task: TaskInfo) -> list[TaskInfo]:
        found, ids = [], list(task.subtask_ids)
        while ids:
            sub = self.store.get_task(ids.pop(0))
            if sub is not None:
                found.append(sub)
                ids.extend(sub.subtask_ids)
        return found

    def _pause_one(self, task: TaskInfo) -> None:
        if task.state.done:
            raise AgentError(f"task {task.id} has ended ({task.state.value})")
        if task.state == TaskState.PENDING:
            raise AgentError(f"task {task.id} is not running (pending)")
        if task.state != TaskState.PAUSED:
            self.move(task.id, TaskState.PAUSED)
            self.given.append((task.id, "pause", None))

    async def pause(
        self, task_id: str, tenant: str | None = None, subtree: bool = True
    ) -> TaskInfo:
        self.calls.append("pause")
        task = await self.task(task_id, tenant)
        self._pause_one(task)
        for sub in self._below(task) if subtree else []:
            if sub.state.open and sub.state != TaskState.PENDING:
                self._pause_one(sub)
        return await self.task(task_id)

    async def resume(
        self, task_id: str, tenant: str | None = None, subtree: bool = True
    ) -> TaskInfo:
        self.calls.append("resume")
        task = await self.task(task_id, tenant)
        paused = [t for t in [task, *(self._below(task) if subtree else [])]]
        paused = [t for t in paused if t.state == TaskState.PAUSED]
        if not paused:
            if task.state.done:
                raise AgentError(f"task {task_id} has ended ({task.state.value})")
            raise AgentError(f"task {task_id} is not paused ({task.state.value})")
        for t in paused:
            self.run(t.id)
            self.given.append((t.id, "resume", None))
        return await self.task(task_id)
