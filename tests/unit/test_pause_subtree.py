"""Pausing a delegating task and its subtree, the gaps the first pause left (in process,
``AgentTasks`` with ``LocalAgent`` children on stand-in desktops running real bash):

(a) a task paused while still pending is paused before its first step;
(b) a delegating task paused while it waits on subtasks starts no further subtask until it
    is resumed, and a subtask assigned while it is paused is paused on assignment;
(c) the paused delegating task reads ``paused`` (not ``waiting``) until it is resumed, then
    ``waiting`` again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors._person_waits import TAKEOVER_QUESTION
from orchestrator.domain import AgentSpec, Ask, FollowUp, TaskSpec, TaskState
from orchestrator.lease import hand_back_text
from orchestrator.records import SQLiteStore
from tests.fakes.task_desktop import StoreRecords
from tests.unit.test_review_rounds import ReviewAgent
from tests.unit.test_runner_agent import until


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def boss(records: StoreRecords) -> Iterator[ReviewAgent]:
    a = ReviewAgent(records, AgentSpec(name="boss", role="lead"))
    yield a
    a.close()


def wait_for(path: Path) -> dict[str, Any]:
    return {"type": "shell", "command": f"while [ ! -e {path} ]; do sleep 0.01; done"}


async def test_a_pending_task_paused_takes_no_step_until_resumed(
    boss: ReviewAgent, records: StoreRecords
) -> None:
    script = {"steps": [{"type": "shell", "command": "echo hi"}]}
    task = await boss.tasks.assign(TaskSpec(description="d", script=script))
    assert boss.tasks.get(task.id).state == TaskState.PENDING
    await boss.tasks.pause(task.id)  # before its runner exists
    await until(lambda: boss.tasks.get(task.id).state == TaskState.PAUSED)
    await asyncio.sleep(0.1)  # a paused task stays so: nothing happens meanwhile
    assert boss.desktop.actions == [] and boss.tasks.get(task.id).state == TaskState.PAUSED
    await boss.tasks.resume(task.id)
    ended = await boss.tasks.wait(task.id)
    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "hi")
    assert records.states(task.id) == ["pending", "running", "paused", "running", "succeeded"]


async def test_a_pending_task_handed_back_before_its_first_step_reads_the_note_first(
    boss: ReviewAgent,
) -> None:
    """A lease taken and handed back while the task is still pending (its runner not made
    yet): the hand-back note is the first entry of its history, as for a running task."""
    script = {"steps": [{"type": "shell", "command": "echo hi"}]}
    task = await boss.tasks.assign(TaskSpec(description="d", script=script))
    assert task.id not in boss.tasks._runners  # the path under test: no runner yet
    await boss.tasks.pause(task.id, "taken over by key:alice")
    await boss.tasks.resume(task.id, hand_back_text("I closed the dialog"))
    ended = await boss.tasks.wait(task.id)
    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "hi")
    follow = FollowUp(task_id=task.id, round=2, feedback="again")
    history = boss.tasks.history_for(TaskSpec(description="again", follow_up=follow))
    assert history[0].decision == Ask(
        question=TAKEOVER_QUESTION, thought="a person took over the desktop"
    )
    assert history[0].answer == hand_back_text("I closed the dialog")
    assert len(history) == 2  # then its one step


async def test_a_pause_withdrawn_while_pending_is_not_taken(boss: ReviewAgent) -> None:
    task = await boss.tasks.assign(TaskSpec(description="d", script={"steps": []}))
    await boss.tasks.pause(task.id)
    await boss.tasks.resume(task.id)
    ended = await boss.tasks.wait(task.id)
    assert ended.state == TaskState.SUCCEEDED


async def test_a_paused_delegating_task_starts_no_subtask_until_resumed(
    boss: ReviewAgent, records: StoreRecords, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    script = {
        "subtasks": [
            {"id": "a", "role": "first", "description": "a", "script": {"steps": [wait_for(gate)]}},
            {
                "id": "b",
                "role": "second",
                "description": "b",
                "depends_on": ["a"],
                "script": {"steps": [{"type": "shell", "command": "echo b done"}]},
            },
        ]
    }
    task = await boss.tasks.assign(TaskSpec(description="d", script=script))
    await until(lambda: len(boss.hired) == 1 and bool(boss.hired[0].desktop.actions))
    assert boss.tasks.get(task.id).state == TaskState.WAITING
    await boss.tasks.pause(task.id)  # (c): paused at once, though it waits on a subtask
    assert boss.tasks.get(task.id).state == TaskState.PAUSED
    gate.write_text("open")  # a ends while its parent is paused
    first = boss.hired[0]
    await until(lambda: not first.tasks.busy)
    await asyncio.sleep(0.1)  # (b): b does not start while the parent is paused
    assert len(boss.hired) == 1 and boss.tasks.get(task.id).state == TaskState.PAUSED
    await boss.tasks.resume(task.id)
    ended = await boss.tasks.wait(task.id)
    assert ended.state == TaskState.SUCCEEDED, ended.error
    assert [c.info.spec.role for c in boss.hired] == ["first", "second"]
    assert records.states(task.id) == [
        "pending",
        "running",
        "waiting",
        "paused",
        "waiting",
        "running",
        "succeeded",
    ]


async def test_a_subtask_assigned_while_its_parent_is_paused_is_paused(
    boss: ReviewAgent, records: StoreRecords
) -> None:
    boss.assign_gate = asyncio.Event()  # the child's assign call is on its way...
    script = {
        "subtasks": [
            {
                "id": "a",
                "role": "worker",
                "description": "a",
                "script": {"steps": [{"type": "shell", "command": "echo a done"}]},
            }
        ]
    }
    task = await boss.tasks.assign(TaskSpec(description="d", script=script))
    await until(lambda: bool(boss.hired) and boss.hired[0].assigning.is_set())
    await boss.tasks.pause(task.id)  # ...when the parent is paused (the runtime's subtree
    boss.assign_gate.set()  # pause did not see the subtask yet): it is paused on arrival
    child = boss.hired[0]
    await until(lambda: bool(child.tasks._kept) or bool(child.tasks._runners))
    (sub_id,) = {*child.tasks._kept, *child.tasks._runners}
    await until(lambda: child.tasks.get(sub_id).state == TaskState.PAUSED)
    assert child.desktop.actions == []
    await boss.tasks.resume(task.id)
    await child.tasks.resume(sub_id)  # the runtime resumes the subtree
    ended = await boss.tasks.wait(task.id)
    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "a: a done")
    assert "paused" in records.states(sub_id)


async def test_a_paused_delegating_task_fails_when_nobody_resumes_it(
    boss: ReviewAgent, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    script = {
        "subtasks": [
            {"id": "a", "role": "w", "description": "a", "script": {"steps": [wait_for(gate)]}}
        ]
    }
    task = await boss.tasks.assign(TaskSpec(description="d", script=script))
    await until(lambda: bool(boss.hired) and bool(boss.hired[0].desktop.actions))
    runner = boss.tasks._runners[task.id]
    runner.human_wait_timeout_s = 0.2
    await boss.tasks.pause(task.id)
    gate.write_text("open")
    ended = await boss.tasks.wait(task.id)
    assert ended.state == TaskState.FAILED
    assert ended.error == "waited 0.2 s for a resume after the pause; nobody came"
