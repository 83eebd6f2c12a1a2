"""The person's part of a running task (a mixin of ``TaskRunner``): answers, approvals,
pause and resume, and the waits for them.

A wait for a person (``input_required``, ``approval_required``, ``paused``) has its own
timeout (``human_wait_timeout_s``) and the task's deadline stands still meanwhile. A pause
is taken between two steps of the task's own loop; a pending task's before its first
step (``AgentTasks`` remembers the pause until the runner exists); a task that waits on
its subtasks (``waiting``) turns ``paused`` at once, starts no subtask, retry or review
round until resumed, and is ``waiting`` again then (``_delegation.PauseHold``).

A person who takes over the agent's desktop (a lease, ``_lease``) pauses the task with
``pause(by="taken over by <holder>")`` (shown as ``person`` on the ``paused`` event) and
resumes it with ``resume(note=...)``: the note goes into the history the brain reads next, as
the answer to a question about the takeover (every brain renders a person's answer).

Example (``tests/unit/test_runner_states.py`` drives it)::

    await runner.pause()      # paused before the next step
    await runner.resume()     # goes on
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from orchestrator.brains import StepRecord
from orchestrator.domain import Ask, TaskInfo, TaskState, Waiting
from orchestrator.errors import AgentError

from ._task_ports import TaskFailed

if TYPE_CHECKING:
    from ._delegation import PauseHold

__all__ = ["TAKEOVER_QUESTION", "PersonWaits", "paused_in_records"]

TAKEOVER_QUESTION = "A person took over your desktop. What did they do?"
"""The question a hand-back note answers in the agent's history."""


async def paused_in_records(records: object, task_id: str) -> bool:
    """True when the records say ``task_id`` is paused: a subtask assigned after its parent
    was paused starts paused (records that cannot read tasks: False)."""
    get_task = getattr(records, "get_task", None)
    if get_task is None:
        return False
    task = await get_task(task_id)
    return isinstance(task, TaskInfo) and task.state == TaskState.PAUSED


class PersonWaits:
    """Answers, approvals, pause and resume of a ``TaskRunner``'s task."""

    task: TaskInfo
    human_wait_timeout_s: float
    _deadline: asyncio.Timeout | None
    _person: asyncio.Future[str] | None
    _pause_asked: bool
    history: list[StepRecord]
    _hold: PauseHold | None = None
    _pause_by: str | None = None
    """Who asked the pause, when a person took the desktop over (the paused event's
    ``person``)."""
    """While the task waits on its subtasks: where a pause is taken at once."""

    if TYPE_CHECKING:

        async def _set(
            self,
            state: TaskState,
            *,
            result: str | None = None,
            error: str | None = None,
            waiting: Waiting | None = None,
            **data: Any,
        ) -> None: ...

    async def answer(self, text: str) -> TaskInfo:
        """A person's answer to the question the task waits on (``input_required``)."""
        self._give(TaskState.INPUT_REQUIRED, text, "an answer")
        return self.task

    async def approve(self, approved: bool, reason: str | None = None) -> TaskInfo:
        """A person approves the actions the task waits on, or refuses them (``reason``: why):
        refused, the step fails with the reason and the brain decides again knowing it."""
        verdict = "approved" if approved else f"refused: {reason}" if reason else "refused"
        self._give(TaskState.APPROVAL_REQUIRED, verdict, "approval")
        return self.task

    async def pause(self, by: str | None = None) -> TaskInfo:
        """Pause the task: it turns ``paused`` before its next step of its own loop (while
        it waits on subtasks: at once) and stays so until ``resume`` (``by``: why, on the
        paused event's ``person``, e.g. ``taken over by <holder>``)."""
        if self.task.state.done:
            raise AgentError(f"task {self.task.id} has ended ({self.task.state.value})")
        if by is not None:
            self._pause_by = by
        if self._hold is not None and self.task.state == TaskState.WAITING:
            await self._hold.take()
        elif self.task.state != TaskState.PAUSED:  # paused twice: one resume goes on
            self._pause_asked = True
        return self.task

    async def resume(self, note: str | None = None) -> TaskInfo:
        """Resume a paused task (or withdraw a pause not yet taken). ``note``: a person
        handed the desktop back with it; it goes into the history the brain reads next and
        on the timeline (the resuming event's ``person``)."""
        if self.task.state == TaskState.PAUSED:
            self._give(TaskState.PAUSED, note or "resumed", "resuming")
        elif self._pause_asked:
            self._pause_asked = False
            self._pause_by = None
        else:
            raise AgentError(f"task {self.task.id} is not paused ({self.task.state.value})")
        if note is not None:
            self.hear_hand_back(note)
        return self.task

    def hear_hand_back(self, note: str) -> None:
        """Put a person's hand-back note into the history the brain reads next."""
        asked = Ask(question=TAKEOVER_QUESTION, thought="a person took over the desktop")
        self.history.append(StepRecord(decision=asked, results=[], answer=note))

    def _give(self, state: TaskState, reply: str, what: str) -> None:
        person = self._person
        if self.task.state != state or person is None or person.done():
            raise AgentError(
                f"task {self.task.id} is not waiting for {what} ({self.task.state.value})"
            )
        person.set_result(reply)

    async def _wait_for_person(
        self,
        state: TaskState,
        what: str,
        waiting: Waiting | None = None,
        *,
        then: TaskState = TaskState.RUNNING,
        entered: asyncio.Event | None = None,
        by: str | None = None,
    ) -> str:
        """Wait in ``state`` for a person's reply (``waiting``: on what, in the record and its
        event; ``entered`` is set once it is recorded; ``by``: who put it there, the ``person``
        of that event), then turn ``then``; the deadline stands still meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline
        when = deadline.when() if deadline is not None else None
        started = loop.time()
        if deadline is not None:
            deadline.reschedule(None)
        self._person = loop.create_future()
        try:
            shown = waiting.model_dump(mode="json") if waiting else {}
            said = {k: v for k, v in shown.items() if v not in (None, [])}
            if by is not None:
                said["person"] = by
            await self._set(state, waiting=waiting, **said)
            if entered is not None:
                entered.set()
            person = self._person
            try:
                async with asyncio.timeout(self.human_wait_timeout_s):
                    reply = await person
            except TimeoutError:
                if not person.done() or person.cancelled():
                    raise TaskFailed(
                        f"waited {self.human_wait_timeout_s:g} s for {what}; nobody came"
                    ) from None
                reply = person.result()  # the reply came in the same turn as the timeout
        finally:
            self._person = None
            if deadline is not None and when is not None:
                deadline.reschedule(when + (loop.time() - started))
        # the person's reply goes on the timeline with the state it ends (one write)
        await self._set(then, person=reply)
        return reply

    async def _pause_point(self) -> None:
        """Between two steps: stay paused while a person asked for it."""
        if self._pause_asked:
            self._pause_asked = False
            by, self._pause_by = self._pause_by, None
            await self._wait_for_person(TaskState.PAUSED, "a resume after the pause", by=by)

    async def _pause_held(self, hold: PauseHold) -> None:
        """Once the task waits on its subtasks (``hold`` in place): a pause asked while it
        was still running (e.g. during the plan call) is taken now, not lost."""
        if self._pause_asked:
            self._pause_asked = False
            await hold.take()

    async def _paused_waiting(self, entered: asyncio.Event) -> str:
        """A pause taken while the task waits on its subtasks (``PauseHold``'s wait)."""
        what = "a resume after the pause"
        by, self._pause_by = self._pause_by, None
        return await self._wait_for_person(
            TaskState.PAUSED, what, then=TaskState.WAITING, entered=entered, by=by
        )
