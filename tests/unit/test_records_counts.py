"""Counts by the store: agents by status and tasks by state, per tenant, with no page cap."""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.records import MAX_LIMIT, SQLiteStore, StoreStats
from orchestrator.records._rows import upsert_task


def agent(tenant: str, status: AgentStatus = AgentStatus.IDLE) -> AgentInfo:
    name = new_id("a")
    return AgentInfo(
        id=new_id("agent"),
        path=f"{tenant}/{name}",
        tenant=tenant,
        parent_id=None,
        spec=AgentSpec(name=name, role="tester"),
        status=status,
    )


def task(owner: AgentInfo, state: TaskState = TaskState.PENDING) -> TaskInfo:
    return TaskInfo(
        id=new_id("task"), agent_id=owner.id, spec=TaskSpec(description="do it"), state=state
    )


def said(t: TaskInfo) -> Event:
    return Event(kind=EventKind.TASK, agent_id=t.agent_id, task_id=t.id, data={"state": t.state})


def test_empty_store_counts_every_status_and_state_as_zero(store: SQLiteStore) -> None:
    assert store.agent_counts() == dict.fromkeys(AgentStatus, 0)
    assert store.task_counts() == dict.fromkeys(TaskState, 0)
    assert store.stats("nobody") == StoreStats(
        agents=dict.fromkeys(AgentStatus, 0), tasks=dict.fromkeys(TaskState, 0)
    )


def test_counts_are_by_status_and_state_and_per_tenant(store: SQLiteStore) -> None:
    acme = [agent("acme"), agent("acme", AgentStatus.BUSY), agent("acme", AgentStatus.FAILED)]
    other = agent("other", AgentStatus.BUSY)
    for a in [*acme, other]:
        store.put_agent(a)
    for state in (TaskState.RUNNING, TaskState.RUNNING, TaskState.SUCCEEDED):
        t = task(acme[1], state)
        store.put_task(t, said(t))
    t = task(other, TaskState.WAITING)
    store.put_task(t, said(t))
    ghost = task(agent("acme"))  # its agent is not stored: it belongs to no tenant
    store.put_task(ghost)

    counts = store.agent_counts("acme")
    assert counts[AgentStatus.IDLE] == counts[AgentStatus.BUSY] == counts[AgentStatus.FAILED] == 1
    assert counts[AgentStatus.STARTING] == counts[AgentStatus.STOPPED] == 0
    assert set(counts) == set(AgentStatus)
    assert store.agent_counts()[AgentStatus.BUSY] == 2

    tasks = store.task_counts("acme")
    assert set(tasks) == set(TaskState)
    assert (tasks[TaskState.RUNNING], tasks[TaskState.SUCCEEDED]) == (2, 1)
    assert tasks[TaskState.PENDING] == tasks[TaskState.WAITING] == 0
    everyone = store.task_counts()
    assert (everyone[TaskState.PENDING], everyone[TaskState.WAITING]) == (1, 1)
    assert sum(everyone.values()) == 5

    stats = store.stats("acme")
    assert (stats.agents, stats.tasks) == (counts, tasks)


def test_counts_have_no_page_cap(store: SQLiteStore) -> None:
    """More tasks than any list call returns: every one is counted."""
    busy = agent("acme", AgentStatus.BUSY)
    store.put_agent(busy)
    many = MAX_LIMIT + 7
    with store._transaction("store many tasks") as db:  # one transaction: one fsync
        for i in range(many):
            upsert_task(db, task(busy, TaskState.FAILED if i % 2 else TaskState.RUNNING))
    assert len(store.list_tasks(limit=MAX_LIMIT)) == MAX_LIMIT  # a page stops there
    counts = store.task_counts("acme")
    assert counts[TaskState.RUNNING] == (many + 1) // 2
    assert counts[TaskState.FAILED] == many // 2
    assert sum(store.task_counts().values()) == many


def test_a_state_this_version_does_not_know_is_left_out(store: SQLiteStore) -> None:
    a = agent("acme")
    store.put_agent(a)
    t = task(a, TaskState.RUNNING)
    store.put_task(t, said(t))
    with store._transaction("write a newer version's state") as db:
        db.execute("UPDATE tasks SET state = 'from-the-future' WHERE id = ?", (t.id,))
    assert sum(store.task_counts().values()) == 0


def test_counts_of_a_read_only_store(store: SQLiteStore) -> None:
    store.put_agent(agent("acme"))
    with SQLiteStore(store.data_dir, readonly=True) as reader:
        assert reader.stats("acme").agents[AgentStatus.IDLE] == 1


def test_the_recorder_serves_the_stores_counts(tmp_path: Path) -> None:
    from actors._recorder import Recorder

    recorder = Recorder.__ray_actor_class__(str(tmp_path))  # type: ignore[attr-defined]
    recorder._store.put_agent(agent("acme", AgentStatus.BUSY))  # (its writes start the janitor)
    stats = asyncio.run(recorder.stats("acme"))
    assert isinstance(stats, StoreStats)
    assert stats.agents[AgentStatus.BUSY] == 1
    assert asyncio.run(recorder.stats("other")).agents[AgentStatus.BUSY] == 0
