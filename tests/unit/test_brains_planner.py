"""A planner model for triage and planning, an acting model for the steps: two real HTTP
servers (the fake OpenAI API) spoken to by the real ``openai`` client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator.actions import ActionResult, Wait
from orchestrator.brains import Brain, BrainContext, Observation, StepRecord, make_brain
from orchestrator.brains._planner import OpenAIPlanner, PlannedBrain, with_planner
from orchestrator.domain import Act, BrainConfig, Done, Plan, PlannerConfig, TokenUsage, Triage
from orchestrator.errors import BrainError, ConfigError
from orchestrator.records import SQLiteStore
from tests.fakes.openai_server import (
    CHAT,
    FakeOpenAIServer,
    chat_json,
    chat_text,
    chat_tool_calls,
    http_error,
    tool_call,
)

OBS = Observation(screenshot=b"\x89PNG-planner", media_type="image/png", width=1280, height=800)
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
    "check": "the app answers on port 8000",
}


def context() -> BrainContext:
    return BrainContext(task_id="task-1", description="Set up the app.", role="ops lead")


@pytest.fixture
async def planner_api() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
async def actor_api() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def planned(
    planner_api: FakeOpenAIServer,
    actor_api: FakeOpenAIServer,
    on_usage: Callable[[TokenUsage], None] | None = None,
    **planner: Any,
) -> Brain:
    """A chat-tools actor at ``actor_api`` with a planner at ``planner_api``, by the factory."""
    planner.setdefault("base_url", planner_api.base_url)
    config = BrainConfig(
        kind="openai",
        model="actor-model",
        base_url=actor_api.base_url,
        max_retries=1,
        planner=PlannerConfig(model="planner-model", **planner),
    )
    return make_brain(config, on_usage=on_usage)


async def test_triage_and_plan_go_to_the_planner_and_steps_to_the_actor(
    planner_api: FakeOpenAIServer, actor_api: FakeOpenAIServer
) -> None:
    planner_api.add(
        chat_json(
            {"decision": "delegate", "reason": "two parts"}, input_tokens=11, output_tokens=1
        ),
        chat_json(PLAN, input_tokens=12, output_tokens=2),
    )
    actor_api.add(
        chat_tool_calls(tool_call("wait", {}), input_tokens=21, output_tokens=3),
        chat_tool_calls(
            tool_call("done", {"result": "verified"}), input_tokens=22, output_tokens=4
        ),
    )
    seen: list[TokenUsage] = []
    brain = planned(planner_api, actor_api, on_usage=seen.append)
    assert isinstance(brain, PlannedBrain)
    ctx = context()
    try:
        assert await brain.triage(ctx, OBS) == Triage(decision="delegate", reason="two parts")
        plan = await brain.plan(ctx, OBS)
        assert isinstance(plan, Plan) and [st.id for st in plan.subtasks] == ["db", "app"]
        assert brain.wants_check() is False
        step = await brain.step(ctx, OBS)
        assert isinstance(step, Act) and step.actions == [Wait()]
        ctx.history.append(StepRecord(step, [ActionResult(ok=True)]))
        verdict = await brain.check(ctx, OBS, {"db": "postgres 16", "app": "deployed"})
        assert verdict == Done(result="verified")
    finally:
        await brain.close()

    triage_body, plan_body = planner_api.bodies(CHAT)
    for body in (triage_body, plan_body):
        assert body["model"] == "planner-model"
        assert body["response_format"]["type"] == "json_schema"
    assert triage_body["response_format"]["json_schema"]["name"] == "triage"
    assert plan_body["response_format"]["json_schema"]["name"] == "plan"
    step_body, check_body = actor_api.bodies(CHAT)
    for body in (step_body, check_body):
        assert body["model"] == "actor-model" and body["tools"]
        assert "response_format" not in body
    # the actor did not make the plan: it is told what the planner wanted checked
    check_text = str(check_body["messages"])
    assert "postgres 16" in check_text and "the app answers on port 8000" in check_text
    # both models' calls, in the order they were made, in usage and through on_usage
    expected = [
        TokenUsage(input_tokens=11, output_tokens=1, model="planner-model"),
        TokenUsage(input_tokens=12, output_tokens=2, model="planner-model"),
        TokenUsage(input_tokens=21, output_tokens=3, model="actor-model"),
        TokenUsage(input_tokens=22, output_tokens=4, model="actor-model"),
    ]
    assert brain.usage == seen == expected


async def test_the_usage_the_runner_reads_after_each_call(
    planner_api: FakeOpenAIServer, actor_api: FakeOpenAIServer
) -> None:
    """The runner reads ``brain.usage[n:]`` after each call: each call's own usage is there."""
    planner_api.add(chat_json({"decision": "do", "reason": "small"}, input_tokens=5))
    actor_api.add(chat_tool_calls(tool_call("wait", {}), input_tokens=7))
    brain = planned(planner_api, actor_api)
    try:
        n = len(brain.usage)
        await brain.triage(context(), OBS)
        assert [u.input_tokens for u in brain.usage[n:]] == [5]
        n = len(brain.usage)
        await brain.step(context(), OBS)
        assert [u.input_tokens for u in brain.usage[n:]] == [7]
    finally:
        await brain.close()


