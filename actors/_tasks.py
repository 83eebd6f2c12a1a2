"""The task half of an agent: the tasks it was given, the runners working on them, and the
delegation of subtasks to its children.

While a task runs, its ``TaskRunner`` owns the record (``AgentTasks.get`` reads it from the
runner); before it starts and after it ends, ``AgentTasks`` keeps it. ``AgentTasks`` is
the runners' ``TaskHost``: a subtask goes to an idle child with the role, or to a new hire.

Example (inside the agent actor)::

    self._tasks = AgentTasks(self, RecorderRecords(self._recorder))
    task = await self._tasks.assign(spec)
    ended = await self._tasks.wait(task.id)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from ray.exceptions import RayActorError

from orchestrator.config import settings
from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    Event,
    EventKind,
    Subtask,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.errors import AgentError, NotFoundError
from orchestrator.usage import check_budget, configured_prices

from ._budget import RecorderReads, agent_budget_watch
from ._names import slug
from ._person_waits import paused_in_records
from ._review import ReviewHost
from ._task_ports import ParentTask, TaskDesktop, TaskRecords

if TYPE_CHECKING:  # the runner and the brains are imported with a task's first run
    from ._runner import TaskRunner

__all__ = ["AgentHost", "AgentRecords", "AgentTasks", "ChildSlot", "RecorderRecords"]

log = logging.getLogger(__name__)


class ChildSlot(Protocol):
    """A child of the agent, as the agent keeps it."""

    info: AgentInfo
    handle: Any
    """Its Ray actor handle (None while it is being hired)."""
    busy: bool
    """True while one of the agent's subtasks runs on it."""


class AgentHost(Protocol):
    """What the task half needs from the agent actor it belongs to."""

    @property
    def info(self) -> AgentInfo:
        """The agent as it stands."""
        ...

    @property
    def desktop(self) -> TaskDesktop | None:
        """Its desktop (None while it has none)."""
        ...

    @property
    def children(self) -> dict[str, Any]:
        """``ChildSlot``s by agent id."""
        ...

    async def hire(self, spec: AgentSpec) -> AgentInfo:
        """Hire a child with ``spec``; returns once it is ready (and in ``children``)."""
        ...

    async def _set_status(self, status: AgentStatus, error: str | None = None) -> None: ...


class AgentRecords(TaskRecords, Protocol):
    """The records as the task half uses them: tasks and events, agents, quotas."""

    async def put_agent(self, info: AgentInfo) -> None:
        """Store an agent's record."""
        ...

    async def admit_task(self, task: TaskInfo) -> None:
        """The tenant's ``max_running_tasks``: ``QuotaExceededError`` when it is reached."""
        ...


class RecorderRecords(RecorderReads):
    """``AgentRecords`` over the recorder actor (and the budget check's reads)."""

    def __init__(self, recorder: Any) -> None:
        self._recorder = recorder

    async def put_task(self, task: TaskInfo, event: Event | None = None) -> TaskInfo:
        stored: TaskInfo = await self._recorder.put_task.remote(task, event)
        return stored

    async def append_event(self, event: Event, blob: tuple[bytes, str] | None = None) -> None:
        if blob is None:
            await self._recorder.append_event.remote(event)
        else:
            await self._recorder.append_event_with_blob.remote(event, *blob)

    async def put_agent(self, info: AgentInfo) -> None:
        await self._recorder.put_agent.remote(info)

    async def admit_task(self, task: TaskInfo) -> None:
        """The tenant's ``max_running_tasks``: ``QuotaExceededError`` when it is reached."""
        await self._recorder.admit_task.remote(task)


def _cause(e: BaseException) -> str:
    """The original error behind a Ray wrapper, in one line."""
    cause = getattr(e, "cause", None) or e
    first = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {first[0] if first else ''}"


