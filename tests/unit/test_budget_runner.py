"""Budgets on the desktop stand-in (actors._budget): a task's budget limits its whole subtree;
exceeded, the budgeted task and every open subtask are cancelled with the reason, which is in
the record and on the timeline. Scripted brains spend steps; a chat-tools brain against the
fake OpenAI server spends the tokens its replies report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors._budget import BudgetWatch
from actors._runner import TaskRunner
from actors._task_ports import ParentTask
from orchestrator.brains import make_brain
from orchestrator.domain import (
    BrainConfig,
    EventKind,
    Subtask,
    TaskInfo,
    TaskSpec,
    TaskState,
)
from orchestrator.records import SQLiteStore
from orchestrator.usage import Budget
from tests.fakes.openai_server import FakeOpenAIServer, chat_json, chat_tool_calls, tool_call
from tests.fakes.task_desktop import StandInDesktop, StoreRecords, new_task

LOOP = [{"type": "shell", "command": "true"}] * 30
"""A specialist that keeps working: 30 steps."""


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def desk() -> Iterator[StandInDesktop]:
    d = StandInDesktop()
    yield d
    d.close()


@dataclass
class Tree:
    """The runners of one tree in this process: ``stop`` cancels a task's runner (and, as its
    asyncio task is cancelled, every subtask it awaits), like an agent's ``cancel_task``."""

    records: StoreRecords
    running: dict[str, tuple[TaskRunner, asyncio.Task[TaskInfo]]] = field(default_factory=dict)
    children: list[TaskRunner] = field(default_factory=list)
    desktops: list[StandInDesktop] = field(default_factory=list)

    def watch(self) -> BudgetWatch:
        return BudgetWatch(self.records, stop=self.stop)

    async def stop(self, task: TaskInfo, reason: str) -> None:
        runner, work = self.running[task.id]
        runner.cancel_reason = reason
        work.cancel()
        await asyncio.wait({work})  # cancelled itself meanwhile (a subtask): stops waiting

    def start(self, runner: TaskRunner) -> asyncio.Task[TaskInfo]:
        work = asyncio.ensure_future(runner.run())
        self.running[runner.task.id] = (runner, work)
        return work

    async def run_subtask(
        self, parent: ParentTask, subtask: Subtask, spec: TaskSpec, attempt: int, **_: Any
    ) -> TaskInfo:
        desk = StandInDesktop()
        self.desktops.append(desk)
        child = await new_task(self.records, spec, parent_task_id=parent.task.id)
        await parent.add_subtask(child)
        brain = make_brain(BrainConfig(kind="scripted", script=spec.script or {"steps": []}))
        runner = TaskRunner(
            child, subtask.role, f"t/u/{subtask.id}", desk, brain, self, self.records,
            budget=self.watch(),
        )  # fmt: skip
        self.children.append(runner)
        work = self.start(runner)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.cancel()  # the parent was cancelled: so is its subtask
            await asyncio.gather(work, return_exceptions=True)
            raise

    def close(self) -> None:
        for d in self.desktops:
            d.close()


@pytest.fixture
def tree(records: StoreRecords) -> Iterator[Tree]:
    t = Tree(records)
    yield t
    t.close()


def steps_of(records: StoreRecords, task_ids: list[str]) -> int:
    return sum(
        len(records.store.events(task_id=t, limit=1000, kinds=[EventKind.STEP])) for t in task_ids
    )


async def test_a_subtree_over_its_steps_budget_is_cancelled_with_the_reason(
    records: StoreRecords, desk: StandInDesktop, tree: Tree
) -> None:
    script = {
        "subtasks": [
            {"id": "left", "role": "looper", "description": "loop", "script": {"steps": LOOP}},
            {"id": "right", "role": "looper", "description": "loop", "script": {"steps": LOOP}},
        ]
    }
    spec = TaskSpec(description="two loops", script=script, budget=Budget(steps=5))
    root = await new_task(records, spec)
    brain = make_brain(BrainConfig(kind="scripted", script=script))
    runner = TaskRunner(root, "boss", "t/u/boss", desk, brain, tree, records, budget=tree.watch())

    async with asyncio.timeout(30):
        ended = await asyncio.gather(tree.start(runner), return_exceptions=True)

    assert isinstance(ended[0], asyncio.CancelledError)  # cancelled by its agent, as a stop is
    stored = records.store.get_task(root.id)
    assert stored is not None and stored.state == TaskState.CANCELLED
    assert stored.error is not None
    assert stored.error.startswith("budget exceeded: ") and stored.error.endswith(
        f" steps of 5 (subtree of {root.id})"
    )
    assert [records.states(c.task.id)[-1] for c in tree.children] == ["cancelled"] * 2
    ids = [root.id, *(c.task.id for c in tree.children)]
    assert 6 <= steps_of(records, ids) <= 7  # the step that exceeded it (and one in flight)
    (noted,) = records.store.events(task_id=root.id, kinds=[EventKind.LOG])
    assert noted.data["msg"] == stored.error
    assert noted.data["budget"] == {"steps": 5}
    assert noted.data["noticed_by"] in [c.task.id for c in tree.children]
    last = records.store.events(task_id=root.id, kinds=[EventKind.TASK])[-1]
    assert (last.data["state"], last.data["error"]) == ("cancelled", stored.error)
    _, subtree = records.store.task_usage([root.id])[root.id]
    assert subtree.steps == steps_of(records, ids)