async def test_prose_fenced_and_invalid_replies_of_the_planner(
    planner_api: FakeOpenAIServer, actor_api: FakeOpenAIServer
) -> None:
    planner_api.add(
        chat_text('I think so.\n{"decision": "do", "reason": "one app"}\nThanks.'),
        chat_text('```json\n{"decision": "delegate", "reason": "two"}\n```'),
        chat_text('{"subtasks": [{"id": "a b", "role": "r", "description": "d"'),
        chat_text('Fixed: {"subtasks": [{"id": "a", "role": "r", "description": "d"}]}'),
        chat_text(
            '{"subtasks": [{"id": "a", "role": "r", "description": "d", "depends_on": []}],'
            ' "check": null}'
        ),
    )
    brain = planned(planner_api, actor_api)
    try:
        assert (await brain.triage(context(), OBS)).decision == "do"
        assert (await brain.triage(context(), OBS)).decision == "delegate"
        with pytest.raises(BrainError, match=r"no usable plan decision after 2 attempt\(s\)"):
            await brain.plan(context(), OBS)  # max_retries=1: the actor's config's
        plan = await brain.plan(context(), OBS)
    finally:
        await brain.close()
    assert [st.id for st in plan.subtasks] == ["a"]
    bodies = planner_api.bodies(CHAT)
    assert "not valid JSON" in bodies[3]["messages"][-1]["content"]
    assert bodies[3]["messages"][-2] == {
        "role": "assistant",
        "content": '{"subtasks": [{"id": "a b", "role": "r", "description": "d"',
    }
    assert not actor_api.requests


async def test_a_planner_rejecting_response_format_falls_back_without_it(
    planner_api: FakeOpenAIServer, actor_api: FakeOpenAIServer
) -> None:
    """Anthropic's OpenAI-compatible endpoint and some gateways refuse json_schema."""
    planner_api.add(
        http_error(CHAT, 400, "response_format: json_schema is not supported"),
        chat_text('Here you go: {"decision": "delegate", "reason": "two"}'),
        chat_json(PLAN),
    )
    actor_api.add(chat_tool_calls(tool_call("wait", {})))
    brain = planned(planner_api, actor_api)
    try:
        await brain.triage(context(), OBS)
        await brain.plan(context(), OBS)
        await brain.step(context(), OBS)
    finally:
        await brain.close()
    rejected, *rest = planner_api.bodies(CHAT)
    assert "response_format" in rejected
    assert all("response_format" not in b and "JSON schema" in str(b["messages"]) for b in rest)
    assert len(rest) == 2


def test_the_planners_endpoint_must_be_allowed(operator_env: Callable[..., None]) -> None:
    operator_env(ORCHESTRATOR_MODEL_BASE_URLS=None, OPENAI_BASE_URL=None, OPENAI_API_KEY=None)
    actor = {"kind": "openai", "model": "a", "base_url": "https://api.openai.com/v1"}
    for api, url in [
        ("openai", "https://attacker.example/v1"),
        ("openai", "http://127.0.0.1:9999/v1"),
    ]:
        config = BrainConfig.model_validate(
            {**actor, "planner": {"api": api, "model": "p", "base_url": url, "api_key": "k"}}
        )
        with pytest.raises(ConfigError) as err:
            make_brain(config)
        assert str(err.value).startswith(f"brain.planner.base_url {url!r} is not one of the")
    # the vendor's own endpoint is allowed
    config = BrainConfig.model_validate(
        {**actor, "planner": {"model": "p", "base_url": "https://api.openai.com/v1/"}}
    )
    assert isinstance(make_brain(config), PlannedBrain)


