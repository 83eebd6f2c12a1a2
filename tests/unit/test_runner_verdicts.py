"""What a person gives a waiting task, on the runner (desktop stand-in, scripted brains, a real
store): the task's record shows what it waits on (the question or the actions, and the
screen it decided on, stored), a refusal fails the step with the person's reason (timeline
and history), and a second pause before a resume does not pause the task again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from orchestrator.domain import AwaitApproval, EventKind, TaskState
from orchestrator.records import SQLiteStore
from tests.fakes.task_desktop import StandInDesktop, StoreRecords
from tests.unit.test_runner import runner_for, state_of, until


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def desk() -> Iterator[StandInDesktop]:
    d = StandInDesktop()
    yield d
    d.close()


async def test_the_record_shows_the_question_and_its_screen(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {"steps": [{"ask": "Which port?"}, {"type": "wait", "duration_s": 0}]}
    runner = await runner_for(records, desk, script)
    running = asyncio.create_task(runner.run())
    await until(state_of(runner)(TaskState.INPUT_REQUIRED))
    stored = records.store.get_task(runner.task.id)
    assert stored is not None and stored.waiting is not None
    assert stored.waiting.question == "Which port?" and stored.waiting.actions == []
    assert stored.waiting.screenshot is not None
    jpeg = records.store.get_blob(stored.waiting.screenshot)
    assert jpeg.startswith(b"\xff\xd8")  # the screen the brain asked on, stored

    await runner.answer("8080")
    ended = await running
    assert ended.state == TaskState.SUCCEEDED and ended.waiting is None
    stored = records.store.get_task(runner.task.id)
    assert stored is not None and stored.waiting is None


@pytest.mark.parametrize(
    ("reason", "verdict"), [("not on Fridays", "refused: not on Fridays"), (None, "refused")]
)
async def test_a_refusal_fails_the_step_with_the_persons_reason(
    records: StoreRecords, desk: StandInDesktop, reason: str | None, verdict: str
) -> None:
    rm = {"type": "shell", "command": "rm -f precious"}
    script = {"steps": [{"approve": "deletes a file", "actions": [rm]}]}
    (desk.home / "precious").write_text("x")
    runner = await runner_for(records, desk, script)
    running = asyncio.create_task(runner.run())
    await until(state_of(runner)(TaskState.APPROVAL_REQUIRED))
    waiting = runner.task.waiting
    assert waiting is not None and waiting.reason == "deletes a file"
    assert [x.model_dump()["command"] for x in waiting.actions] == [rm["command"]]

    await runner.approve(False, reason)
    ended = await running

    assert (desk.home / "precious").exists() and desk.actions == []
    assert ended.state == TaskState.FAILED  # the scripted brain gives up on a refused step
    step = records.store.events(task_id=ended.id, kinds=[EventKind.STEP])
    assert [e.data["action"]["command"] for e in step] == [rm["command"]]
    assert step[0].data["result"] == {
        "ok": False, "error": f"a person {verdict}", "cursor": None, "command": None,
        "duration_ms": 0.0,
    }  # fmt: skip
    [record] = runner.history
    assert isinstance(record.decision, AwaitApproval) and record.answer == verdict
    # the verdict is on the timeline, with the state it ended
    states = records.store.events(task_id=ended.id, kinds=[EventKind.TASK])
    assert [e.data.get("person") for e in states if e.data.get("person")] == [verdict]
    assert [(r.ok, r.error) for r in record.results] == [(False, f"a person {verdict}")]


async def test_pausing_twice_needs_one_resume(records: StoreRecords, desk: StandInDesktop) -> None:
    gate = desk.home / "gate"
    script = {
        "steps": [
            {"type": "shell", "command": f"while [ ! -e {gate} ]; do sleep 0.01; done"},
            {"type": "click", "x": 1, "y": 1},
            {"type": "click", "x": 2, "y": 2},
        ]
    }
    runner = await runner_for(records, desk, script)
    running = asyncio.create_task(runner.run())
    await until(lambda: bool(desk.actions))
    await runner.pause()
    gate.write_text("open")
    await until(state_of(runner)(TaskState.PAUSED))
    await runner.pause()  # paused already: nothing more to take
    await runner.resume()
    ended = await running
    assert ended.state == TaskState.SUCCEEDED
    assert [x.type for x in desk.actions] == ["shell", "click", "click"]
    assert records.states(ended.id).count("paused") == 1
