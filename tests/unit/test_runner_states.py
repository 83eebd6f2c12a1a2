"""The settled task states: every open state is open everywhere (the janitor's and the
quota's queries, stats, the SDK's ``wait``), and only the three ended ones are final."""

from __future__ import annotations

import pytest

from orchestrator.domain import (
    OPEN_TASK_STATES,
    PERSON_WAIT_STATES,
    AgentInfo,
    AgentSpec,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.records import SQLiteStore
from orchestrator.sdk._views import TaskView


def test_open_and_ended_states() -> None:
    assert [s.value for s in OPEN_TASK_STATES] == [
        "pending", "running", "waiting", "input_required", "approval_required", "paused",
    ]  # fmt: skip
    assert {s for s in TaskState if s.done} == set(TaskState) - set(OPEN_TASK_STATES)
    assert all(s.open and not s.done for s in OPEN_TASK_STATES)
    assert set(PERSON_WAIT_STATES) < set(OPEN_TASK_STATES)


def test_every_open_state_is_listed_counted_and_waited_on(store: SQLiteStore) -> None:
    agent = AgentInfo(
        id=new_id("agent"), path="t/u/a", tenant="t", parent_id=None, spec=AgentSpec(name="a")
    )
    store.put_agent(agent)
    for state in TaskState:
        task = TaskInfo(
            id=new_id("task"), agent_id=agent.id, spec=TaskSpec(description="d"), state=state
        )
        said = Event(
            kind=EventKind.TASK, agent_id=agent.id, task_id=task.id, data={"state": state.value}
        )
        store.put_task(task, said)

    listed = store.list_tasks(state=OPEN_TASK_STATES, limit=100)  # the janitor's query
    assert sorted(t.state for t in listed) == sorted(OPEN_TASK_STATES)
    counts = store.stats().tasks
    assert {s: counts.get(s, 0) for s in TaskState} == dict.fromkeys(TaskState, 1)

    class View(TaskView):
        def __init__(self, info: TaskInfo) -> None:
            self.info = info

    for task in store.list_tasks(limit=100):
        assert View(task).done is task.state.done  # the SDK's wait() goes on while open


@pytest.mark.parametrize("state", PERSON_WAIT_STATES)
def test_a_task_waiting_for_a_person_can_still_end(store: SQLiteStore, state: TaskState) -> None:
    task = TaskInfo(id=new_id("task"), agent_id="agent-x", spec=TaskSpec(description="d"))
    for s in (state, TaskState.CANCELLED):
        task = task.model_copy(update={"state": s})
        said = Event(
            kind=EventKind.TASK, agent_id="agent-x", task_id=task.id, data={"state": s.value}
        )
        task = store.put_task(task, said)
    assert task.state == TaskState.CANCELLED
