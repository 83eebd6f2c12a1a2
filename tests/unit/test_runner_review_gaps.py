"""Gaps a review of budgets and pauses found, each closed (in process, stand-in desktops):

- one unpriced model call no longer hides the priced spend from a cost budget, and a cost
  budget is refused when no prices are configured at all;
- a pause asked while a task plans (or while it turns ``waiting``) is taken before any
  subtask starts;
- a person's reply that lands in the same loop turn as the wait's timeout is used;
- a budget's cancellation reason holds for a task cancelled before its runner exists;
- a usage read that fails skips the budget check instead of failing the task;
- a pause or resume of a subtree visits each task once (cycles end) and goes on past a
  subtask that fails;
- usage rollups read locally run off the event loop;
- a step a person refused is not counted as a step.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from actors._budget import BudgetWatch
from actors._person_waits import PersonWaits
from actors._recorder_ref import RecorderRef
from actors._runtime import Runtime
from actors._task_ports import TaskFailed
from orchestrator.domain import AgentSpec, Event, EventKind, TaskInfo, TaskSpec, TaskState
from orchestrator.errors import ConfigError, RecordError
from orchestrator.policy import ApprovalPolicy
from orchestrator.records import SQLiteStore
from orchestrator.usage import Budget, Usage, check_budget
from tests.fakes.openai_server import FakeOpenAIServer, function_call_item, responses_reply
from tests.fakes.task_desktop import StandInDesktop, StoreRecords, new_task
from tests.unit.test_review_rounds import ReviewAgent
from tests.unit.test_runner_agent import until
from tests.unit.test_runner_policy import runner_for, triage

PRICES = {"gpt-4o*": {"input": 1000, "output": 0}}

ONE_SUBTASK = {
    "subtasks": [
        {
            "id": "a",
            "role": "worker",
            "description": "a",
            "script": {"steps": [{"type": "shell", "command": "echo a done"}]},
        }
    ]
}


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def boss(records: StoreRecords) -> Iterator[ReviewAgent]:
    a = ReviewAgent(records, AgentSpec(name="boss", role="lead"))
    yield a
    a.close()


# ---------------------------------------------------------------- 1: unpriced calls


def test_an_unpriced_call_keeps_the_priced_cost_and_the_cost_budget() -> None:
    priced = Usage(model_calls=1, input_tokens=100, cost_usd=0.3)
    unpriced = Usage(model_calls=1, input_tokens=100, unpriced_calls=1)
    spent = priced + unpriced
    assert (spent.cost_usd, spent.unpriced_calls, spent.model_calls) == (0.3, 1, 2)
    assert Budget(cost_usd=0.25).exceeded(spent) == "$0.3000 of $0.2500"
    assert Budget(cost_usd=0.25).exceeded(unpriced + priced) == "$0.3000 of $0.2500"
    assert "1 unpriced calls" in spent.summary()


def test_a_cost_budget_without_any_configured_price_is_refused() -> None:
    with pytest.raises(ConfigError, match="ORCHESTRATOR_MODEL_PRICES"):
        check_budget(Budget(cost_usd=1.0), {})
    check_budget(Budget(tokens=10), {})  # other limits need no prices
    check_budget(None, {})


async def test_assigning_a_cost_budget_without_prices_is_refused(
    boss: ReviewAgent, operator_env: Callable[..., None]
) -> None:
    operator_env(ORCHESTRATOR_MODEL_PRICES="")
    spec = TaskSpec(description="d", script={"steps": []}, budget=Budget(cost_usd=1.0))
    with pytest.raises(ConfigError, match="needs model prices"):
        await boss.tasks.assign(spec)
    assert boss.tasks.open_tasks() == []
    operator_env(ORCHESTRATOR_MODEL_PRICES=json.dumps(PRICES))
    task = await boss.tasks.assign(spec)
    assert (await boss.tasks.wait(task.id)).state == TaskState.SUCCEEDED


# ---------------------------------------------------------------- 2: pause before delegating


@pytest.fixture
def plan_gate(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """(entered, release): every brain's ``plan`` call waits for ``release``."""
    import orchestrator.brains as brains

    entered, release = asyncio.Event(), asyncio.Event()
    make = brains.make_brain

    def gated(*args: Any, **kwargs: Any) -> Any:
        brain = make(*args, **kwargs)
        plan = brain.plan

        async def slow_plan(ctx: Any, obs: Any) -> Any:
            entered.set()
            await release.wait()
            return await plan(ctx, obs)

        brain.plan = slow_plan
        return brain

    monkeypatch.setattr(brains, "make_brain", gated)
    return entered, release


