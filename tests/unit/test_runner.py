"""TaskRunner's loop, delegation, retries and cancellation, on a desktop stand-in that
implements the same protocol as the real Desktop, with scripted brains and a real store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors._runner import TaskRunner
from actors._task_ports import TaskDesktop, TaskHost
from orchestrator import actions as a
from orchestrator.brains import make_brain
from orchestrator.desktop import Desktop
from orchestrator.domain import BrainConfig, EventKind, TaskInfo, TaskSpec, TaskState
from orchestrator.records import SQLiteStore
from tests.fakes.task_desktop import LocalHost, StandInDesktop, StoreRecords, new_task


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def desk() -> Iterator[StandInDesktop]:
    d = StandInDesktop()
    yield d
    d.close()


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for ``cond`` with a deadline."""
    async with asyncio.timeout(timeout_s):
        while not cond():  # noqa: ASYNC110 - polling a condition, with a deadline
            await asyncio.sleep(0.005)


async def runner_for(
    records: StoreRecords,
    desk: StandInDesktop,
    script: dict[str, Any],
    host: TaskHost | None = None,
    human_wait_timeout_s: float = 3600.0,
    **spec: Any,
) -> TaskRunner:
    task = await new_task(records, TaskSpec(description="test task", script=script, **spec))
    brain = make_brain(BrainConfig(kind="scripted", script=script))
    return TaskRunner(
        task,
        "tester",
        "t/u/boss",
        desk,
        brain,
        host or LocalHost(records),
        records,
        human_wait_timeout_s=human_wait_timeout_s,
    )


def test_the_real_desktop_and_the_stand_in_implement_the_protocol() -> None:
    def fits(d: Desktop, s: StandInDesktop) -> list[TaskDesktop]:
        return [d, s]  # mypy checks both against the protocol

    assert fits.__annotations__


# ---------------------------------------------------------------------- doing


async def test_the_loop_acts_records_each_step_and_succeeds(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {
        "steps": [
            {"type": "shell", "command": "echo hello > note.txt && cat note.txt"},
            {"batch": [{"type": "click", "x": 3, "y": 4}, {"type": "type", "text": "hi"}]},
        ],
        "result": "said {{ outputs[0] }}",
    }
    runner = await runner_for(records, desk, script, outputs=["note.txt"])

    ended = await runner.run()

    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "said hello")
    assert records.store.get_task(ended.id) == ended
    assert records.states(ended.id) == ["pending", "running", "succeeded"]
    assert [x.type for x in desk.actions] == ["shell", "click", "type"]
    assert (desk.home / "note.txt").read_text() == "hello\n"
    events = records.store.events(task_id=ended.id, limit=1000)
    steps = [e for e in events if e.kind == EventKind.STEP]
    assert [e.data["action"]["type"] for e in steps] == ["shell", "click", "type"]
    jpeg = records.store.get_blob(steps[0].blobs[0])
    assert jpeg[:3] == b"\xff\xd8\xff"  # a real JPEG of the screen
    (kept,) = [e for e in events if e.kind == EventKind.FILE]
    assert records.store.get_blob(kept.blobs[0]) == b"hello\n"
    model = [e.data for e in events if e.kind == EventKind.MODEL]
    assert [(m["call"], m.get("kind")) for m in model] == [("triage", None), ("step", "done")]


