"""The recorder's janitor on a real Ray cluster: a task in any open state (the ones waiting
for a person included) of an agent whose actor is gone, or of an agent recorded as ended, is
failed with its event. The unit tests (tests/unit/test_recorder_sweeps.py) cover paging."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
)

pytestmark = pytest.mark.timeout(120)

SETTLE_S = 20.0
"""The new recorder's first sweeps must have closed everything within this."""

OPEN = [s for s in TaskState if not s.done]


def _agent(name: str, status: AgentStatus) -> AgentInfo:
    return AgentInfo(
        id=f"agent-{os.urandom(5).hex()}",
        path=f"t-janitor/{name}",
        tenant="t-janitor",
        parent_id=None,
        spec=AgentSpec(name=name),
        status=status,
        actor_id=os.urandom(16).hex(),  # an actor Ray never had: dead
        created_at=time.time() - 3600,
    )


def _open_task(agent: AgentInfo, state: TaskState) -> tuple[TaskInfo, Event]:
    task = TaskInfo(
        id=f"task-{os.urandom(5).hex()}",
        agent_id=agent.id,
        spec=TaskSpec(description=f"left {state.value}"),
        state=state,
    )
    said = Event(kind=EventKind.TASK, agent_id=agent.id, task_id=task.id, data={"state": state})
    return task, said


async def test_the_janitor_fails_every_open_state_of_dead_and_ended_agents(
    ray_session: Any, tmp_path: Path
) -> None:
    import ray

    from actors import NAMESPACE, Recorder
    from orchestrator.records import SQLiteStore

    assert {"input_required", "approval_required", "paused"} <= {s.value for s in OPEN}
    busy = _agent("busy", AgentStatus.BUSY)
    fired = _agent("fired", AgentStatus.STOPPED)
    left: dict[str, TaskInfo] = {}
    with SQLiteStore(tmp_path) as store:  # what a previous cluster left
        for agent in (busy, fired):
            store.put_agent(agent)
            for state in OPEN:
                task, said = _open_task(agent, state)
                store.put_task(task, said)
                left[task.id] = task
    name = f"_test/recorder-{os.urandom(4).hex()}"
    recorder = Recorder.options(name=name, namespace=NAMESPACE, num_cpus=0).remote(str(tmp_path))  # type: ignore[attr-defined]
    try:
        await recorder.start_janitor.remote()
        deadline = time.monotonic() + SETTLE_S
        while True:
            stats = await recorder.stats.remote("t-janitor")
            if sum(stats.tasks[s] for s in OPEN) == 0:
                break
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.2)  # polling interval of a deadline-bound wait
        assert stats.tasks[TaskState.FAILED] == len(left)
        assert stats.agents[AgentStatus.FAILED] == 1 and stats.agents[AgentStatus.STOPPED] == 1
        for task_id, was in left.items():
            task = await recorder.get_task.remote(task_id)
            events = await recorder.events.remote(task_id=task_id, limit=100)
            states = [e.data["state"] for e in events if e.kind == EventKind.TASK]
            assert task.state == TaskState.FAILED and states[-1] == "failed", (was.state, task)
            owner = busy if was.agent_id == busy.id else fired
            why = f"agent {owner.path} died" if owner is busy else f"agent {owner.path} is stopped"
            assert task.error == why, (was.state, task.error)
    finally:
        ray.kill(recorder)
