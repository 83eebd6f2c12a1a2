"""A task the janitor fails while it waits for a person no longer shows what it waited on
(``TaskInfo.waiting``): the question of a dead agent's task is answered by nobody."""

from __future__ import annotations

from orchestrator.domain import TaskState, Waiting
from orchestrator.records import SQLiteStore
from tests.unit.test_recorder_sweeps import Sweeper, agent, open_task, sweeper  # noqa: F401


def test_a_failed_task_waits_on_nothing(store: SQLiteStore, sweeper: Sweeper) -> None:  # noqa: F811
    dead = agent()
    store.put_agent(dead)
    task, said = open_task(dead, TaskState.INPUT_REQUIRED)
    store.put_task(task.model_copy(update={"waiting": Waiting(question="Which port?")}), said)
    sweeper.dead.add(dead.id)

    assert sweeper.run(sweeper.recorder.fail_dead_agents(by_id=True)) == [dead.id]

    stored = store.get_task(task.id)
    assert stored is not None and stored.state == TaskState.FAILED
    assert stored.waiting is None
