"""The task half of an agent (``actors._tasks.AgentTasks``) around its runners: the end of
every task is recorded and the agent is idle again, waits, cancels, a person's calls, and
delegation to children. In process: agents here are ``LocalAgent``s (the ``AgentHost``
protocol) on desktop stand-ins, their handles call the same ``AgentTasks`` code directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors._tasks import AgentTasks
from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    Subtask,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.errors import AgentError, NotFoundError
from orchestrator.records import SQLiteStore
from tests.fakes.task_desktop import StandInDesktop, StoreRecords

WAIT_LONG = {"steps": [{"type": "wait", "duration_s": 60}]}


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():  # noqa: ASYNC110 - polling a condition, with a deadline
            await asyncio.sleep(0.005)


class _Method:
    """``handle.method.remote(...)`` of an in-process agent: the call itself."""

    def __init__(self, fn: Callable[..., Awaitable[Any]]) -> None:
        self.remote = fn


@dataclass
class Slot:
    """A child as the agent keeps it (``ChildSlot``)."""

    info: AgentInfo
    handle: Any
    busy: bool = False


class LocalAgent:
    """An ``AgentHost`` in this process, with a stand-in desktop and real records."""

    def __init__(self, records: StoreRecords, spec: AgentSpec, path: str = "t/u/boss") -> None:
        self.records = records
        self.info = AgentInfo(id=new_id("agent"), path=path, tenant="t", parent_id=None, spec=spec)
        self.desktop = StandInDesktop()
        self.children: dict[str, Any] = {}
        self.statuses: list[AgentStatus] = []
        self.tasks = AgentTasks(self, records)
        self.hired: list[LocalAgent] = []
        self.assign_gate: asyncio.Event | None = None
        """When set, ``assign`` (through the handle) waits for it: a slow actor call."""
        self.assigning = asyncio.Event()

    async def hire(self, spec: AgentSpec) -> AgentInfo:
        child = LocalAgent(self.records, spec, path=f"{self.info.path}/{spec.name}")
        child.assign_gate = self.assign_gate
        self.hired.append(child)
        handle = type("Handle", (), {})()
        handle.assign = _Method(child.gated_assign)
        handle.wait_task = _Method(child.tasks.wait)
        handle.cancel_task = _Method(child.tasks.cancel)
        self.children[child.info.id] = Slot(child.info, handle)
        return child.info

    async def gated_assign(self, spec: TaskSpec, parent_task_id: str | None = None) -> TaskInfo:
        self.assigning.set()
        if self.assign_gate is not None:
            await self.assign_gate.wait()
        return await self.tasks.assign(spec, parent_task_id)

    async def _set_status(self, status: AgentStatus, error: str | None = None) -> None:
        self.statuses.append(status)
        self.info = self.info.model_copy(update={"status": status, "error": error})

    def close(self) -> None:
        self.desktop.close()
        for child in self.hired:
            child.close()


@dataclass
class Parent:
    """A delegating task (``ParentTask``) that keeps the subtasks it is told of."""

    task: TaskInfo
    added: list[TaskInfo] = field(default_factory=list)

    async def add_subtask(self, child: TaskInfo) -> None:
        self.added.append(child)


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def agent(records: StoreRecords) -> Iterator[LocalAgent]:
    a = LocalAgent(records, AgentSpec(name="boss", role="lead"))
    yield a
    a.close()


async def finish(agent: LocalAgent, script: dict[str, Any], **spec: Any) -> TaskInfo:
    task = await agent.tasks.assign(TaskSpec(description="d", script=script, **spec))
    return await agent.tasks.wait(task.id)


async def test_a_task_runs_to_its_end_and_the_agent_is_idle_again(
    agent: LocalAgent, records: StoreRecords
) -> None:
    ended = await finish(agent, {"steps": [{"type": "shell", "command": "echo ok"}]})
    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "ok")
    assert records.store.get_task(ended.id) == ended == agent.tasks.get(ended.id)
    assert agent.statuses == [AgentStatus.BUSY, AgentStatus.IDLE] and not agent.tasks.busy


async def test_a_brain_that_cannot_be_made_fails_the_task_and_frees_the_agent(
    agent: LocalAgent, records: StoreRecords
) -> None:
    """Defect (a): the agent stayed BUSY for ever when making the brain failed."""
    ended = await finish(agent, {"steps": [{"run": "ls"}]})
    assert ended.state == TaskState.FAILED
    assert ended.error is not None and ended.error.startswith("brain config: invalid script")
    assert records.states(ended.id) == ["pending", "failed"]
    assert agent.statuses[-1] == AgentStatus.IDLE and not agent.tasks.busy
    # and the agent takes the next task
    nxt = await finish(agent, {"steps": []})
    assert nxt.state == TaskState.SUCCEEDED


async def test_cancelling_a_wait_cancels_the_wait_not_the_task(agent: LocalAgent) -> None:
    """Defect (b): ``wait_task`` swallowed its own cancellation."""
    task = await agent.tasks.assign(TaskSpec(description="d", script=WAIT_LONG))
    await until(lambda: bool(agent.desktop.actions))
    waiter = asyncio.create_task(agent.tasks.wait(task.id))
    await asyncio.sleep(0)  # the waiter is waiting
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert agent.tasks.get(task.id).state == TaskState.RUNNING
    ended = await agent.tasks.cancel(task.id)
    assert (ended.state, ended.error) == (TaskState.CANCELLED, "cancelled")


async def test_a_wait_with_a_timeout_returns_the_open_task(agent: LocalAgent) -> None:
    task = await agent.tasks.assign(TaskSpec(description="d", script=WAIT_LONG))
    assert (await agent.tasks.wait(task.id, timeout_s=0.05)).state.open
    await agent.tasks.cancel(task.id)


async def test_a_cancelled_subtask_being_assigned_is_cancelled_on_the_child(
    agent: LocalAgent, records: StoreRecords
) -> None:
    """Defect (c): a subtask whose parent was cancelled while the child's ``assign`` call
    was on its way ran on, orphaned, on a child marked idle."""
    agent.assign_gate = asyncio.Event()
    parent = Parent(await agent.tasks.assign(TaskSpec(description="d", script=WAIT_LONG)))
    sub = Subtask(id="s", description="work", role="worker")
    running = asyncio.create_task(
        agent.tasks.run_subtask(parent, sub, TaskSpec(description="w", script=WAIT_LONG), 1)
    )
    await until(lambda: bool(agent.hired) and agent.hired[0].assigning.is_set())
    running.cancel()
    agent.assign_gate.set()  # the child accepts the subtask after all
    with pytest.raises(asyncio.CancelledError):
        await running
    child = agent.hired[0]
    await until(lambda: bool(child.tasks._kept))
    (task_id,) = child.tasks._kept
    await until(lambda: child.tasks.get(task_id).state.done)
    assert child.tasks.get(task_id).state == TaskState.CANCELLED
    assert not child.tasks.busy
    await agent.tasks.cancel(parent.task.id)


async def test_delegation_hires_reuses_and_retries_on_fresh_children(
    agent: LocalAgent, records: StoreRecords
) -> None:
    script = {
        "subtasks": [
            {"id": "one", "role": "worker", "description": "1", "script": {"steps": []}},
            {
                "id": "two",
                "role": "worker",
                "description": "2",
                "depends_on": ["one"],
                "script": {"steps": [{"check": {"command": "test -e ~/ok"}}]},
            },
        ]
    }
    ended = await finish(agent, script, max_attempts=2)
    # "two" failed on the reused child (no ~/ok there) and on a fresh hire: the parent fails
    assert ended.state == TaskState.FAILED
    assert (
        ended.error is not None and "subtask two (worker) failed after 2 attempt(s)" in ended.error
    )
    assert [c.info.spec.name for c in agent.hired] == ["worker", "worker-2"]
    stored = records.store.get_task(ended.id)
    assert stored is not None and len(stored.subtask_ids) == 3 == len(ended.subtask_ids)
    assert agent.statuses[-1] == AgentStatus.IDLE


async def test_a_persons_calls_reach_the_runner(agent: LocalAgent) -> None:
    task = await agent.tasks.assign(TaskSpec(description="d", script={"steps": [{"ask": "Name?"}]}))
    await until(lambda: agent.tasks.get(task.id).state == TaskState.INPUT_REQUIRED)
    assert [t.id for t in agent.tasks.open_tasks()] == [task.id]
    with pytest.raises(AgentError, match="not paused"):
        await agent.tasks.resume(task.id)
    await agent.tasks.answer(task.id, "Ada")
    ended = await agent.tasks.wait(task.id)
    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "Ada")
    assert agent.tasks.open_tasks() == []
    with pytest.raises(AgentError, match="is not running \\(succeeded\\)"):
        await agent.tasks.answer(task.id, "again")
    with pytest.raises(NotFoundError):
        await agent.tasks.approve("task-nope", True)


async def test_pause_approve_and_resume_through_the_agent(agent: LocalAgent) -> None:
    gate = agent.desktop.home / "gate"
    wait_gate = {"type": "shell", "command": f"while [ ! -e {gate} ]; do sleep 0.01; done"}
    shell = {"type": "shell", "command": "echo done"}
    script = {"steps": [wait_gate, {"approve": "ok?", "actions": [shell]}]}
    task = await agent.tasks.assign(TaskSpec(description="d", script=script))
    await until(lambda: bool(agent.desktop.actions))
    await agent.tasks.pause(task.id)
    gate.write_text("open")
    await until(lambda: agent.tasks.get(task.id).state == TaskState.PAUSED)
    await agent.tasks.resume(task.id)
    await until(lambda: agent.tasks.get(task.id).state == TaskState.APPROVAL_REQUIRED)
    await agent.tasks.approve(task.id, True)
    ended = await agent.tasks.wait(task.id)
    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "done")


async def test_stopping_the_agent_cancels_its_tasks(agent: LocalAgent) -> None:
    tasks = [await agent.tasks.assign(TaskSpec(description="d", script=WAIT_LONG)) for _ in "ab"]
    await agent.tasks.cancel_all("cancelled: the agent was stopped")
    for t in tasks:
        ended = agent.tasks.get(t.id)
        assert (ended.state, ended.error) == (TaskState.CANCELLED, "cancelled")
    assert not agent.tasks.busy and agent.statuses[-1] == AgentStatus.IDLE
