"""Claude as the planner (the Messages API) and another model acting: the fake Anthropic
server and the fake OpenAI server, spoken to by the real ``anthropic`` and ``openai``
clients."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr

from orchestrator.brains import BrainContext, Observation, make_brain
from orchestrator.brains._planner import AnthropicPlanner, PlannedBrain
from orchestrator.domain import Act, BrainConfig, PlannerConfig, TokenUsage, Triage
from orchestrator.errors import BrainError, ConfigError
from tests.fakes.anthropic_server import (
    FakeAnthropicServer,
    message,
    overloaded,
    refusal,
    text,
    text_message,
)
from tests.fakes.openai_server import CHAT, FakeOpenAIServer, chat_tool_calls, tool_call

PNG = b"\x89PNG-planner-anthropic"
OBS = Observation(screenshot=PNG, media_type="image/png", width=1280, height=800)
PLAN = {
    "subtasks": [
        {
            "id": "db",
            "role": "database admin",
            "description": "Install postgres.",
            "depends_on": [],
        },
        {"id": "app", "role": "developer", "description": "Deploy.", "depends_on": ["db"]},
    ],
    "check": None,
}


def context() -> BrainContext:
    return BrainContext(task_id="task-1", description="Set up the app.", role="ops lead")


@pytest.fixture
async def claude() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
async def actor_api() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def planned(
    claude: FakeAnthropicServer,
    actor_api: FakeOpenAIServer,
    on_usage: Callable[[TokenUsage], None] | None = None,
    retries: int = 2,
) -> PlannedBrain:
    config = BrainConfig(
        kind="openai",
        model="actor-model",
        base_url=actor_api.base_url,
        max_retries=retries,
        planner=PlannerConfig(
            api="anthropic", model="claude-planner", base_url=claude.base_url, api_key="sk-own"
        ),
    )
    brain = make_brain(config, on_usage=on_usage)
    assert isinstance(brain, PlannedBrain)
    return brain


async def test_claude_triages_and_plans_and_the_open_model_acts(
    claude: FakeAnthropicServer, actor_api: FakeOpenAIServer
) -> None:
    claude.add(
        text_message(
            'I will split it.\n{"decision": "delegate", "reason": "two parts"}',
            input_tokens=40,
            output_tokens=9,
            cache_read=10,
        ),
        message(text("```json\n" + json.dumps(PLAN) + "\n```"), input_tokens=50, output_tokens=30),
    )
    actor_api.add(
        chat_tool_calls(tool_call("wait", {}), input_tokens=70),
    )
    seen: list[TokenUsage] = []
    brain = planned(claude, actor_api, on_usage=seen.append)
    try:
        assert await brain.triage(context(), OBS) == Triage(decision="delegate", reason="two parts")
        plan = await brain.plan(context(), OBS)
        assert [st.id for st in plan.subtasks] == ["db", "app"]
        step = await brain.step(context(), OBS)
        assert isinstance(step, Act)
    finally:
        await brain.close()

    triage_body, plan_body = claude.bodies()
    for body in (triage_body, plan_body):
        assert body["model"] == "claude-planner" and body["max_tokens"] >= 1024
        assert "ops lead" in body["system"] and "JSON schema" in body["system"]
        assert "tools" not in body
        (user,) = body["messages"]
        words, image = user["content"]
        assert words == {"type": "text", "text": "Task (task-1):\nSet up the app."}
        assert image == {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            },
        }
    assert '"decision"' in triage_body["system"] and '"depends_on"' in plan_body["system"]
    assert [r.api_key for r in claude.requests] == ["sk-own", "sk-own"]
    (step_body,) = actor_api.bodies(CHAT)
    assert step_body["model"] == "actor-model" and step_body["tools"]
    assert brain.usage == seen
    assert [(u.model, u.input_tokens) for u in seen] == [
        ("claude-planner", 50),  # cache reads count as input
        ("claude-planner", 50),
        ("actor-model", 70),
    ]


async def test_a_bad_reply_is_fed_back_then_accepted(
    claude: FakeAnthropicServer, actor_api: FakeOpenAIServer
) -> None:
    claude.add(
        text_message("I would rather do it myself."),
        text_message('{"decision": "do"}'),
        text_message('{"decision": "do", "reason": "one app"}'),
    )
    brain = planned(claude, actor_api)
    try:
        assert (await brain.triage(context(), OBS)).reason == "one app"
    finally:
        await brain.close()
    first, second, third = claude.bodies()
    assert second["messages"][1:] == [
        {"role": "assistant", "content": "I would rather do it myself."},
        {"role": "user", "content": second["messages"][2]["content"]},
    ]
    assert "not valid JSON" in second["messages"][2]["content"]
    assert third["messages"][:3] == second["messages"]
    assert "reason: Field required" in third["messages"][-1]["content"]


async def test_bad_replies_exhaust_the_retries(
    claude: FakeAnthropicServer, actor_api: FakeOpenAIServer
) -> None:
    claude.add(text_message("no"), text_message("still no"))
    brain = planned(claude, actor_api, retries=1)
    try:
        with pytest.raises(BrainError, match=r"no usable plan decision after 2 attempt\(s\)"):
            await brain.plan(context(), OBS)
    finally:
        await brain.close()


async def test_a_refusal_is_final(claude: FakeAnthropicServer, actor_api: FakeOpenAIServer) -> None:
    claude.add(refusal("I can't help with that."))
    brain = planned(claude, actor_api)
    try:
        with pytest.raises(BrainError, match="refused the triage"):
            await brain.triage(context(), OBS)
    finally:
        await brain.close()
    assert len(claude.requests) == 1


async def test_an_overloaded_planner_is_retried_by_the_client(
    claude: FakeAnthropicServer, actor_api: FakeOpenAIServer, operator_env: Callable[..., None]
) -> None:
    operator_env(ORCHESTRATOR_MODEL_API_RETRIES="3", ORCHESTRATOR_MODEL_API_MAX_WAIT_S="0.05")
    claude.add(overloaded(retry_after=0), text_message('{"decision": "do", "reason": "ok"}'))
    brain = planned(claude, actor_api)
    try:
        assert (await brain.triage(context(), OBS)).decision == "do"
    finally:
        await brain.close()
    assert len(claude.requests) == 2


def test_the_anthropic_planners_endpoint_must_be_allowed(
    operator_env: Callable[..., None],
) -> None:
    operator_env(ORCHESTRATOR_MODEL_BASE_URLS=None, ANTHROPIC_BASE_URL=None, ANTHROPIC_API_KEY=None)
    actor = {"kind": "openai", "model": "a", "base_url": "https://api.openai.com/v1"}
    for url in ("http://169.254.169.254/latest", "https://api.anthropic.com.evil.example"):
        config = BrainConfig.model_validate(
            {**actor, "planner": {"api": "anthropic", "model": "p", "base_url": url}}
        )
        with pytest.raises(ConfigError) as err:
            make_brain(config)
        assert str(err.value).startswith(f"brain.planner.base_url {url!r} is not one of the")
    # Anthropic's own API is allowed, with a key
    config = BrainConfig.model_validate(
        {**actor, "planner": {"api": "anthropic", "model": "p", "api_key": "k"}}
    )
    assert isinstance(make_brain(config), PlannedBrain)


async def test_the_environments_anthropic_key_goes_only_to_its_endpoint(
    operator_env: Callable[..., None],
) -> None:
    async with FakeAnthropicServer() as env_api, FakeAnthropicServer() as other:
        operator_env(ANTHROPIC_BASE_URL=env_api.base_url, ANTHROPIC_API_KEY="sk-ant-operator-01")
        reply = text_message('{"decision": "do", "reason": "x"}')
        env_api.add(reply, reply)
        other.add(reply, reply)
        configs = [
            PlannerConfig(api="anthropic", model="p"),
            PlannerConfig(api="anthropic", model="p", base_url=env_api.base_url + "/"),
            PlannerConfig(api="anthropic", model="p", base_url=other.base_url),
            PlannerConfig(
                api="anthropic", model="p", base_url=other.base_url, api_key=SecretStr("sk-mine")
            ),
        ]
        for config in configs:
            planner = AnthropicPlanner(config)
            try:
                await planner.triage(context(), OBS)
            finally:
                await planner.close()
        keys = [r.api_key for r in env_api.requests + other.requests]
    assert keys[:2] == ["sk-ant-operator-01", "sk-ant-operator-01"]
    assert "sk-ant-operator-01" not in keys[2:] and keys[3] == "sk-mine"


def test_docstring_examples_of_the_planner_run() -> None:
    import doctest

    from orchestrator.brains import _planner

    failed, tried = doctest.testmod(_planner)
    assert failed == 0 and tried > 0


async def test_a_reply_cut_at_max_tokens_is_told_so(
    claude: FakeAnthropicServer, actor_api: FakeOpenAIServer
) -> None:
    claude.add(
        message(text('{"decision": "dele'), stop_reason="max_tokens"),
        text_message('{"decision": "do", "reason": "ok"}'),
    )
    brain = planned(claude, actor_api)
    try:
        await brain.triage(context(), OBS)
    finally:
        await brain.close()
    assert "cut off at the token limit" in claude.bodies()[1]["messages"][-1]["content"]
