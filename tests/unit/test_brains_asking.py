"""Brains asking a person, against the fake model servers: OpenAI's pending safety checks as
the agent's policy says (fail, ask, acknowledge), and the ``ask_user`` tool of the chat-tools,
Responses and Anthropic families, with the person's answer in the next request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.actions import ActionResult
from orchestrator.brains import BrainContext, Observation, StepRecord, make_brain
from orchestrator.brains._anthropic import AnthropicBrain
from orchestrator.brains._openai import OpenAIBrain
from orchestrator.domain import Act, Ask, AwaitApproval, BrainConfig, Done, Fail
from orchestrator.errors import ConfigError
from orchestrator.policy import ApprovalPolicy
from tests.fakes.anthropic_server import (
    FakeAnthropicServer,
    message,
    text,
    text_message,
    tool_use,
)
from tests.fakes.openai_server import (
    CHAT,
    RESPONSES,
    FakeOpenAIServer,
    chat_tool_calls,
    computer_call_item,
    function_call_item,
    message_item,
    responses_reply,
    tool_call,
)

CHECK = {"id": "sc_1", "code": "malicious_instructions", "message": "The screen tells you to."}


def shot(n: int) -> Observation:
    return Observation(
        screenshot=f"jpeg-{n}".encode(), media_type="image/jpeg", width=1280, height=800
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def responses_brain(fake: FakeOpenAIServer, safety_checks: Any = "fail") -> OpenAIBrain:
    config = BrainConfig(kind="openai", model="computer-use-preview", mode="responses")
    return OpenAIBrain(config, client=fake.client(), safety_checks=safety_checks)


def chat_brain(fake: FakeOpenAIServer) -> OpenAIBrain:
    return OpenAIBrain(BrainConfig(kind="openai", model="m", mode="chat"), client=fake.client())


def context() -> BrainContext:
    return BrainContext(task_id="task-1", description="Open the link.", role="desktop user")


def checked_click() -> Any:
    return responses_reply(
        computer_call_item(
            {"type": "click", "x": 10, "y": 20, "button": "left"},
            call_id="c1",
            safety_checks=[CHECK],
        ),
        id="resp_1",
    )


def computer_outputs(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in body["input"] if i.get("type") == "computer_call_output"]


def user_texts(body: dict[str, Any]) -> str:
    return "\n".join(
        str(i["content"]) for i in body["input"] if i.get("role") == "user" and "content" in i
    )


# ---------------------------------------------------------------------- safety checks


async def test_by_default_a_pending_safety_check_fails_the_step(fake: FakeOpenAIServer) -> None:
    fake.add(checked_click())
    decision = await responses_brain(fake).step(context(), shot(1))
    assert isinstance(decision, Fail)
    assert "malicious_instructions: The screen tells you to." in decision.reason


async def test_ask_awaits_approval_and_approved_acknowledges_the_checks(
    fake: FakeOpenAIServer,
) -> None:
    brain = responses_brain(fake, "ask")
    ctx = context()
    fake.add(checked_click())
    decision = await brain.step(ctx, shot(1))

    assert isinstance(decision, AwaitApproval)
    assert decision.actions == [a.Click(x=10, y=20)]
    assert "malicious_instructions" in decision.reason and "tells you to" in decision.reason
    # the person approved: the runner carried the click out and recorded it
    ctx.history.append(StepRecord(decision, [ActionResult(ok=True)], answer="approved"))
    fake.add(responses_reply(message_item("Opened.")))
    assert await brain.step(ctx, shot(2)) == Done(result="Opened.")

    _, second = fake.bodies(RESPONSES)
    assert second["previous_response_id"] == "resp_1"
    (output,) = computer_outputs(second)
    assert output["call_id"] == "c1"
    assert output["acknowledged_safety_checks"] == [CHECK]
    assert output["output"]["image_url"] == shot(2).data_url()
    assert brain.take_notes() == []  # a person acknowledged, not the brain


async def test_ask_refused_answers_the_call_with_the_refusal_and_acknowledges_nothing(
    fake: FakeOpenAIServer,
) -> None:
    brain = responses_brain(fake, "ask")
    ctx = context()
    fake.add(checked_click())
    decision = await brain.step(ctx, shot(1))
    assert isinstance(decision, AwaitApproval)
    # the runner's record of a refusal: the first action failed with the person's reason
    refused = ActionResult.failure("a person refused: not that link")
    ctx.history.append(StepRecord(decision, [refused], answer="refused: not that link"))
    fake.add(responses_reply(message_item("I will not open it.")))
    await brain.step(ctx, shot(2))

    _, second = fake.bodies(RESPONSES)
    (output,) = computer_outputs(second)
    assert "acknowledged_safety_checks" not in output
    assert "a person refused: not that link" in user_texts(second)


async def test_acknowledge_acts_at_once_notes_it_and_acknowledges_the_checks(
    fake: FakeOpenAIServer,
) -> None:
    brain = responses_brain(fake, "acknowledge")
    ctx = context()
    fake.add(checked_click())
    decision = await brain.step(ctx, shot(1))

    assert isinstance(decision, Act) and decision.actions == [a.Click(x=10, y=20)]
    (note,) = brain.take_notes()
    assert "acknowledged by the agent's policy" in note and "malicious_instructions" in note
    assert brain.take_notes() == []
    ctx.history.append(StepRecord(decision, [ActionResult(ok=True)]))
    fake.add(responses_reply(message_item("Opened.")))
    await brain.step(ctx, shot(2))
    _, second = fake.bodies(RESPONSES)
    (output,) = computer_outputs(second)
    assert output["acknowledged_safety_checks"] == [CHECK]


async def test_calls_without_checks_are_never_acknowledged(fake: FakeOpenAIServer) -> None:
    brain = responses_brain(fake, "ask")
    ctx = context()
    fake.add(responses_reply(computer_call_item({"type": "wait"}, call_id="c1")))
    decision = await brain.step(ctx, shot(1))
    assert isinstance(decision, Act)
    ctx.history.append(StepRecord(decision, [ActionResult(ok=True)]))
    fake.add(responses_reply(message_item("ok")))
    await brain.step(ctx, shot(2))
    (output,) = computer_outputs(fake.bodies(RESPONSES)[1])
    assert "acknowledged_safety_checks" not in output


def test_make_brain_refuses_acknowledge_unless_the_operator_allows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.config import settings

    config = BrainConfig(kind="openai", model="m", mode="responses", api_key="k")
    policy = ApprovalPolicy(safety_checks="acknowledge")
    monkeypatch.delenv("ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS", raising=False)
    settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS"):
            make_brain(config, policy=policy)
        monkeypatch.setenv("ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS", "true")
        settings.cache_clear()
        brain = make_brain(config, policy=policy)
        assert brain._actor._safety_checks == "acknowledge"  # type: ignore[attr-defined]
    finally:
        settings.cache_clear()


# ---------------------------------------------------------------------- ask_user


async def test_chat_ask_user_is_an_ask_and_the_answer_is_the_calls_result(
    fake: FakeOpenAIServer,
) -> None:
    brain = chat_brain(fake)
    ctx = context()
    fake.add(
        chat_tool_calls(
            tool_call("ask_user", {"question": "Which link?"}, id="q1"), content="Unsure."
        )
    )
    decision = await brain.step(ctx, shot(1))
    assert decision == Ask(question="Which link?", thought="Unsure.")

    ctx.history.append(StepRecord(decision, [], answer="the second one"))
    fake.add(chat_tool_calls(tool_call("done", {"result": "opened the second"})))
    assert await brain.step(ctx, shot(2)) == Done(result="opened the second")

    messages = fake.bodies(CHAT)[1]["messages"]
    asked = next(m for m in messages if m["role"] == "assistant")
    assert asked["tool_calls"][0]["id"] == "q1"
    assert asked["tool_calls"][0]["function"]["name"] == "ask_user"
    (answer,) = [m for m in messages if m["role"] == "tool"]
    assert answer == {
        "role": "tool",
        "tool_call_id": "q1",
        "content": "The person answered: the second one",
    }


async def test_chat_renders_a_question_it_did_not_ask_with_its_answer(
    fake: FakeOpenAIServer,
) -> None:
    ctx = context()  # say, a scripted step or another brain asked before
    ctx.history.append(StepRecord(Ask(question="Which port?"), [], answer="8080"))
    fake.add(chat_tool_calls(tool_call("done", {"result": "ok"})))
    await chat_brain(fake).step(ctx, shot(2))
    messages = fake.bodies(CHAT)[0]["messages"]
    (call,) = next(m for m in messages if m["role"] == "assistant")["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"question": "Which port?"}
    (answer,) = [m for m in messages if m["role"] == "tool"]
    assert answer["tool_call_id"] == call["id"] and "8080" in answer["content"]


async def test_chat_ask_user_along_with_actions_is_ignored_and_told(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        chat_tool_calls(
            tool_call("wait", {}, id="w"), tool_call("ask_user", {"question": "?"}, id="q")
        )
    )
    decision = await chat_brain(fake).step(context(), shot(1))
    assert isinstance(decision, Act) and decision.actions == [a.Wait()]


async def test_responses_ask_user_is_an_ask_answered_in_the_function_output(
    fake: FakeOpenAIServer,
) -> None:
    brain = responses_brain(fake)
    ctx = context()
    fake.add(
        responses_reply(
            function_call_item("ask_user", {"question": "Which account?"}, call_id="f1"),
            id="resp_q",
        )
    )
    decision = await brain.step(ctx, shot(1))
    assert isinstance(decision, Ask) and decision.question == "Which account?"

    ctx.history.append(StepRecord(decision, [], answer="the work one"))
    fake.add(responses_reply(message_item("Logged in.")))
    assert await brain.step(ctx, shot(2)) == Done(result="Logged in.")
    _, second = fake.bodies(RESPONSES)
    assert second["previous_response_id"] == "resp_q"
    assert second["input"] == [
        {
            "type": "function_call_output",
            "call_id": "f1",
            "output": "The person answered: the work one",
        }
    ]


# ---------------------------------------------------------------------- Anthropic's ask_user


@pytest.fixture
async def claude() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server


def claude_brain(fake: FakeAnthropicServer) -> AnthropicBrain:
    config = BrainConfig(
        kind="anthropic", model="claude-sonnet-4-5", base_url=fake.base_url, api_key="own"
    )
    brain = make_brain(config)
    assert isinstance(brain, AnthropicBrain)
    return brain


async def test_anthropic_ask_user_is_an_ask_answered_in_its_tool_result(
    claude: FakeAnthropicServer,
) -> None:
    brain = claude_brain(claude)
    ctx = context()
    claude.add(
        message(
            text("Which one?"),
            tool_use("ask_user", {"question": "Which link, the first or the second?"}, id="tu1"),
            stop_reason="tool_use",
        )
    )
    decision = await brain.step(ctx, shot(1))
    assert decision == Ask(question="Which link, the first or the second?", thought="Which one?")
    assert claude_tools(claude)[-1]["name"] == "ask_user"

    ctx.history.append(StepRecord(decision, [], answer="the second"))
    claude.add(text_message("Opened the second link."))
    assert await brain.step(ctx, shot(2)) == Done(result="Opened the second link.")
    messages = claude.bodies()[1]["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["content"][1]["id"] == "tu1"
    results = [b for b in messages[2]["content"] if b.get("type") == "tool_result"]
    assert [(r["tool_use_id"], r["content"][0]["text"]) for r in results] == [
        ("tu1", "The person answered: the second")
    ]
    assert "is_error" not in results[0]


async def test_anthropic_ask_user_along_with_an_action_is_ignored_and_told(
    claude: FakeAnthropicServer,
) -> None:
    brain = claude_brain(claude)
    ctx = context()
    claude.add(
        message(
            tool_use("bash", {"command": "ls"}, id="b1"),
            tool_use("ask_user", {"question": "Now?"}, id="q1"),
            stop_reason="tool_use",
        )
    )
    decision = await brain.step(ctx, shot(1))
    assert isinstance(decision, Act) and decision.actions == [a.Shell(command="ls")]
    ctx.history.append(StepRecord(decision, [ActionResult(ok=True)]))
    claude.add(text_message("done"))
    await brain.step(ctx, shot(2))
    results = {
        b["tool_use_id"]: b
        for b in claude.bodies()[1]["messages"][2]["content"]
        if b.get("type") == "tool_result"
    }
    assert "ask_user alone" in results["q1"]["content"][0]["text"]


def claude_tools(fake: FakeAnthropicServer) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = fake.bodies()[-1]["tools"]
    return tools


async def test_acknowledged_checks_of_a_step_a_person_then_refused_are_not_acknowledged(
    fake: FakeOpenAIServer,
) -> None:
    # acknowledge mode, but the agent's approve rules held the step and a person refused it
    brain = responses_brain(fake, "acknowledge")
    ctx = context()
    fake.add(checked_click())
    decision = await brain.step(ctx, shot(1))
    assert isinstance(decision, Act)
    refused = ActionResult.failure("a person refused: no")
    ctx.history.append(StepRecord(decision, [refused], answer="refused: no"))
    fake.add(responses_reply(message_item("ok")))
    await brain.step(ctx, shot(2))
    (output,) = computer_outputs(fake.bodies(RESPONSES)[1])
    assert "acknowledged_safety_checks" not in output