async def test_a_pause_asked_while_the_task_plans_is_taken_before_any_subtask(
    boss: ReviewAgent, records: StoreRecords, plan_gate: tuple[asyncio.Event, asyncio.Event]
) -> None:
    entered, release = plan_gate
    task = await boss.tasks.assign(TaskSpec(description="d", script=ONE_SUBTASK))
    await asyncio.wait_for(entered.wait(), 10)
    assert boss.tasks.get(task.id).state == TaskState.RUNNING
    await boss.tasks.pause(task.id)
    release.set()
    await until(lambda: boss.tasks.get(task.id).state == TaskState.PAUSED)
    assert boss.hired == []  # no subtask started while paused
    await boss.tasks.resume(task.id)
    ended = await boss.tasks.wait(task.id)
    assert ended.state == TaskState.SUCCEEDED, ended.error
    assert records.states(task.id)[:3] == ["pending", "running", "paused"]


async def test_a_pause_asked_while_the_task_turns_waiting_is_held(
    boss: ReviewAgent, records: StoreRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    turning, release = asyncio.Event(), asyncio.Event()
    put = records.put_task

    async def slow_put(task: TaskInfo, event: Event | None = None) -> TaskInfo:
        if event is not None and event.data.get("state") == "waiting":
            turning.set()
            await release.wait()
        return await put(task, event)

    monkeypatch.setattr(records, "put_task", slow_put)
    task = await boss.tasks.assign(TaskSpec(description="d", script=ONE_SUBTASK))
    await asyncio.wait_for(turning.wait(), 10)
    await boss.tasks.pause(task.id)  # still running in its record: asked, not yet taken
    release.set()
    await until(lambda: boss.tasks.get(task.id).state == TaskState.PAUSED)
    assert boss.hired == []
    await boss.tasks.resume(task.id)
    ended = await boss.tasks.wait(task.id)
    assert ended.state == TaskState.SUCCEEDED, ended.error
    assert records.states(task.id)[:5] == ["pending", "running", "waiting", "paused", "waiting"]


# ---------------------------------------------------------------- 10: reply at the timeout


class _Waits(PersonWaits):
    def __init__(self) -> None:
        self.task = TaskInfo(id="task-x", agent_id="agent-x", spec=TaskSpec(description="d"))
        self.human_wait_timeout_s = 0.0
        self._deadline = None
        self._person = None
        self._pause_asked = False
        self.said: list[dict[str, Any]] = []

    async def _set(self, state: TaskState, **data: Any) -> None:
        self.said.append({"state": state, **data})
        if state == TaskState.INPUT_REQUIRED:  # the reply comes in the timeout's turn
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: self._person and self._person.set_result("yes"))


async def test_a_reply_in_the_same_turn_as_the_timeout_is_used() -> None:
    waits = _Waits()
    reply = await waits._wait_for_person(TaskState.INPUT_REQUIRED, "an answer")
    assert reply == "yes"
    assert waits.said[-1] == {"state": TaskState.RUNNING, "person": "yes"}


async def test_no_reply_by_the_timeout_still_fails() -> None:
    waits = _Waits()
    waits._set = _no_reply  # type: ignore[method-assign]
    with pytest.raises(TaskFailed, match="nobody came"):
        await waits._wait_for_person(TaskState.INPUT_REQUIRED, "an answer")


async def _no_reply(state: TaskState, **data: Any) -> None:
    return None


# ---------------------------------------------------------------- 8: a pending task's reason


async def test_a_budget_reason_holds_for_a_task_cancelled_before_it_started(
    boss: ReviewAgent,
) -> None:
    task = await boss.tasks.assign(TaskSpec(description="d", script={"steps": []}))
    ended = await boss.tasks.cancel(task.id, reason="budget exceeded: 9 steps of 5")
    assert (ended.state, ended.error) == (TaskState.CANCELLED, "budget exceeded: 9 steps of 5")