async def test_the_environments_key_goes_only_to_the_environments_endpoint(
    operator_env: Callable[..., None],
    planner_api: FakeOpenAIServer,
    actor_api: FakeOpenAIServer,
) -> None:
    operator_env(OPENAI_BASE_URL=planner_api.base_url, OPENAI_API_KEY="sk-operator-0123456789")
    reply = chat_json({"decision": "do", "reason": "x"})
    planner_api.add(reply, reply)
    actor_api.add(reply, reply)
    configs = [
        PlannerConfig(model="p"),  # the environment's endpoint: the environment's key
        PlannerConfig(model="p", base_url=planner_api.base_url + "/"),  # the same, spelt apart
        PlannerConfig(model="p", base_url=actor_api.base_url),  # another: no key
        PlannerConfig(model="p", base_url=actor_api.base_url, api_key=SecretStr("sk-own-key")),
    ]
    for config in configs:
        planner = OpenAIPlanner(config)
        try:
            await planner.triage(context(), OBS)
        finally:
            await planner.close()
    keys = [r.headers["authorization"] for r in planner_api.requests + actor_api.requests]
    assert keys == [
        "Bearer sk-operator-0123456789",
        "Bearer sk-operator-0123456789",
        "Bearer unused",
        "Bearer sk-own-key",
    ]


class _Actor(Brain):
    """An acting brain in process: what a planned brain hands on, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.closed = False

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        raise AssertionError("triage goes to the planner")

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        raise AssertionError("plan goes to the planner")

    async def step(self, ctx: BrainContext, obs: Observation) -> Act:
        self.calls.append("step")
        return Act(actions=[Wait()])

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Done:
        self.calls.append(f"check {ctx.description!r}")
        return Done(result="ok")

    def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
        return (screen[0] // 2, screen[1] // 2)

    def wants_check(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True


async def test_the_acting_brain_keeps_its_image_size_check_and_is_closed(
    planner_api: FakeOpenAIServer,
) -> None:
    actor = _Actor()
    brain = with_planner(actor, PlannerConfig(model="p", base_url=planner_api.base_url))
    assert isinstance(brain, PlannedBrain)
    assert brain.image_size((1920, 1080)) == (960, 540)
    assert brain.wants_check() is True
    assert isinstance(await brain.step(context(), OBS), Act)
    assert await brain.check(context(), OBS, {}) == Done(result="ok")
    assert actor.calls == ["step", "check 'Set up the app.'"]  # no plan: nothing added
    planner = brain.planner
    assert isinstance(planner, OpenAIPlanner)
    await brain.close()
    assert actor.closed
    assert planner._client._client.is_closed()


def test_docstring_examples_of_structured_output_run() -> None:
    import doctest

    from orchestrator.brains import _structured

    failed, tried = doctest.testmod(_structured)
    assert failed == 0 and tried > 0


async def test_the_runner_records_each_models_usage_with_its_call(
    store: SQLiteStore, planner_api: FakeOpenAIServer, actor_api: FakeOpenAIServer
) -> None:
    """A task driven by a planned brain on the stand-in desktop: the runner's model events
    carry the planner's tokens for the triage and the actor's for each step."""
    from actors._runner import TaskRunner
    from orchestrator.domain import EventKind, TaskSpec, TaskState
    from tests.fakes.task_desktop import LocalHost, StandInDesktop, StoreRecords, new_task

    planner_api.add(chat_json({"decision": "do", "reason": "small"}, input_tokens=31))
    actor_api.add(
        chat_tool_calls(tool_call("wait", {}), input_tokens=41),
        chat_tool_calls(tool_call("done", {"result": "waited"}), input_tokens=42),
    )
    records = StoreRecords(store)
    desk = StandInDesktop()
    brain = planned(planner_api, actor_api)
    try:
        task = await new_task(records, TaskSpec(description="wait a moment"))
        runner = TaskRunner(task, "tester", "t/u/boss", desk, brain, LocalHost(records), records)
        ended = await runner.run()
    finally:
        await brain.close()
        desk.close()
    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "waited")
    events = records.store.events(task_id=ended.id, limit=1000)
    model = [e.data for e in events if e.kind == EventKind.MODEL]
    assert [(m["call"], [(u["model"], u["input_tokens"]) for u in m["usage"]]) for m in model] == [
        ("triage", [("planner-model", 31)]),
        ("step", [("actor-model", 41)]),
        ("step", [("actor-model", 42)]),
    ]