async def test_the_first_step_decides_on_the_triage_screenshot(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    runner = await runner_for(records, desk, {"steps": [{"type": "shell", "command": "true"}]})

    ended = await runner.run()

    assert ended.state == TaskState.SUCCEEDED
    # one for the triage (and the first step), one after the step: not one more
    assert desk.screenshots == 2
    events = records.store.events(task_id=ended.id, limit=1000)
    triage = next(e for e in events if e.kind == EventKind.MODEL)
    step = next(e for e in events if e.kind == EventKind.STEP)
    assert triage.blobs == step.blobs


async def test_a_failed_check_fails_the_task_with_the_reason(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {"steps": [{"check": {"command": "echo nope; exit 3", "message": "the check"}}]}
    ended = await (await runner_for(records, desk, script)).run()
    assert ended.state == TaskState.FAILED
    assert ended.error == "step 1: the check failed: it exited with status 3: nope"
    assert records.states(ended.id) == ["pending", "running", "failed"]


async def test_the_step_budget_ends_the_task(records: StoreRecords, desk: StandInDesktop) -> None:
    script = {"steps": [{"type": "click", "x": 1, "y": 1}] * 3}
    ended = await (await runner_for(records, desk, script, step_budget=2)).run()
    assert ended.state == TaskState.FAILED
    assert ended.error == "step budget of 2 steps used up before the task was done"
    assert len(desk.actions) == 2


async def test_the_deadline_fails_the_task(records: StoreRecords, desk: StandInDesktop) -> None:
    script = {"steps": [{"type": "wait", "duration_s": 30}]}
    ended = await (await runner_for(records, desk, script, deadline_s=0.2)).run()
    assert (ended.state, ended.error) == (TaskState.FAILED, "deadline of 0.2 s passed")


async def test_cancelling_records_the_cancel(records: StoreRecords, desk: StandInDesktop) -> None:
    runner = await runner_for(records, desk, {"steps": [{"type": "wait", "duration_s": 30}]})
    running = asyncio.create_task(runner.run())
    await until(lambda: bool(desk.actions))
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    stored = records.store.get_task(runner.task.id)
    assert stored is not None and (stored.state, stored.error) == (TaskState.CANCELLED, "cancelled")


# ---------------------------------------------------------------------- delegating


def plan(*subtasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"subtasks": list(subtasks), **extra}


def sub(sid: str, steps: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"id": sid, "role": kw.pop("role", sid), "description": f"do {sid}", **kw,
            "script": {"steps": steps, **kw.pop("script", {})}}  # fmt: skip


async def test_delegation_runs_the_plan_and_records_the_subtasks(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = plan(
        sub("db", [{"type": "shell", "command": "echo postgres:5432"}]),
        sub(
            "app",
            [{"type": "shell", "command": "echo app uses {{ results.db }}"}],
            depends_on=["db"],
        ),  # fmt: skip
        check=[{"check": {"command": "echo checked", "expect": "checked"}}],
        result="{{ results.app }} ({{ outputs[-1] }})",
    )
    host = LocalHost(records)
    runner = await runner_for(records, desk, script, host)

    ended = await runner.run()

    assert (ended.state, ended.result) == (
        TaskState.SUCCEEDED,
        "app uses postgres:5432 (checked)",
    )
    assert [c.state for c in host.children] == [TaskState.SUCCEEDED] * 2
    # the runner owns the record: the subtasks the host added are in it, and stored
    assert ended.subtask_ids == [c.id for c in host.children]
    stored = records.store.get_task(ended.id)
    assert stored is not None and stored.subtask_ids == ended.subtask_ids
    assert records.states(ended.id) == ["pending", "running", "waiting", "running", "succeeded"]
    assert [x.type for x in desk.actions] == ["shell"]  # the check, on its own desktop


async def test_a_failed_subtask_is_retried_on_a_fresh_specialist(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    fragile = [{"check": {"command": "test ! -e ~/broken", "message": "broken desktop"}}]
    host = LocalHost(records, broken={"web"})
    script = plan(sub("web", fragile))
    ended = await (await runner_for(records, desk, script, host)).run()

    assert ended.state == TaskState.SUCCEEDED
    assert host.attempts == [("web", 1), ("web", 2)]
    assert [c.state for c in host.children] == [TaskState.FAILED, TaskState.SUCCEEDED]
    logs = [e.data for e in records.store.events(task_id=ended.id, kinds=[EventKind.LOG])]
    assert logs == [
        {
            "subtask": "web",
            "attempt": 1,
            "error": "step 1: broken desktop failed: it exited with status 1 (no output)",
            "next": "retry on a fresh specialist",
        }
    ]


async def test_a_subtask_failing_every_attempt_fails_the_plan(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = plan(sub("web", [{"check": {"command": "false"}}]), sub("other", []))
    host = LocalHost(records)
    ended = await (await runner_for(records, desk, script, host, max_attempts=3)).run()
    assert ended.state == TaskState.FAILED
    assert ended.error is not None
    assert ended.error.startswith("subtask web (web) failed after 3 attempt(s): step 1: check")
    assert [x for x in host.attempts if x[0] == "web"] == [("web", 1), ("web", 2), ("web", 3)]


async def test_a_bad_plan_fails_before_waiting(records: StoreRecords, desk: StandInDesktop) -> None:
    from orchestrator.domain import Delegate, Plan, Subtask

    runner = await runner_for(records, desk, {"steps": []})
    cyclic = Plan(
        subtasks=[
            Subtask(id="a", description="a", role="r", depends_on=["b"]),
            Subtask(id="b", description="b", role="r", depends_on=["a"]),
        ]
    )
    with pytest.raises(Exception, match="dependency cycle: a -> b -> a"):
        await runner._delegate(Delegate(plan=cyclic))
    assert records.states(runner.task.id) == ["pending"]


async def test_cancelling_a_delegating_task_cancels_its_subtasks(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    host = LocalHost(records)
    script = plan(sub("slow", [{"type": "wait", "duration_s": 60}]))
    runner = await runner_for(records, desk, script, host)
    running = asyncio.create_task(runner.run())
    await until(lambda: bool(host.desktops) and bool(host.desktops[0].actions))

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    (child,) = host.children
    for task in (runner.task, child):
        stored = records.store.get_task(task.id)
        assert stored is not None and stored.state == TaskState.CANCELLED, stored


# ---------------------------------------------------------------------- a person in the loop


def state_of(runner: TaskRunner) -> Callable[[TaskState], Callable[[], bool]]:
    return lambda s: lambda: runner.task.state == s


async def test_a_question_waits_for_a_persons_answer(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {
        "steps": [
            {"ask": "Which port?"},
            {"type": "shell", "command": "echo port {{ outputs[-1] }}"},
        ]
    }
    runner = await runner_for(records, desk, script)
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.task.state == TaskState.INPUT_REQUIRED)
    stored = records.store.get_task(runner.task.id)
    assert stored is not None and stored.state == TaskState.INPUT_REQUIRED
    asked = records.store.events(task_id=runner.task.id, kinds=[EventKind.TASK])[-1]
    assert asked.data["question"] == "Which port?"
    assert desk.actions == []
    with pytest.raises(Exception, match="not waiting for approval"):
        await runner.approve(True)

    await runner.answer("8080")
    ended = await running

    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "port 8080")
    assert records.states(ended.id) == [
        "pending", "running", "input_required", "running", "succeeded",
    ]  # fmt: skip
    # the answer is on the timeline, with the state it ended
    states = records.store.events(task_id=ended.id, kinds=[EventKind.TASK])
    assert [e.data.get("person") for e in states] == [None, None, None, "8080", None]


async def test_answering_a_task_that_asked_nothing_is_refused(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    runner = await runner_for(records, desk, {"steps": [{"type": "wait", "duration_s": 30}]})
    running = asyncio.create_task(runner.run())
    await until(lambda: bool(desk.actions))
    with pytest.raises(Exception, match="not waiting for an answer \\(running\\)"):
        await runner.answer("42")
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


@pytest.mark.parametrize("approved", [True, False])
async def test_actions_awaiting_approval(
    records: StoreRecords, desk: StandInDesktop, approved: bool
) -> None:
    rm = {"type": "shell", "command": "rm -f precious && echo removed"}
    script = {"steps": [{"approve": "deletes a file", "actions": [rm]}]}
    (desk.home / "precious").write_text("x")
    runner = await runner_for(records, desk, script)
    running = asyncio.create_task(runner.run())
    await until(state_of(runner)(TaskState.APPROVAL_REQUIRED))
    said = records.store.events(task_id=runner.task.id, kinds=[EventKind.TASK])[-1].data
    assert said["reason"] == "deletes a file" and said["actions"][0]["command"] == rm["command"]

    await runner.approve(approved)
    ended = await running

    assert (desk.home / "precious").exists() is not approved
    if approved:
        assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "removed")
    else:
        assert ended.state == TaskState.FAILED and desk.actions == []
        assert ended.error == "step 1: a person refused to approve it (deletes a file)"


async def test_a_wait_for_a_person_times_out_with_the_reason(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    runner = await runner_for(
        records, desk, {"steps": [{"ask": "Anyone?"}]}, human_wait_timeout_s=0.1
    )
    ended = await runner.run()
    assert (ended.state, ended.error) == (
        TaskState.FAILED,
        "waited 0.1 s for an answer; nobody came",
    )


async def test_pause_and_resume_between_steps(records: StoreRecords, desk: StandInDesktop) -> None:
    gate = desk.home / "gate"
    script = {
        "steps": [
            {"type": "shell", "command": f"while [ ! -e {gate} ]; do sleep 0.01; done"},
            {"type": "click", "x": 1, "y": 1},
        ]
    }
    runner = await runner_for(records, desk, script)
    running = asyncio.create_task(runner.run())
    await until(lambda: bool(desk.actions))
    await runner.pause()  # taken after the running step
    gate.write_text("open")
    await until(state_of(runner)(TaskState.PAUSED))
    assert [x.type for x in desk.actions] == ["shell"]
    with pytest.raises(Exception, match="not waiting for an answer"):
        await runner.answer("x")

    await runner.resume()
    ended = await running

    assert ended.state == TaskState.SUCCEEDED
    assert [x.type for x in desk.actions] == ["shell", "click"]
    assert records.states(ended.id) == ["pending", "running", "paused", "running", "succeeded"]
    states = records.store.events(task_id=ended.id, kinds=[EventKind.TASK])
    assert [e.data.get("person") for e in states] == [None, None, None, "resumed", None]


async def test_a_pause_nobody_resumes_fails_the_task(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    runner = await runner_for(
        records, desk, {"steps": [{"type": "click", "x": 1, "y": 1}]}, human_wait_timeout_s=0.1
    )
    await runner.pause()
    ended = await runner.run()
    assert ended.state == TaskState.FAILED
    assert ended.error == "waited 0.1 s for a resume after the pause; nobody came"
    assert desk.actions == []


async def test_resuming_a_task_that_is_not_paused_is_refused(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    runner = await runner_for(records, desk, {"steps": []})
    with pytest.raises(Exception, match="is not paused \\(pending\\)"):
        await runner.resume()
    await runner.pause()
    await runner.resume()  # withdraws the pause before it is taken
    assert (await runner.run()).state == TaskState.SUCCEEDED
    assert "paused" not in records.states(runner.task.id)


async def test_time_waiting_for_a_person_does_not_count_against_the_deadline(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {"steps": [{"ask": "Go?"}, {"type": "wait", "duration_s": 0.1}]}
    runner = await runner_for(records, desk, script, deadline_s=0.5)
    running = asyncio.create_task(runner.run())
    await until(state_of(runner)(TaskState.INPUT_REQUIRED))
    # the person takes longer than the whole deadline: time is the point of this test
    await asyncio.sleep(0.8)
    assert not running.done()
    await runner.answer("go")
    ended = await running
    assert ended.state == TaskState.SUCCEEDED, ended.error


async def test_the_deadline_still_counts_the_agents_own_time_around_a_wait(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {
        "steps": [
            {"type": "wait", "duration_s": 0.3},
            {"ask": "Go?"},
            {"type": "wait", "duration_s": 0.3},
        ]
    }
    runner = await runner_for(records, desk, script, deadline_s=0.45)
    running = asyncio.create_task(runner.run())
    await until(state_of(runner)(TaskState.INPUT_REQUIRED))
    await runner.answer("go")
    ended = await running
    assert (ended.state, ended.error) == (TaskState.FAILED, "deadline of 0.45 s passed")


async def test_questions_use_no_step_of_the_budget(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {"steps": [{"ask": "One?"}, {"ask": "Two?"}, {"type": "click", "x": 1, "y": 1}]}
    runner = await runner_for(records, desk, script, step_budget=2)  # the click, then done
    running = asyncio.create_task(runner.run())

    def asked(n: int) -> Callable[[], bool]:
        def check() -> bool:
            states = records.states(runner.task.id)
            return states[-1] == "input_required" and states.count("input_required") == n

        return check

    for n in (1, 2):
        await until(asked(n))
        await runner.answer("yes")
    ended = await running
    assert ended.state == TaskState.SUCCEEDED, ended.error


async def test_cancelling_while_waiting_for_a_person(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    runner = await runner_for(records, desk, {"steps": [{"ask": "Hello?"}]})
    running = asyncio.create_task(runner.run())
    await until(state_of(runner)(TaskState.INPUT_REQUIRED))
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert records.states(runner.task.id)[-1] == "cancelled"


def test_task_info_states_are_settled() -> None:
    info = TaskInfo(id="t", agent_id="a", spec=TaskSpec(description="d"))
    assert info.state.open and not info.state.done
    assert [s.value for s in TaskState if s.waits_for_person] == [
        "input_required", "approval_required", "paused",
    ]  # fmt: skip
    _ = a.Wait()  # the actions module the stand-in implements
