"""Triage and planning by a model: structured JSON replies, validated, retried, refused."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest

from orchestrator.brains import BrainContext, Observation, OpenAIBrain
from orchestrator.domain import BrainConfig, Plan, Subtask, TokenUsage, Triage
from orchestrator.errors import BrainError
from tests.fakes.openai_server import (
    CHAT,
    RESPONSES,
    FakeOpenAIServer,
    chat_json,
    chat_refusal,
    chat_reply,
    chat_text,
    http_error,
    message_item,
    refusal_item,
    responses_reply,
)

PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"
OBS = Observation(screenshot=PNG, media_type="image/png", width=1024, height=768)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()

PLAN = {
    "subtasks": [
        {
            "id": "db",
            "role": "database admin",
            "description": "Install postgres.",
            "depends_on": [],
        },
        {
            "id": "app",
            "role": "python developer",
            "description": "Deploy the app.",
            "depends_on": ["db"],
        },
    ],
    "check": "the app answers on port 8000",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def make_brain(
    fake: FakeOpenAIServer, mode: Literal["chat", "responses"] = "chat", retries: int = 2
) -> OpenAIBrain:
    config = BrainConfig(kind="openai", model="test-model", mode=mode, max_retries=retries)
    return OpenAIBrain(config, client=fake.client())


def context(**kw: Any) -> BrainContext:
    return BrainContext(
        task_id="task-1",
        description="Set up the web app with its database.",
        role="ops lead",
        agent_path="acme/alice/lead",
        **kw,
    )


def user_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = body["messages"][1]["content"]
    return parts


async def test_triage_asks_with_screenshot_role_task_and_schema(fake: FakeOpenAIServer) -> None:
    fake.add(chat_json({"decision": "delegate", "reason": "needs a DBA and a developer"}))
    brain = make_brain(fake)
    ctx = context(subtask_results={"prep": "server is at 10.0.0.5"})

    triage = await brain.triage(ctx, OBS)

    assert triage == Triage(decision="delegate", reason="needs a DBA and a developer")
    (body,) = fake.bodies(CHAT)
    assert body["model"] == "test-model"
    system = body["messages"][0]
    assert system["role"] == "system" and "ops lead" in system["content"]
    assert "acme/alice/lead" in system["content"]
    text, image = user_parts(body)
    assert "Set up the web app" in text["text"]
    assert "prep: server is at 10.0.0.5" in text["text"]
    assert image == {"type": "image_url", "image_url": {"url": DATA_URL}}
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "triage" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["decision"]["enum"] == ["do", "delegate"]
    # strict mode: every property required, no extra properties
    assert set(schema["required"]) == set(schema["properties"]) == {"decision", "reason"}
    assert schema["additionalProperties"] is False


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found += _objects(value)
    elif isinstance(node, list):
        for value in node:
            found += _objects(value)
    return found


async def test_plan_parses_into_subtasks_with_a_strict_schema(fake: FakeOpenAIServer) -> None:
    fake.add(chat_json(PLAN))
    brain = make_brain(fake)

    plan = await brain.plan(context(), OBS)

    assert plan == Plan(
        subtasks=[
            Subtask(id="db", role="database admin", description="Install postgres."),
            Subtask(
                id="app", role="python developer", description="Deploy the app.", depends_on=["db"]
            ),
        ],
        check="the app answers on port 8000",
    )
    schema = fake.bodies(CHAT)[0]["response_format"]["json_schema"]["schema"]
    objects = _objects(schema)
    assert len(objects) >= 2  # the plan and its subtasks (via $defs)
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert set(obj["required"]) == set(obj["properties"])
    assert "default" not in json.dumps(schema)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (chat_text("Sure! I will delegate this."), "not valid JSON"),
        (chat_json({"decision": "maybe", "reason": "?"}), "decision"),
        (chat_json({"decision": "do"}), "reason: Field required"),
    ],
)
async def test_malformed_triage_is_retried_with_the_problem(
    fake: FakeOpenAIServer, bad: Any, reason: str
) -> None:
    fake.add(bad, chat_json({"decision": "do", "reason": "simple"}))
    brain = make_brain(fake)

    triage = await brain.triage(context(), OBS)

    assert triage.decision == "do"
    first, second = fake.bodies(CHAT)
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assistant, correction = second["messages"][len(first["messages"]) :]
    assert assistant == {
        "role": "assistant",
        "content": bad.body["choices"][0]["message"]["content"],
    }
    assert correction["role"] == "user" and reason in correction["content"]


async def test_json_in_a_code_fence_is_accepted(fake: FakeOpenAIServer) -> None:
    fake.add(chat_text('```json\n{"decision": "do", "reason": "small"}\n```'))
    assert (await make_brain(fake).triage(context(), OBS)).decision == "do"


async def test_malformed_replies_exhaust_retries_then_brain_error(fake: FakeOpenAIServer) -> None:
    fake.add(chat_text("nope"), chat_text("still nope"), chat_text("{bad json"))
    brain = make_brain(fake, retries=2)

    with pytest.raises(BrainError, match=r"no usable triage decision after 3 attempt\(s\).*JSON"):
        await brain.triage(context(), OBS)
    assert len(fake.requests) == 3


async def test_plan_that_breaks_domain_rules_is_retried(fake: FakeOpenAIServer) -> None:
    cyclic = {
        "subtasks": [
            {"id": "a", "role": "r", "description": "d", "depends_on": ["b"]},
            {"id": "b", "role": "r", "description": "d", "depends_on": ["a"]},
        ],
        "check": None,
    }
    bad_id = {
        "subtasks": [{"id": "has space", "role": "r", "description": "d", "depends_on": []}],
        "check": None,
    }
    fake.add(chat_json(cyclic), chat_json(bad_id), chat_json({"subtasks": [], "check": None}))
    brain = make_brain(fake, retries=2)

    with pytest.raises(BrainError, match="plan") as info:
        await brain.plan(context(), OBS)
    assert "at least 1" in str(info.value)  # the last problem: an empty plan
    corrections = [b["messages"][-1]["content"] for b in fake.bodies(CHAT)[1:]]
    assert "cycle" in corrections[0]
    assert "subtasks.0.id" in corrections[1] and "pattern" in corrections[1]


async def test_refusal_raises_brain_error_naming_it(fake: FakeOpenAIServer) -> None:
    fake.add(chat_refusal("I can't help with that request."))
    with pytest.raises(BrainError, match="refused.*I can't help with that request"):
        await make_brain(fake).triage(context(), OBS)
    assert len(fake.requests) == 1  # a refusal is not retried


async def test_usage_is_recorded_per_call(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_text("bad", input_tokens=50, output_tokens=3),
        chat_json(PLAN, input_tokens=70, output_tokens=40, model="test-model-2025"),
    )
    seen: list[TokenUsage] = []
    brain = OpenAIBrain(
        BrainConfig(kind="openai", model="test-model"), client=fake.client(), on_usage=seen.append
    )

    await brain.plan(context(), OBS)

    assert (
        brain.usage
        == seen
        == [
            TokenUsage(input_tokens=50, output_tokens=3, model="test-model"),
            TokenUsage(input_tokens=70, output_tokens=40, model="test-model-2025"),
        ]
    )


# ---------------------------------------------------------------------- responses mode


async def test_responses_mode_triage_uses_text_format_and_input_image(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(responses_reply(message_item(json.dumps({"decision": "do", "reason": "one app"}))))
    brain = make_brain(fake, mode="responses")

    assert await brain.triage(context(), OBS) == Triage(decision="do", reason="one app")

    (body,) = fake.bodies(RESPONSES)
    assert "ops lead" in body["instructions"]
    (message,) = body["input"]
    text, image = message["content"]
    assert text["type"] == "input_text" and "Set up the web app" in text["text"]
    assert image["type"] == "input_image" and image["image_url"] == DATA_URL
    fmt = body["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "triage" and fmt["strict"] is True


async def test_responses_mode_plan_retries_then_parses(fake: FakeOpenAIServer) -> None:
    fake.add(
        responses_reply(message_item('{"subtasks": ')),
        responses_reply(message_item(json.dumps(PLAN))),
    )
    plan = await make_brain(fake, mode="responses").plan(context(), OBS)
    assert [st.id for st in plan.subtasks] == ["db", "app"]
    retry = fake.bodies(RESPONSES)[1]["input"]
    assert retry[-2] == {"role": "assistant", "content": '{"subtasks": '}
    assert "not valid JSON" in retry[-1]["content"]


async def test_responses_mode_refusal(fake: FakeOpenAIServer) -> None:
    fake.add(responses_reply(refusal_item("No.")))
    with pytest.raises(BrainError, match="refused.*No."):
        await make_brain(fake, mode="responses").triage(context(), OBS)


# ---------------------------------------------------------------------- servers that ignore
# or reject response_format (Anthropic's OpenAI-compatible endpoint ignores it)


@pytest.mark.parametrize(
    "content",
    [
        'Here is my decision:\n{"decision": "do", "reason": "small"}\nLet me know.',
        'I considered it.\n\n```json\n{"decision": "do", "reason": "small"}\n```\nDone.',
        '```\n{"decision": "do", "reason": "small"}\n```',
        # an object in the prose that is not the answer comes first: the one that fits wins
        'Given {"screen": "desktop"}, my answer: {"decision": "do", "reason": "small"}',
    ],
)
async def test_json_wrapped_in_prose_or_a_fence_is_accepted(
    fake: FakeOpenAIServer, content: str
) -> None:
    fake.add(chat_text(content))
    assert await make_brain(fake).triage(context(), OBS) == Triage(decision="do", reason="small")


async def test_the_schema_is_in_the_instructions_too(fake: FakeOpenAIServer) -> None:
    """A server that ignores response_format still tells its model the fields."""
    fake.add(chat_json(PLAN))
    await make_brain(fake).plan(context(), OBS)
    system = fake.bodies(CHAT)[0]["messages"][0]["content"]
    assert "JSON schema" in system and '"depends_on"' in system and '"subtasks"' in system


async def test_prose_with_a_wrong_object_is_fed_back_with_the_schema_problem(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        chat_text('My answer is {"decision": "later"} as you can see.'),
        chat_text('Sorry: {"decision": "delegate", "reason": "two parts"}'),
    )
    triage = await make_brain(fake).triage(context(), OBS)
    assert triage == Triage(decision="delegate", reason="two parts")
    correction = fake.bodies(CHAT)[1]["messages"][-1]["content"]
    assert "does not match the schema" in correction and "decision" in correction


@pytest.mark.parametrize(
    "message",
    [
        "Unknown parameter: 'response_format'.",
        "response_format.json_schema is not supported by this model",
        "Invalid value for 'json_schema': structured outputs are not available",
    ],
)
async def test_a_server_rejecting_response_format_is_asked_without_it_for_the_rest_of_the_task(
    fake: FakeOpenAIServer, message: str
) -> None:
    fake.add(
        http_error(CHAT, 400, message),
        chat_text('```json\n{"decision": "delegate", "reason": "two parts"}\n```'),
        chat_text('Plan: {"subtasks": [{"id": "a", "role": "r", "description": "d"}]}'),
        chat_json(PLAN),
    )
    brain = make_brain(fake, retries=1)

    assert (await brain.triage(context(), OBS)).decision == "delegate"
    plan = await brain.plan(context(), OBS)

    assert [st.id for st in plan.subtasks] == ["db", "app"]
    rejected, fallback, bad_plan, good_plan = fake.bodies(CHAT)
    assert "response_format" in rejected
    for body in (fallback, bad_plan, good_plan):  # never sent again by this brain
        assert "response_format" not in body
        assert "JSON schema" in body["messages"][0]["content"]
    # the rejected request cost no attempt: the plan still had its retry
    assert "depends_on: Field required" in good_plan["messages"][-1]["content"]
    # another brain (another task) tries response_format again
    fake.add(chat_json({"decision": "do", "reason": "x"}))
    await make_brain(fake).triage(context(), OBS)
    assert "response_format" in fake.bodies(CHAT)[-1]


async def test_other_bad_requests_are_not_taken_for_a_rejected_format(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(http_error(CHAT, 400, "This model's maximum context length is 8192 tokens."))
    with pytest.raises(BrainError, match="answered 400.*maximum context length"):
        await make_brain(fake).triage(context(), OBS)
    assert len(fake.requests) == 1


async def test_responses_mode_falls_back_without_text_format(fake: FakeOpenAIServer) -> None:
    fake.add(
        http_error(RESPONSES, 400, "Unsupported parameter: 'text.format'."),
        responses_reply(message_item('Sure. {"decision": "do", "reason": "one app"}')),
    )
    brain = make_brain(fake, mode="responses")
    assert await brain.triage(context(), OBS) == Triage(decision="do", reason="one app")
    rejected, fallback = fake.bodies(RESPONSES)
    assert rejected["text"]["format"]["type"] == "json_schema"
    assert "text" not in fallback and "JSON schema" in fallback["instructions"]


def test_parse_json_reply_reports_what_is_wrong() -> None:
    from orchestrator.brains._structured import TriageReply, parse_json_reply

    def same(r: TriageReply) -> TriageReply:
        return r

    with pytest.raises(ValueError, match="not valid JSON.*holds no JSON object"):
        parse_json_reply("I would do it myself.", TriageReply, same)
    with pytest.raises(ValueError, match="does not match the schema: reason"):
        parse_json_reply('{"decision": "do"}', TriageReply, same)
    with pytest.raises(ValueError, match="does not match the schema"):
        parse_json_reply("[1, 2]", TriageReply, same)
    with pytest.raises(ValueError, match="extra"):
        parse_json_reply('x {"decision": "do", "reason": "r", "extra": 1} y', TriageReply, same)
    assert parse_json_reply('{"decision": "do", "reason": "r"}', TriageReply, same).reason == "r"


async def test_a_reply_cut_at_the_token_limit_is_told_so(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_reply(content='{"subtasks": [{"id": "a", "ro', finish_reason="length"),
        chat_json(PLAN),
    )
    await make_brain(fake).plan(context(), OBS)
    correction = fake.bodies(CHAT)[1]["messages"][-1]["content"]
    assert "not valid JSON" in correction and "cut off at the token limit" in correction