class AgentTasks(ReviewHost):
    """An agent's tasks: assign, wait, cancel, a person's answers; and delegation (with
    review rounds: ``ReviewHost``)."""

    def __init__(self, host: AgentHost, records: AgentRecords) -> None:
        self._host = host
        self.records = records
        self._kept: dict[str, TaskInfo] = {}
        """Tasks no runner owns: not started yet, or ended."""
        self._runners: dict[str, TaskRunner] = {}
        self._running: dict[str, asyncio.Task[TaskInfo]] = {}
        self._pause_first: set[str] = set()
        """Pending tasks a person paused: paused before their first step."""
        self._pause_first_by: dict[str, str] = {}
        """Why, for those a person took over (the paused event's ``person``)."""
        self._first_notes: dict[str, str] = {}  # hand-back notes of tasks not started yet
        self._cancel_reasons: dict[str, str] = {}
        """Why a task is being cancelled (an exceeded budget's say), runner or not yet."""

    # ------------------------------------------------------------------ reading

    @property
    def busy(self) -> bool:
        """True while any task of the agent runs."""
        return bool(self._running)

    def get(self, task_id: str) -> TaskInfo:
        """The task as it stands (``NotFoundError`` if it is not this agent's)."""
        runner = self._runners.get(task_id)
        if runner is not None:
            return runner.task
        try:
            return self._kept[task_id]
        except KeyError:
            raise NotFoundError(f"{self._host.info.path} has no task {task_id}") from None

    def open_tasks(self) -> list[TaskInfo]:
        """The agent's tasks that have not ended."""
        ids = dict.fromkeys([*self._kept, *self._runners])
        return [t for t in map(self.get, ids) if t.state.open]

    # ------------------------------------------------------------------ life of a task

    async def assign(self, spec: TaskSpec, parent_task_id: str | None = None) -> TaskInfo:
        """Accept a task and start working on it; returns at once with the pending task
        (``ConfigError``: a cost budget while no model prices are configured)."""
        check_budget(spec.budget, configured_prices())
        task = TaskInfo(
            id=new_id("task"), agent_id=self._host.info.id, parent_task_id=parent_task_id, spec=spec
        )
        if parent_task_id is None:  # the tenant's max_running_tasks (subtasks do not count)
            await self.records.admit_task(task)  # QuotaExceededError: not accepted
        self._kept[task.id] = task
        self._kept[task.id] = await self._put(task, description=spec.description)
        if parent_task_id is not None and await paused_in_records(self.records, parent_task_id):
            self._pause_first.add(task.id)  # its parent is paused: it starts paused
        self._running[task.id] = asyncio.create_task(self._run(task))
        return task

    async def _put(self, task: TaskInfo, **data: Any) -> TaskInfo:
        """Record ``task`` with the ``task`` event announcing its state (and ``data``)."""
        said = Event(
            kind=EventKind.TASK,
            agent_id=task.agent_id,
            task_id=task.id,
            data={"state": task.state.value, **data},
        )
        return await self.records.put_task(task, said)

    async def _end(self, task_id: str, state: TaskState, error: str) -> TaskInfo:
        """End a task no runner owns (any more) as ``state``, unless the records say it has
        ended (then that end stands and is returned)."""
        self._runners.pop(task_id, None)
        ended = self.get(task_id).model_copy(
            update={"state": state, "result": None, "error": error, "updated_at": time.time()}
        )
        self._kept[task_id] = await self._put(ended, result=None, error=error)
        return self._kept[task_id]

    async def _run(self, task: TaskInfo) -> TaskInfo:
        """Work on the task to its end; however this ends (a bad brain, cancelled before or
        while the runner works, a crash outside it), the end is recorded and the agent is
        idle again once it has no other task."""
        try:
            return await self._work(task)
        except asyncio.CancelledError:
            why = self._cancel_reasons.get(task.id, "cancelled")
            await asyncio.shield(self._end(task.id, TaskState.CANCELLED, why))
            raise
        except Exception as e:  # an agent never dies of one task
            log.exception("task %s crashed", task.id)
            return await self._end(task.id, TaskState.FAILED, f"internal error: {_cause(e)}")
        finally:
            self._cancel_reasons.pop(task.id, None)
            self._first_notes.pop(task.id, None)
            runner = self._runners.pop(task.id, None)
            if runner is not None:
                self._kept[task.id] = runner.task
            if self._forget(task.id):
                await self._host._set_status(AgentStatus.IDLE)

    async def _work(self, task: TaskInfo) -> TaskInfo:
        host = self._host
        await host._set_status(AgentStatus.BUSY)
        desktop = host.desktop
        if desktop is None:
            return await self._end(task.id, TaskState.FAILED, f"{host.info.path} has no desktop")
        brain_cfg = host.info.spec.brain
        if task.spec.script is not None:
            brain_cfg = brain_cfg.model_copy(
                update={"kind": "scripted", "script": task.spec.script}
            )
        from orchestrator.brains import make_brain  # not needed to hire: on first use

        from ._runner import TaskRunner

        try:
            brain = make_brain(brain_cfg, policy=host.info.spec.policy)
        except Exception as e:  # noqa: BLE001 - a bad brain config fails the task, not the agent
            return await self._end(task.id, TaskState.FAILED, f"brain config: {e}")
        runner = TaskRunner(
            task=self.get(task.id),
            role=host.info.spec.role,
            agent_path=host.info.path,
            desktop=desktop,
            brain=brain,
            host=self,
            records=self.records,
            human_wait_timeout_s=settings().human_wait_timeout_s,
            budget=agent_budget_watch(self.records),
            history=self.history_for(task.spec),  # a follow-up goes on from its task's steps
            policy=host.info.spec.policy,
        )
        if task.id in self._cancel_reasons:  # a reason given before the runner existed
            runner.cancel_reason = self._cancel_reasons[task.id]
        self._runners[task.id] = runner
        if (note := self._first_notes.pop(task.id, None)) is not None:
            runner.hear_hand_back(note)
        if task.id in self._pause_first:  # paused while pending: before its first step
            self._pause_first.discard(task.id)
            await runner.pause(self._pause_first_by.pop(task.id, None))
        try:
            return await runner.run()
        finally:
            self.keep_history(task.id, runner.history)
            await brain.close()

    def _forget(self, task_id: str) -> bool:
        """Drop a task from the running ones; True if the agent has none left."""
        self._running.pop(task_id, None)
        return not self._running

    async def wait(self, task_id: str, timeout_s: float | None = None) -> TaskInfo:
        """Wait until the task ends (or ``timeout_s`` passes) and return it. Cancelling the
        wait cancels the wait only (``CancelledError``), never the task."""
        self.get(task_id)
        running = self._running.get(task_id)
        if running is not None:
            await asyncio.wait({running}, timeout=timeout_s)
        return self.get(task_id)

    async def cancel(
        self, task_id: str, why: str = "cancelled", *, reason: str | None = None
    ) -> TaskInfo:
        """Cancel a task and, through it, every subtask in the subtree (``reason``: the error
        recorded for each, an exceeded budget's say; else ``cancelled``)."""
        self.get(task_id)
        running = self._running.get(task_id)
        if reason is not None:  # kept per task: a pending task has no runner yet
            why = reason
            if running is not None:
                self._cancel_reasons[task_id] = reason
            if task_id in self._runners:
                self._runners[task_id].cancel_reason = reason
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        # a task cancelled before it even started: nothing in it recorded the end
        if self.get(task_id).state.open:
            await self._end(task_id, TaskState.CANCELLED, why)
            if self._forget(task_id):
                await self._host._set_status(AgentStatus.IDLE)
        return self.get(task_id)

    async def cancel_all(self, why: str) -> None:
        """Cancel every running task (the agent is stopping)."""
        await asyncio.gather(
            *(self.cancel(tid, why) for tid in list(self._running)), return_exceptions=True
        )

    # ------------------------------------------------------------------ a person's part

    def _runner(self, task_id: str) -> TaskRunner:
        runner = self._runners.get(task_id)
        if runner is None:
            task = self.get(task_id)
            raise AgentError(f"task {task_id} is not running ({task.state.value})")
        return runner

    async def answer(self, task_id: str, text: str) -> TaskInfo:
        """A person's answer to the task's question (it is ``input_required``)."""
        return await self._runner(task_id).answer(text)

    async def approve(self, task_id: str, approved: bool, reason: str | None = None) -> TaskInfo:
        """A person approves or refuses (``reason``: why) the actions the task waits on."""
        return await self._runner(task_id).approve(approved, reason)

    async def pause(self, task_id: str, by: str | None = None) -> TaskInfo:
        """Pause the task before its next step (a pending one: before its first; ``by``:
        why, shown on the paused event, e.g. a person's takeover)."""
        if task_id not in self._runners and self.get(task_id).state == TaskState.PENDING:
            self._pause_first.add(task_id)
            if by is not None:
                self._pause_first_by[task_id] = by
            return self.get(task_id)
        return await self._runner(task_id).pause(by)

    async def resume(self, task_id: str, note: str | None = None) -> TaskInfo:
        """Resume a paused task (or withdraw a pause not yet taken); ``note``: a person's
        hand-back note, put into the history the brain reads next."""
        if task_id in self._pause_first:  # not started: it sees the desktop as it is now
            self._pause_first.discard(task_id)
            self._pause_first_by.pop(task_id, None)
            if note is not None:  # and reads the note first
                self._first_notes[task_id] = note
            return self.get(task_id)
        return await self._runner(task_id).resume(note)

    # ------------------------------------------------------------------ delegation (TaskHost)

    async def run_subtask(
        self,
        parent: ParentTask,
        subtask: Subtask,
        spec: TaskSpec,
        attempt: int,
        on: str | None = None,
    ) -> TaskInfo:
        """Give a subtask to an idle child with its role (a fresh hire on retries; ``on``: that
        held child, a review round); await it."""
        if on is not None:
            return await self.run_held(on, parent, subtask, spec)
        child = None if attempt > 1 else self._idle_child(subtask.role)
        if child is None:
            name = self._free_name(slug(subtask.role))
            try:
                info = await self._hire_for(name, subtask)
            except Exception as e:  # noqa: BLE001 - a failed hire is a failed attempt
                error = f"could not hire a {subtask.role}: {_cause(e)}"
                return await self._failed_attempt(self._host.info.id, parent, spec, error)
            child = self._host.children[info.id]
        return await self._run_on(child, parent, subtask, spec)

    async def _failed_attempt(
        self, agent_id: str, parent: ParentTask, spec: TaskSpec, error: str
    ) -> TaskInfo:
        """Record an attempt at a subtask that could not even start, as a failed task."""
        failed = TaskInfo(
            id=new_id("task"),
            agent_id=agent_id,
            parent_task_id=parent.task.id,
            spec=spec,
            state=TaskState.FAILED,
            error=error,
        )
        return await self._put(failed, description=spec.description, error=error)

    async def _hire_for(self, name: str, subtask: Subtask) -> AgentInfo:
        spec = self._host.info.spec
        return await self._host.hire(
            AgentSpec(
                name=name,
                role=subtask.role,
                brain=spec.brain.model_copy(update={"script": None}),
                desktop=spec.desktop,
                policy=spec.policy,  # a subtree works under the policy of its root
            )
        )

    async def _message(self, parent: ParentTask, data: dict[str, Any]) -> None:
        event = Event(
            kind=EventKind.MESSAGE, agent_id=self._host.info.id, task_id=parent.task.id, data=data
        )
        await self.records.append_event(event)

    async def _run_on(
        self, child: ChildSlot, parent: ParentTask, subtask: Subtask, spec: TaskSpec
    ) -> TaskInfo:
        child.busy = True
        try:
            assigning = asyncio.ensure_future(child.handle.assign.remote(spec, parent.task.id))
            try:
                ct: TaskInfo = await asyncio.shield(assigning)
            except asyncio.CancelledError:
                # the child may take the subtask after all: cancel it there, or it runs on
                await asyncio.shield(_cancel_when_assigned(child, assigning))
                raise
            except RayActorError as e:
                await self._record_dead(child)
                error = f"specialist {child.info.path} is gone: {_cause(e)}"
                return await self._failed_attempt(child.info.id, parent, spec, error)
            await parent.add_subtask(ct)
            if parent.task.state == TaskState.PAUSED:  # assigned while its parent is paused
                with contextlib.suppress(Exception):  # it ended already: nothing to pause
                    await child.handle.pause.remote(ct.id)
            sent = {"subtask": subtask.id, "task_id": ct.id}
            me = self._host.info.path
            await self._message(
                parent, {"from": me, "to": child.info.path, **sent, "text": spec.description}
            )
            try:
                final: TaskInfo = await child.handle.wait_task.remote(ct.id)
            except asyncio.CancelledError:
                why = getattr(self._runners.get(parent.task.id), "cancel_reason", "cancelled")
                with contextlib.suppress(RayActorError):
                    await asyncio.shield(child.handle.cancel_task.remote(ct.id, why))
                raise
            except RayActorError as e:
                await self._record_dead(child)
                error = f"specialist {child.info.path} died: {e.__class__.__name__}"
                final = ct.model_copy(
                    update={"state": TaskState.FAILED, "error": error, "updated_at": time.time()}
                )
                final = await self._put(final, result=None, error=error)
            await self._message(
                parent,
                {
                    "from": child.info.path,
                    "to": me,
                    **sent,
                    "state": final.state.value,
                    "text": final.result or final.error,
                },
            )
            return final
        finally:
            child.busy = False

    async def _record_dead(self, child: ChildSlot) -> None:
        self._host.children.pop(child.info.id, None)
        dead = child.info.model_copy(update={"status": AgentStatus.FAILED, "error": "actor died"})
        await self.records.put_agent(dead)

    def _idle_child(self, role: str) -> ChildSlot | None:
        for c in self._host.children.values():
            held = c.info.id in self._held
            if not c.busy and not held and c.handle is not None and c.info.spec.role == role:
                slot: ChildSlot = c
                return slot
        return None

    def _free_name(self, base: str) -> str:
        names = {c.info.spec.name for c in self._host.children.values()}
        if base not in names:
            return base
        n = 2
        while f"{base}-{n}" in names:
            n += 1
        return f"{base}-{n}"


async def _cancel_when_assigned(child: ChildSlot, assigning: asyncio.Future[TaskInfo]) -> None:
    """Cancel the subtask ``assigning`` gives ``child``, once (and if) it is given."""
    try:
        ct = await assigning
        await child.handle.cancel_task.remote(ct.id)
    except Exception as e:  # noqa: BLE001 - the child is gone or refused it: nothing runs
        log.info("subtask on %s not cancelled: %s", child.info.path, e)
