"""The recorder's janitor sweeps on a real record store, without Ray: every open state of a
dead or ended agent's task is failed, and the sweeps read page after page, not one page.

The recorder is its class itself (``Recorder.__ray_actor_class__``); whether an agent's actor
is alive (Ray's control store) is the one thing stood in for, by a set of dead agent ids.
The real-cluster counterpart is tests/integration/test_recorder_janitor.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors._recorder import Recorder
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
from orchestrator.records import SQLiteStore

OPEN = [s for s in TaskState if not s.done]
"""Every open state, new ones included (input_required, approval_required, paused)."""


def agent(
    status: AgentStatus = AgentStatus.BUSY, tenant: str = "acme", created_at: float = 0.0
) -> AgentInfo:
    name = new_id("a")
    return AgentInfo(
        id=new_id("agent"),
        path=f"{tenant}/{name}",
        tenant=tenant,
        parent_id=None,
        spec=AgentSpec(name=name, role="tester"),
        status=status,
        created_at=created_at,  # long past the grace of a starting agent
    )


def open_task(owner: AgentInfo, state: TaskState) -> tuple[TaskInfo, Event]:
    task = TaskInfo(
        id=new_id("task"), agent_id=owner.id, spec=TaskSpec(description="left open"), state=state
    )
    said = Event(kind=EventKind.TASK, agent_id=owner.id, task_id=task.id, data={"state": state})
    return task, said


class Sweeper:
    """A recorder on ``store``'s directory whose janitor is not started (the test calls its
    sweeps) and for which the agents in ``dead`` have no live actor."""

    def __init__(self, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dead: set[str] = set()
        self.recorder: Any = Recorder.__ray_actor_class__(str(data_dir))  # type: ignore[attr-defined]
        monkeypatch.setattr(self.recorder, "_ensure_janitor", lambda: None)
        # Attributes of the instance, not the module's names: once a test of the same session
        # used the actor class on Ray, Ray's wrappers no longer read the module's globals.
        self.recorder.actor_alive = lambda a: a.id not in self.dead
        self.recorder.alive_actor_ids = lambda: set()

    def run(self, call: Any) -> Any:
        return asyncio.run(call)

    def close(self) -> None:
        self.recorder._store.close()


@pytest.fixture
def sweeper(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sweeper]:
    s = Sweeper(store.data_dir, monkeypatch)
    yield s
    s.close()


def put_open(store: SQLiteStore, owner: AgentInfo, state: TaskState) -> TaskInfo:
    task, said = open_task(owner, state)
    store.put_task(task, said)
    return task


def last_state(store: SQLiteStore, task_id: str) -> str | None:
    states = [
        e.data["state"]
        for e in store.events(task_id=task_id, limit=1000)
        if e.kind == EventKind.TASK and "state" in e.data
    ]
    return states[-1] if states else None


@pytest.mark.parametrize("by_id", [True, False])
def test_every_open_state_of_a_dead_agent_is_failed(
    store: SQLiteStore, sweeper: Sweeper, by_id: bool
) -> None:
    assert {"input_required", "approval_required", "paused"} <= {s.value for s in OPEN}, (
        "the states of issue 10 are not in TaskState yet"
    )
    dead, alive = agent(), agent(AgentStatus.IDLE)
    for a in (dead, alive):
        store.put_agent(a)
    tasks = {s: put_open(store, dead, s) for s in OPEN}
    kept = {s: put_open(store, alive, s) for s in OPEN}
    sweeper.dead.add(dead.id)

    assert sweeper.run(sweeper.recorder.fail_dead_agents(by_id=by_id)) == [dead.id]

    got = store.get_agent(dead.id)
    assert got is not None and (got.status, got.error) == (AgentStatus.FAILED, "actor died")
    for state, t in tasks.items():
        stored = store.get_task(t.id)
        assert stored is not None and stored.state == TaskState.FAILED, state
        assert stored.error == f"agent {dead.path} died"
        assert last_state(store, t.id) == "failed", state
    for state, t in kept.items():
        stored = store.get_task(t.id)
        assert stored is not None and stored.state == state  # a live agent's task is left


def test_every_open_state_of_an_ended_agent_is_failed(store: SQLiteStore, sweeper: Sweeper) -> None:
    fired = agent(AgentStatus.STOPPED)
    live = agent(AgentStatus.BUSY)
    for a in (fired, live):
        store.put_agent(a)
    left = [put_open(store, fired, s) for s in OPEN]
    running = put_open(store, live, TaskState.RUNNING)
    ended = put_open(store, fired, TaskState.RUNNING)
    store.put_task(
        ended.model_copy(update={"state": TaskState.SUCCEEDED, "result": "ok"}),
        Event(
            kind=EventKind.TASK,
            agent_id=fired.id,
            task_id=ended.id,
            data={"state": "succeeded"},
        ),
    )

    failed = sweeper.run(sweeper.recorder.fail_orphaned_tasks())

    assert sorted(failed) == sorted(t.id for t in left)
    for t in left:
        stored = store.get_task(t.id)
        assert stored is not None and stored.state == TaskState.FAILED
        assert stored.error == f"agent {fired.path} is stopped"
        assert last_state(store, t.id) == "failed"
    assert store.get_task(running.id).state == TaskState.RUNNING  # type: ignore[union-attr]
    assert store.get_task(ended.id).state == TaskState.SUCCEEDED  # type: ignore[union-attr]


def test_sweeps_read_every_page(
    store: SQLiteStore, sweeper: Sweeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pages of 3: 7 dead agents among 5 live ones (live first, so a sweep that read
    one page would see no dead one), a dead agent with 8 open tasks, and 8 open tasks of a
    fired agent among 8 of a live one: all are found."""
    sweeper.recorder.sweep_page = 3
    live = [agent(created_at=i) for i in range(5)]
    dead = [agent(created_at=10 + i) for i in range(7)]
    for a in (*live, *dead):
        store.put_agent(a)
    sweeper.dead.update(a.id for a in dead)
    many = [put_open(store, dead[0], OPEN[i % len(OPEN)]) for i in range(8)]

    found = sweeper.run(sweeper.recorder.fail_dead_agents())

    assert sorted(found) == sorted(a.id for a in dead)
    assert store.agent_counts()[AgentStatus.BUSY] == len(live)
    assert all(store.get_task(t.id).state == TaskState.FAILED for t in many)  # type: ignore[union-attr]

    fired = agent(AgentStatus.STOPPED)
    store.put_agent(fired)
    orphans = [put_open(store, fired, OPEN[i % len(OPEN)]) for i in range(8)]
    kept = [put_open(store, live[0], TaskState.RUNNING) for _ in range(8)]

    failed = sweeper.run(sweeper.recorder.fail_orphaned_tasks())

    assert sorted(failed) == sorted(t.id for t in orphans)
    counts = store.task_counts()
    assert counts[TaskState.RUNNING] == len(kept)
    assert sum(counts[s] for s in OPEN) == len(kept)


def test_closing_an_agent_fails_all_its_open_tasks_page_after_page(
    store: SQLiteStore, sweeper: Sweeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweeper.recorder.sweep_page = 2
    a = agent()
    store.put_agent(a)
    tasks = [put_open(store, a, OPEN[i % len(OPEN)]) for i in range(7)]

    sweeper.run(sweeper.recorder.close_agent(a.id, AgentStatus.FAILED, "actor died"))

    assert store.task_counts()[TaskState.FAILED] == len(tasks)