async def test_a_task_over_its_own_budget_ends_cancelled_at_once(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    script = {"steps": LOOP[:5]}
    task = await new_task(
        records, TaskSpec(description="loop", script=script, budget=Budget(steps=2))
    )
    brain = make_brain(BrainConfig(kind="scripted", script=script))
    runner = TaskRunner(task, "tester", "t/u/me", desk, brain, None, records)  # type: ignore[arg-type]

    ended = await runner.run()

    assert ended.state == TaskState.CANCELLED
    assert ended.error == f"budget exceeded: 3 steps of 2 (subtree of {task.id})"
    assert len(desk.actions) == 3
    assert records.states(task.id) == ["pending", "running", "cancelled"]


async def test_a_subtask_under_its_ancestors_budget_goes_on(
    records: StoreRecords, desk: StandInDesktop, tree: Tree
) -> None:
    one = {"id": "a", "role": "r", "description": "a", "script": {"steps": LOOP[:3]}}
    script = {"subtasks": [one]}
    root = await new_task(
        records, TaskSpec(description="ok", script=script, budget=Budget(steps=3, tokens=10))
    )
    brain = make_brain(BrainConfig(kind="scripted", script=script))
    runner = TaskRunner(root, "boss", "t/u/boss", desk, brain, tree, records, budget=tree.watch())

    ended = await tree.start(runner)

    assert ended.state == TaskState.SUCCEEDED  # 3 steps of 3: reached, not exceeded
    _, subtree = records.store.task_usage([root.id])[root.id]
    assert (subtree.steps, subtree.model_calls) == (3, 0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


async def test_a_tokens_budget_counts_what_the_model_reports(
    records: StoreRecords, desk: StandInDesktop, fake: FakeOpenAIServer
) -> None:
    fake.add(
        chat_json({"decision": "do", "reason": "small"}, input_tokens=100, output_tokens=20),
        chat_tool_calls(tool_call("wait", {"duration_s": 0.01}), input_tokens=100),
        chat_tool_calls(tool_call("wait", {"duration_s": 0.01}), input_tokens=100),
    )
    spec = TaskSpec(description="wait", budget=Budget(tokens=300))
    task = await new_task(records, spec)
    brain = make_brain(BrainConfig(kind="openai", model="gpt-4o", base_url=fake.base_url))
    runner = TaskRunner(task, "tester", "t/u/me", desk, brain, None, records)  # type: ignore[arg-type]
    try:
        ended = await runner.run()
    finally:
        await brain.close()

    # 120 (triage) + 120 (a wait, carried out) + 120 = 360 > 300: cancelled before acting
    assert ended.state == TaskState.CANCELLED
    assert ended.error == f"budget exceeded: 360 tokens of 300 (subtree of {task.id})"
    assert len(desk.actions) == 1
    own, subtree = records.store.task_usage([task.id])[task.id]
    assert own == subtree
    assert (own.model_calls, own.input_tokens, own.output_tokens, own.steps) == (3, 300, 60, 1)
    assert own.unpriced_calls == 3  # no price configured for gpt-4o: unknown, not 0
    assert fake.pending == 0


async def test_a_cost_budget_prices_the_calls_with_the_configured_prices(
    records: StoreRecords,
    desk: StandInDesktop,
    fake: FakeOpenAIServer,
    operator_env: Callable[..., None],
) -> None:
    operator_env(ORCHESTRATOR_MODEL_PRICES='{"gpt-4o*": {"input": 1000, "output": 0}}')
    fake.add(
        chat_json({"decision": "do", "reason": "small"}, input_tokens=100, output_tokens=5),
        chat_tool_calls(tool_call("wait", {"duration_s": 0.01}), input_tokens=100),
        chat_tool_calls(tool_call("wait", {"duration_s": 0.01}), input_tokens=100),
    )
    task = await new_task(records, TaskSpec(description="wait", budget=Budget(cost_usd=0.25)))
    brain = make_brain(BrainConfig(kind="openai", model="gpt-4o", base_url=fake.base_url))
    runner = TaskRunner(task, "tester", "t/u/me", desk, brain, None, records)  # type: ignore[arg-type]
    try:
        ended = await runner.run()
    finally:
        await brain.close()

    # $0.10 a call: the third makes $0.30
    assert ended.state == TaskState.CANCELLED
    assert ended.error == f"budget exceeded: $0.3000 of $0.2500 (subtree of {task.id})"
    assert len(desk.actions) == 1
