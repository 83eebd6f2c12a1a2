"""Acting through the Responses API's computer tool: the computer_call loop."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.actions import ActionResult, CommandResult
from orchestrator.brains import (
    SAFETY_CHECK_PREFIX,
    BrainContext,
    Observation,
    OpenAIBrain,
    StepRecord,
)
from orchestrator.domain import Act, BrainConfig, Done, Fail, TokenUsage
from orchestrator.errors import BrainError
from tests.fakes.openai_server import (
    RESPONSES,
    FakeOpenAIServer,
    computer_call_item,
    function_call_item,
    message_item,
    reasoning_item,
    refusal_item,
    responses_reply,
)


def shot(n: int) -> Observation:
    return Observation(
        screenshot=f"jpeg-{n}".encode(), media_type="image/jpeg", width=1280, height=800
    )


def url(n: int) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(f"jpeg-{n}".encode()).decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def make_brain(fake: FakeOpenAIServer, retries: int = 2) -> OpenAIBrain:
    config = BrainConfig(
        kind="openai", model="computer-use-preview", mode="responses", max_retries=retries
    )
    return OpenAIBrain(config, client=fake.client())


def context() -> BrainContext:
    return BrainContext(
        task_id="task-9", description="Open the Files app.", role="desktop user", agent_path="t/u/a"
    )


def ok() -> ActionResult:
    return ActionResult(ok=True)


async def test_first_request_declares_the_computer_tool_and_sends_the_screen(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(responses_reply(computer_call_item({"type": "screenshot"})))
    decision = await make_brain(fake).step(context(), shot(1))

    assert decision.actions == [a.TakeScreenshot()]
    (body,) = fake.bodies(RESPONSES)
    assert body["model"] == "computer-use-preview"
    assert body["truncation"] == "auto"
    assert "previous_response_id" not in body
    computer, *functions = body["tools"]
    assert computer == {
        "type": "computer_use_preview",
        "display_width": 1280,
        "display_height": 800,
        "environment": "linux",
    }
    assert sorted(f["name"] for f in functions) == ["ask_user", "fail", "shell"]
    shell = next(f for f in functions if f["name"] == "shell")
    assert shell["type"] == "function" and "command" in shell["parameters"]["properties"]
    assert "desktop user" in body["instructions"]
    (message,) = body["input"]
    assert message["role"] == "user"
    assert message["content"][0]["type"] == "input_text"
    assert "Open the Files app." in message["content"][0]["text"]
    assert message["content"][1] == {"type": "input_image", "image_url": url(1), "detail": "auto"}


async def test_the_loop_chains_responses_and_answers_calls_with_screenshots(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        responses_reply(
            reasoning_item("The Files icon is in the dock."),
            computer_call_item(
                {"type": "click", "button": "left", "x": 40, "y": 700}, call_id="c1"
            ),
            id="resp_1",
        ),
        responses_reply(
            computer_call_item(
                [
                    {"type": "keypress", "keys": ["CTRL", "L"]},
                    {"type": "type", "text": "/tmp"},
                    {"type": "scroll", "x": 10, "y": 10, "scroll_x": 0, "scroll_y": 300},
                ],
                call_id="c2",
            ),
            id="resp_2",
        ),
        responses_reply(message_item("Files is open at /tmp."), id="resp_3"),
    )
    brain = make_brain(fake)
    ctx = context()

    first = await brain.step(ctx, shot(1))
    ctx.history.append(StepRecord(first, [ok()]))
    second = await brain.step(ctx, shot(2))
    ctx.history.append(StepRecord(second, [ok(), ok(), ok()]))
    final = await brain.step(ctx, shot(3))

    assert first == Act(
        actions=[a.Click(x=40, y=700, keys=[])], thought="The Files icon is in the dock."
    )
    assert second.actions == [
        a.KeyPress(keys=["CTRL", "L"]),
        a.TypeText(text="/tmp"),
        a.Scroll(x=10, y=10, scroll_y=3, keys=[]),
    ]
    assert final == Done(result="Files is open at /tmp.")
    _, b2, b3 = fake.bodies(RESPONSES)
    assert b2["previous_response_id"] == "resp_1"
    assert b2["input"] == [
        {
            "type": "computer_call_output",
            "call_id": "c1",
            "output": {"type": "computer_screenshot", "image_url": url(2)},
        }
    ]
    assert b3["previous_response_id"] == "resp_2"
    assert b3["input"][0]["call_id"] == "c2"
    assert b3["input"][0]["output"]["image_url"] == url(3)
    assert all("acknowledged_safety_checks" not in item for b in (b2, b3) for item in b["input"])


async def test_pending_safety_checks_are_surfaced_not_acknowledged(
    fake: FakeOpenAIServer,
) -> None:
    check = {
        "id": "sc_1",
        "code": "malicious_instructions",
        "message": "The page asks to wire money.",
    }
    fake.add(
        responses_reply(
            computer_call_item({"type": "click", "button": "left", "x": 1, "y": 1},
                               safety_checks=[check])
        )
    )  # fmt: skip
    decision = await make_brain(fake).step(context(), shot(1))

    assert isinstance(decision, Fail)
    assert decision.reason.startswith(SAFETY_CHECK_PREFIX)
    assert "malicious_instructions: The page asks to wire money." in decision.reason
    assert len(fake.requests) == 1  # nothing was sent back, let alone acknowledged


async def test_shell_function_call_and_its_output(fake: FakeOpenAIServer) -> None:
    fake.add(
        responses_reply(
            function_call_item("shell", {"command": "ls /tmp", "user": "root"}, call_id="f1"),
            id="r1",
        ),
        responses_reply(message_item("listed"), id="r2"),
    )
    brain = make_brain(fake)
    ctx = context()
    decision = await brain.step(ctx, shot(1))
    assert decision.actions == [a.Shell(command="ls /tmp", user="root")]
    result = ActionResult(ok=True, command=CommandResult(exit_code=0, stdout="a\nb\n", stderr=""))
    ctx.history.append(StepRecord(decision, [result]))

    await brain.step(ctx, shot(2))

    (output,) = fake.bodies(RESPONSES)[1]["input"]
    assert output["type"] == "function_call_output" and output["call_id"] == "f1"
    assert json.loads(output["output"])["command"]["stdout"] == "a\nb\n"


async def test_failed_actions_are_told_along_with_the_screenshot(fake: FakeOpenAIServer) -> None:
    fake.add(
        responses_reply(
            computer_call_item(
                [{"type": "keypress", "keys": ["NOPE"]}, {"type": "type", "text": "x"}],
                call_id="c1",
            ),
            id="r1",
        ),
        responses_reply(message_item("gave up"), id="r2"),
    )
    brain = make_brain(fake)
    ctx = context()
    decision = await brain.step(ctx, shot(1))
    ctx.history.append(StepRecord(decision, [ActionResult.failure("unknown key 'NOPE'")]))
    await brain.step(ctx, shot(2))

    screenshot, note = fake.bodies(RESPONSES)[1]["input"]
    assert screenshot["type"] == "computer_call_output"
    assert note["role"] == "user"
    assert "unknown key 'NOPE'" in note["content"] and "not carried out" in note["content"]


async def test_an_unconvertible_action_is_answered_and_retried(fake: FakeOpenAIServer) -> None:
    fake.add(
        responses_reply(computer_call_item({"type": "levitate"}, call_id="c1"), id="r1"),
        responses_reply(computer_call_item({"type": "wait"}, call_id="c2"), id="r2"),
    )
    decision = await make_brain(fake).step(context(), shot(1))

    assert decision.actions == [a.Wait()]
    retry = fake.bodies(RESPONSES)[1]
    assert retry["previous_response_id"] == "r1"
    answer, note = retry["input"]
    assert answer["type"] == "computer_call_output" and answer["call_id"] == "c1"
    assert answer["output"]["image_url"] == url(1)
    assert "levitate" in note["content"]


async def test_unconvertible_actions_exhaust_retries(fake: FakeOpenAIServer) -> None:
    fake.add(
        responses_reply(function_call_item("shell", {"cmd": "ls"})),
        responses_reply(function_call_item("shell", {"cmd": "ls"})),
    )
    with pytest.raises(BrainError, match="after 2 attempt.*command: Field required"):
        await make_brain(fake, retries=1).step(context(), shot(1))


async def test_fail_function_gives_up(fake: FakeOpenAIServer) -> None:
    fake.add(responses_reply(function_call_item("fail", {"reason": "no Files app installed"})))
    decision = await make_brain(fake).step(context(), shot(1))
    assert decision == Fail(reason="no Files app installed")


async def test_refusal_and_failed_response_raise(fake: FakeOpenAIServer) -> None:
    fake.add(
        responses_reply(refusal_item("I can't operate that.")),
        responses_reply(status="failed"),
    )
    with pytest.raises(BrainError, match="refused to act: I can't operate that."):
        await make_brain(fake).step(context(), shot(1))
    with pytest.raises(BrainError, match="response failed"):
        await make_brain(fake).step(context(), shot(1))


async def test_check_after_delegation_uses_the_computer_loop(fake: FakeOpenAIServer) -> None:
    fake.add(responses_reply(message_item("All verified.")))
    decision = await make_brain(fake).check(context(), shot(1), {"files": "opened /tmp"})
    assert decision == Done(result="All verified.")
    text = fake.bodies(RESPONSES)[0]["input"][0]["content"][0]["text"]
    assert "files: opened /tmp" in text


async def test_usage_is_recorded(fake: FakeOpenAIServer) -> None:
    fake.add(responses_reply(message_item("done"), input_tokens=900, output_tokens=12))
    brain = make_brain(fake)
    await brain.step(context(), shot(1))
    assert brain.usage == [
        TokenUsage(input_tokens=900, output_tokens=12, model="computer-use-preview")
    ]


def test_items_are_plain_data(fake: FakeOpenAIServer) -> None:
    # the helpers' items are what the API would send (a sanity check of the fake itself)
    item: dict[str, Any] = computer_call_item({"type": "wait"})
    assert item["type"] == "computer_call" and item["pending_safety_checks"] == []