async def test_a_budget_reason_holds_for_a_task_cancelled_before_its_runner_exists(
    boss: ReviewAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    starting, never = asyncio.Event(), asyncio.Event()

    async def slow_status(*_: Any, **__: Any) -> None:
        starting.set()
        await never.wait()

    monkeypatch.setattr(boss, "_set_status", slow_status)
    task = await boss.tasks.assign(TaskSpec(description="d", script={"steps": []}))
    await asyncio.wait_for(starting.wait(), 10)  # in _run, no runner yet
    monkeypatch.undo()
    ended = await boss.tasks.cancel(task.id, reason="budget exceeded: 9 steps of 5")
    assert (ended.state, ended.error) == (TaskState.CANCELLED, "budget exceeded: 9 steps of 5")


# ---------------------------------------------------------------- 6: a failed usage read


async def test_a_failed_usage_read_skips_the_budget_check(
    records: StoreRecords, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    task = await new_task(records, TaskSpec(description="d", budget=Budget(steps=1)))

    async def restarting(task_ids: list[str]) -> dict[str, tuple[Usage, Usage]]:
        raise RecordError("the recorder is restarting")

    monkeypatch.setattr(records, "task_usage", restarting)
    await BudgetWatch(records).check(task)  # no exception: the task goes on
    assert f"task {task.id}: budget check skipped" in caplog.text


# ---------------------------------------------------------------- 7: a subtree walk


async def test_a_subtree_walk_ends_on_a_cycle_and_goes_past_a_failing_subtask() -> None:
    def task(tid: str, subs: list[str]) -> TaskInfo:
        return TaskInfo(id=tid, agent_id=f"agent-{tid}", spec=TaskSpec(description="d"),
                        subtask_ids=subs, state=TaskState.RUNNING)  # fmt: skip

    tasks = {"r": task("r", ["a", "b"]), "a": task("a", ["r", "a", "b"]), "b": task("b", ["a"])}
    paused: list[str] = []

    async def get_task(tid: str) -> TaskInfo | None:
        return tasks.get(tid)

    async def pause_task(tid: str) -> None:
        if tid == "a":
            raise RuntimeError("a lost its connection")
        paused.append(tid)

    async def agent_ref(agent_id: str) -> Any:
        return SimpleNamespace(pause_task=pause_task)

    rt = SimpleNamespace(records=SimpleNamespace(get_task=get_task), agent_ref=agent_ref)
    async with asyncio.timeout(5):
        done = await Runtime._each_below(rt, tasks["r"], "pause_task")  # type: ignore[arg-type]
    assert (done, paused) == (1, ["b"])


# ---------------------------------------------------------------- 5: local rollups


async def test_local_usage_rollups_run_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, int] = {}

    class Store:
        def with_usage(self, tasks: list[TaskInfo]) -> list[TaskInfo]:
            seen["with_usage"] = threading.get_ident()
            return tasks

        def agent_usage(self, agent_id: str) -> None:
            seen["agent_usage"] = threading.get_ident()

        def get_task(self, task_id: str) -> None:
            seen["get_task"] = threading.get_ident()

    ref = RecorderRef(local_reads=True)  # no handle: nothing asks Ray

    async def local() -> Store:
        return Store()

    monkeypatch.setattr(ref, "_local_store", local)
    await ref.with_usage([TaskInfo(id="task-x", agent_id="a", spec=TaskSpec(description="d"))])
    await ref.agent_usage("agent-x")
    await ref.get_task("task-x")
    assert seen["with_usage"] != loop_thread and seen["agent_usage"] != loop_thread
    assert seen["get_task"] == loop_thread  # a single indexed read stays on the loop


# ---------------------------------------------------------------- 11: a refused step


async def test_a_refused_step_is_not_counted_as_a_step(store: SQLiteStore) -> None:
    desk = StandInDesktop((64, 48))
    try:
        async with FakeOpenAIServer() as fake:
            root = {"command": "touch /etc/x", "user": "root"}
            fake.add(
                triage(),
                responses_reply(function_call_item("shell", root, call_id="f1"), id="r1"),
                responses_reply(function_call_item("fail", {"reason": "refused"}, call_id="f2")),
            )
            task = await new_task(StoreRecords(store), TaskSpec(description="touch it"))
            policy = ApprovalPolicy(approve=["shell_as_root"])
            runner = runner_for(store, desk, fake, policy, task)
            running = asyncio.create_task(runner.run())
            await until(lambda: runner.task.state == TaskState.APPROVAL_REQUIRED)
            await runner.approve(False, "not as root")
            await running
    finally:
        desk.close()
    (step,) = store.events(task_id=task.id, limit=100, kinds=[EventKind.STEP])
    assert step.data["carried_out"] is False
    own, _ = store.task_usage([task.id])[task.id]
    assert own.steps == 0


def test_the_cli_marks_a_cost_with_unpriced_calls() -> None:
    from orchestrator._cli_api import _spent

    def line(usage: Usage) -> str:
        return _spent(SimpleNamespace(subtree_usage=usage))

    priced = Usage(model_calls=1, input_tokens=10, cost_usd=0.5, steps=1)
    unpriced = Usage(model_calls=1, input_tokens=10, unpriced_calls=1)
    assert line(priced) == "  [10 tok $0.5000, 1 steps]"
    assert line(priced + unpriced) == "  [20 tok $0.5000+?, 1 steps]"
    assert line(unpriced) == "  [10 tok $?, 0 steps]"
