"""The real TaskRunner with the OpenAI Responses brain against the fake server, on the
stand-in desktop, under the agent's policy: a pending safety check asked of a person is
carried out once approved and acknowledged to the model in the next request; one the
policy acknowledges runs at once and says so on the timeline; a step held by an approve
rule and then refused is told to the model, its checks not acknowledged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from actors._runner import TaskRunner
from orchestrator import actions as a
from orchestrator.brains._openai import OpenAIBrain
from orchestrator.domain import BrainConfig, EventKind, TaskSpec, TaskState
from orchestrator.policy import ApprovalPolicy
from orchestrator.records import SQLiteStore
from tests.fakes.openai_server import (
    RESPONSES,
    FakeOpenAIServer,
    computer_call_item,
    function_call_item,
    message_item,
    responses_reply,
)
from tests.fakes.task_desktop import LocalHost, StandInDesktop, StoreRecords, new_task

CHECK = {"id": "sc_9", "code": "sensitive_domain", "message": "This looks like a bank."}
TRIAGE = {"decision": "do", "reason": "one click"}


@pytest.fixture
def desk() -> Iterator[StandInDesktop]:
    d = StandInDesktop((64, 48))
    yield d
    d.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def triage() -> Any:
    return responses_reply(message_item(json.dumps(TRIAGE)))


def checked_click(call_id: str = "c1") -> Any:
    return responses_reply(
        computer_call_item(
            {"type": "click", "x": 10, "y": 20, "button": "left"},
            call_id=call_id,
            safety_checks=[CHECK],
        ),
        id="resp_checked",
    )


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():  # noqa: ASYNC110 - polling a condition, with a deadline
            await asyncio.sleep(0.005)


def runner_for(
    store: SQLiteStore,
    desk: StandInDesktop,
    fake: FakeOpenAIServer,
    policy: ApprovalPolicy,
    task: Any,
) -> TaskRunner:
    records = StoreRecords(store)
    config = BrainConfig(kind="openai", model="computer-use-preview", mode="responses")
    brain = OpenAIBrain(config, client=fake.client(), safety_checks=policy.safety_checks)
    return TaskRunner(
        task, "clicker", "t/u/c", desk, brain, LocalHost(records), records, policy=policy
    )


def outputs(fake: FakeOpenAIServer, i: int) -> list[dict[str, Any]]:
    return [
        x for x in fake.bodies(RESPONSES)[i]["input"] if x.get("type") == "computer_call_output"
    ]


async def test_a_check_asked_of_a_person_runs_once_approved_and_is_acknowledged(
    store: SQLiteStore, desk: StandInDesktop, fake: FakeOpenAIServer
) -> None:
    fake.add(triage(), checked_click(), responses_reply(message_item("Clicked.")))
    task = await new_task(StoreRecords(store), TaskSpec(description="click it"))
    runner = runner_for(store, desk, fake, ApprovalPolicy(safety_checks="ask"), task)
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.task.state == TaskState.APPROVAL_REQUIRED)
    waiting = runner.task.waiting
    assert waiting is not None and waiting.actions == [a.Click(x=10, y=20)]
    assert "sensitive_domain: This looks like a bank." in (waiting.reason or "")
    assert desk.actions == []  # nothing ran before the person approved
    await runner.approve(True)
    ended = await running

    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "Clicked.")
    assert desk.actions == [a.Click(x=10, y=20)]
    (answer,) = outputs(fake, 2)
    assert answer["call_id"] == "c1" and answer["acknowledged_safety_checks"] == [CHECK]
    assert fake.bodies(RESPONSES)[2]["previous_response_id"] == "resp_checked"


async def test_a_check_the_policy_acknowledges_runs_at_once_and_is_on_the_timeline(
    store: SQLiteStore, desk: StandInDesktop, fake: FakeOpenAIServer
) -> None:
    fake.add(triage(), checked_click(), responses_reply(message_item("Clicked.")))
    task = await new_task(StoreRecords(store), TaskSpec(description="click it"))
    runner = runner_for(store, desk, fake, ApprovalPolicy(safety_checks="acknowledge"), task)
    ended = await runner.run()

    assert ended.state == TaskState.SUCCEEDED, ended.error
    assert desk.actions == [a.Click(x=10, y=20)]
    (answer,) = outputs(fake, 2)
    assert answer["acknowledged_safety_checks"] == [CHECK]
    logs = [e.data["msg"] for e in store.events(task_id=task.id) if e.kind == EventKind.LOG]
    assert logs == [
        "safety check pending: acknowledged by the agent's policy: "
        "sensitive_domain: This looks like a bank."
    ]
    states = [e.data["state"] for e in store.events(task_id=task.id) if e.kind == EventKind.TASK]
    assert "approval_required" not in states


async def test_a_step_an_approve_rule_holds_and_a_person_refuses_is_told_to_the_model(
    store: SQLiteStore, desk: StandInDesktop, fake: FakeOpenAIServer
) -> None:
    root = {"command": "touch /etc/x", "user": "root"}
    fake.add(
        triage(),
        responses_reply(function_call_item("shell", root, call_id="f1"), id="resp_shell"),
        responses_reply(function_call_item("fail", {"reason": "refused"}, call_id="f2")),
    )
    task = await new_task(StoreRecords(store), TaskSpec(description="touch it"))
    policy = ApprovalPolicy(approve=["shell_as_root"])
    runner = runner_for(store, desk, fake, policy, task)
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.task.state == TaskState.APPROVAL_REQUIRED)
    await runner.approve(False, "not as root")
    ended = await running

    assert (ended.state, ended.error) == (TaskState.FAILED, "refused")
    assert desk.actions == []
    third = fake.bodies(RESPONSES)[2]
    assert third["previous_response_id"] == "resp_shell"  # the same conversation goes on
    (told,) = [x for x in third["input"] if x.get("type") == "function_call_output"]
    assert told["call_id"] == "f1" and "a person refused: not as root" in told["output"]
