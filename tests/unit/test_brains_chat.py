"""Acting through Chat Completions: function tools from the action models, history, retries."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.actions import ActionResult, CommandResult
from orchestrator.brains import BrainContext, Observation, OpenAIBrain, StepRecord
from orchestrator.domain import Act, BrainConfig, Done, Fail, TokenUsage
from orchestrator.errors import BrainError
from tests.fakes.openai_server import (
    CHAT,
    FakeOpenAIServer,
    chat_json,
    chat_refusal,
    chat_text,
    chat_tool_calls,
    tool_call,
)


def shot(n: int) -> Observation:
    return Observation(
        screenshot=f"png-{n}".encode(), media_type="image/png", width=800, height=600
    )


def url(n: int) -> str:
    return "data:image/png;base64," + base64.b64encode(f"png-{n}".encode()).decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def make_brain(fake: FakeOpenAIServer, *, retries: int = 2, screenshots: int = 3) -> OpenAIBrain:
    config = BrainConfig(kind="openai", model="test-model", max_retries=retries)
    return OpenAIBrain(config, client=fake.client(), max_screenshots=screenshots)


def context() -> BrainContext:
    return BrainContext(
        task_id="task-7",
        description="Install nginx and open its welcome page.",
        role="web admin",
        agent_path="acme/alice/web",
    )


def images(body: dict[str, Any]) -> list[str]:
    found = []
    for message in body["messages"]:
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if part.get("type") == "image_url":
                    found.append(part["image_url"]["url"])
    return found


def ok(stdout: str = "") -> ActionResult:
    if not stdout:
        return ActionResult(ok=True)
    return ActionResult(ok=True, command=CommandResult(exit_code=0, stdout=stdout, stderr=""))


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


async def test_request_has_tools_from_the_action_models_and_the_screenshot(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(chat_tool_calls(tool_call("wait", {})))
    await make_brain(fake).step(context(), shot(1))

    (body,) = fake.bodies(CHAT)
    tools = {t["function"]["name"]: t for t in body["tools"]}
    assert list(tools) == [
        "click", "double_click", "triple_click", "mouse_down", "mouse_up", "move", "drag",
        "scroll", "type", "keypress", "hold_key", "wait", "screenshot", "cursor_position",
        "shell", "done", "fail", "ask_user",
    ]  # fmt: skip
    assert all(t["type"] == "function" for t in tools.values())
    click = tools["click"]["function"]
    expected = _strip_titles(a.Click.model_json_schema())
    expected.pop("description")
    del expected["properties"]["type"]
    assert click["parameters"] == expected
    assert click["description"] == a.Click.__doc__
    assert tools["shell"]["function"]["parameters"]["properties"]["user"]["enum"] == [
        "agent",
        "root",
    ]
    drag = tools["drag"]["function"]["parameters"]
    assert "$ref" not in json.dumps(drag) and drag["properties"]["path"]["items"]["required"] == [
        "x",
        "y",
    ]
    assert tools["done"]["function"]["parameters"]["required"] == ["result"]
    assert tools["fail"]["function"]["parameters"]["required"] == ["reason"]

    system, user = body["messages"]
    assert system["role"] == "system" and "web admin" in system["content"]
    assert "800x600" in system["content"]
    assert user["role"] == "user"
    assert "Install nginx" in user["content"][0]["text"]
    assert user["content"][-1] == {"type": "image_url", "image_url": {"url": url(1)}}


async def test_tool_calls_become_typed_actions(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_tool_calls(
            tool_call("shell", {"command": "apt-get install -y nginx", "user": "root"}),
            tool_call("click", {"x": 10, "y": 20, "button": "right"}),
            tool_call("keypress", {"keys": ["ctrl", "l"]}),
            tool_call("drag", {"path": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}),
            content="Installing, then opening the menu.",
        )
    )
    decision = await make_brain(fake).step(context(), shot(1))

    assert decision == Act(
        actions=[
            a.Shell(command="apt-get install -y nginx", user="root"),
            a.Click(x=10, y=20, button="right", keys=[]),
            a.KeyPress(keys=["ctrl", "l"]),
            a.Drag(path=[a.Point(x=1, y=2), a.Point(x=3, y=4)], keys=[]),
        ],
        thought="Installing, then opening the menu.",
    )
    assert isinstance(decision, Act)


async def test_history_is_sent_as_tool_calls_answered_by_results(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_tool_calls(
            tool_call("shell", {"command": "nginx -v"}, id="call_A"),
            tool_call("click", {"x": 5, "y": 6}, id="call_B"),
            content="check nginx",
        ),
        chat_tool_calls(tool_call("type", {"text": "localhost\n"}, id="call_C")),
        chat_tool_calls(tool_call("done", {"result": "nginx 1.22 serves its page"}, id="call_D")),
    )
    brain = make_brain(fake)
    ctx = context()

    first = await brain.step(ctx, shot(1))
    results = [ok("nginx version: nginx/1.22.1"), ok()]
    ctx.history.append(StepRecord(first, results))
    second = await brain.step(ctx, shot(2))
    ctx.history.append(StepRecord(second, [ActionResult.failure("no window has focus")]))
    final = await brain.step(ctx, shot(3))

    assert final == Done(result="nginx 1.22 serves its page")
    body = fake.bodies(CHAT)[2]
    roles = [m["role"] for m in body["messages"]]
    assert roles == [
        "system", "user",
        "assistant", "tool", "tool", "user",
        "assistant", "tool", "user",
    ]  # fmt: skip
    m = body["messages"]
    assert m[2] == {
        "role": "assistant",
        "content": "check nginx",
        "tool_calls": [
            {
                "id": "call_A",
                "type": "function",
                "function": {"name": "shell", "arguments": json.dumps({"command": "nginx -v"})},
            },
            {
                "id": "call_B",
                "type": "function",
                "function": {"name": "click", "arguments": json.dumps({"x": 5, "y": 6})},
            },
        ],
    }
    assert m[3]["tool_call_id"] == "call_A"
    assert json.loads(m[3]["content"]) == results[0].model_dump(mode="json", exclude_none=True)
    assert m[4] == {
        "role": "tool",
        "tool_call_id": "call_B",
        "content": '{"ok": true, "duration_ms": 0.0}',
    }
    assert m[6]["tool_calls"][0]["id"] == "call_C"
    assert m[7]["tool_call_id"] == "call_C"
    assert json.loads(m[7]["content"]) == {
        "ok": False,
        "error": "no window has focus",
        "duration_ms": 0.0,
    }
    # each screen in order: first with the task, then after each step; the last is current
    assert images(body) == [url(1), url(2), url(3)]
    assert m[-1]["content"][-1]["image_url"]["url"] == url(3)
    # the first request's prefix is kept: the conversation only grows
    assert fake.bodies(CHAT)[1]["messages"] == body["messages"][:6]


async def test_only_the_latest_screenshots_are_sent(fake: FakeOpenAIServer) -> None:
    for i in range(4):
        fake.add(chat_tool_calls(tool_call("wait", {"duration_s": 0.1}, id=f"w{i}")))
    brain = make_brain(fake, screenshots=2)
    ctx = context()
    for i in range(4):
        decision = await brain.step(ctx, shot(i))
        ctx.history.append(StepRecord(decision, [ok()]))

    last = fake.bodies(CHAT)[-1]
    assert images(last) == [url(2), url(3)]
    omitted = [
        p["text"]
        for msg in last["messages"]
        if isinstance(msg.get("content"), list)
        for p in msg["content"]
        if "omitted" in p.get("text", "")
    ]
    assert len(omitted) == 2


async def test_calls_after_a_failed_action_are_answered_as_not_carried_out(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        chat_tool_calls(
            tool_call("click", {"x": 700, "y": 1}, id="c1"),
            tool_call("type", {"text": "hi"}, id="c2"),
        ),
        chat_tool_calls(tool_call("fail", {"reason": "the button is gone"})),
    )
    brain = make_brain(fake)
    ctx = context()
    decision = await brain.step(ctx, shot(1))
    ctx.history.append(StepRecord(decision, [ActionResult.failure("the click hit nothing")]))

    final = await brain.step(ctx, shot(2))

    assert final == Fail(reason="the button is gone")
    tools = [m for m in fake.bodies(CHAT)[1]["messages"] if m["role"] == "tool"]
    assert "the click hit nothing" in tools[0]["content"]
    assert tools[1] == {
        "role": "tool",
        "tool_call_id": "c2",
        "content": "not carried out: an earlier action of this step failed",
    }


async def test_invalid_arguments_are_retried_with_the_validation_error(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        chat_tool_calls(
            tool_call("click", {"x": 10}, id="bad"),
            tool_call("wait", {}, id="fine"),
        ),
        chat_tool_calls(tool_call("click", {"x": 10, "y": 12}, id="good")),
    )
    decision = await make_brain(fake).step(context(), shot(1))

    assert decision.actions == [a.Click(x=10, y=12, keys=[])]
    first, retry = fake.bodies(CHAT)
    added = retry["messages"][len(first["messages"]) :]
    assert [m["role"] for m in added] == ["assistant", "tool", "tool"]
    assert [c["id"] for c in added[0]["tool_calls"]] == ["bad", "fine"]
    assert added[1]["tool_call_id"] == "bad"
    assert "invalid arguments for click: y: Field required" in added[1]["content"]
    assert added[2]["tool_call_id"] == "fine" and "not carried out" in added[2]["content"]


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (tool_call("teleport", {"x": 1}), "there is no tool named 'teleport'"),
        (tool_call("type", '{"text": "unterminated'), "not valid JSON"),
        (tool_call("scroll", {"x": 1, "y": 2, "scroll_y": 1000}), "scroll_y"),
        (tool_call("done", {}), "done takes exactly one argument, 'result'"),
    ],
)
async def test_unusable_calls_exhaust_retries_then_brain_error(
    fake: FakeOpenAIServer, call: dict[str, Any], problem: str
) -> None:
    fake.add(chat_tool_calls(call), chat_tool_calls(call))
    with pytest.raises(BrainError, match="no usable step decision after 2 attempt") as info:
        await make_brain(fake, retries=1).step(context(), shot(1))
    assert problem in str(info.value)


async def test_text_without_a_tool_call_is_nudged_then_fails(fake: FakeOpenAIServer) -> None:
    fake.add(chat_text("I think it is done."), chat_text("Really, it is done."))
    with pytest.raises(BrainError, match="called no tool"):
        await make_brain(fake, retries=1).step(context(), shot(1))
    retry = fake.bodies(CHAT)[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think it is done."}
    assert retry[-1]["role"] == "user" and "tool call" in retry[-1]["content"]


async def test_text_then_a_tool_call_after_the_nudge_works(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_text("Done, I believe."),
        chat_tool_calls(tool_call("done", {"result": "page shows 'Welcome to nginx!'"})),
    )
    decision = await make_brain(fake).step(context(), shot(1))
    assert decision == Done(result="page shows 'Welcome to nginx!'")


async def test_done_sent_with_actions_is_ignored_and_answered(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_tool_calls(
            tool_call("type", {"text": "x"}, id="t1"),
            tool_call("done", {"result": "typed"}, id="d1"),
        ),
        chat_tool_calls(tool_call("done", {"result": "typed x"}, id="d2")),
    )
    brain = make_brain(fake)
    ctx = context()
    decision = await brain.step(ctx, shot(1))
    assert decision == Act(actions=[a.TypeText(text="x")])
    ctx.history.append(StepRecord(decision, [ok()]))
    assert await brain.step(ctx, shot(2)) == Done(result="typed x")
    tools = [m for m in fake.bodies(CHAT)[1]["messages"] if m["role"] == "tool"]
    assert tools[1]["tool_call_id"] == "d1" and tools[1]["content"].startswith("ignored")


async def test_refusal_while_acting_raises(fake: FakeOpenAIServer) -> None:
    fake.add(chat_refusal("I won't do that."))
    with pytest.raises(BrainError, match="refused to act: I won't do that."):
        await make_brain(fake).step(context(), shot(1))


async def test_check_verifies_subtask_results_with_the_plans_check(
    fake: FakeOpenAIServer,
) -> None:
    plan = {
        "subtasks": [{"id": "web", "role": "web admin", "description": "d", "depends_on": []}],
        "check": "curl localhost shows the welcome page",
    }
    fake.add(
        chat_json(plan),
        chat_tool_calls(tool_call("shell", {"command": "curl -s localhost"})),
        chat_tool_calls(tool_call("done", {"result": "verified"})),
    )
    brain = make_brain(fake)
    ctx = context()
    await brain.plan(ctx, shot(0))
    results = {"web": "nginx installed, port 80"}

    decision = await brain.check(ctx, shot(1), results)
    ctx.history.append(StepRecord(decision, [ok("<h1>Welcome to nginx!</h1>")]))
    final = await brain.check(ctx, shot(2), results)

    assert decision.actions == [a.Shell(command="curl -s localhost")]
    assert final == Done(result="verified")
    text = fake.bodies(CHAT)[1]["messages"][1]["content"][0]["text"]
    assert "web: nginx installed, port 80" in text
    assert "curl localhost shows the welcome page" in text


async def test_a_history_this_brain_did_not_write_is_rendered_consistently(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(chat_tool_calls(tool_call("done", {"result": "ok"})))
    ctx = context()
    earlier = Act(actions=[a.Wait(duration_s=2.0), a.Move(x=1, y=2, keys=[])], thought="wait")
    ctx.history.append(StepRecord(earlier, [ok()]))

    await make_brain(fake).step(ctx, shot(5))

    m = fake.bodies(CHAT)[0]["messages"]
    ids = [c["id"] for c in m[2]["tool_calls"]]
    assert [t["tool_call_id"] for t in m[3:5]] == ids and len(set(ids)) == 2
    assert m[2]["tool_calls"][0]["function"] == {
        "name": "wait",
        "arguments": json.dumps({"duration_s": 2.0}),
    }
    assert m[4]["content"] == "not carried out: an earlier action of this step failed"
    assert images(fake.bodies(CHAT)[0]) == [url(5)]


async def test_usage_of_acting_calls(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_text("hmm", input_tokens=11, output_tokens=2),
        chat_tool_calls(tool_call("wait", {}), input_tokens=30, output_tokens=9),
    )
    brain = make_brain(fake)
    await brain.step(context(), shot(1))
    assert brain.usage == [
        TokenUsage(input_tokens=11, output_tokens=2, model="test-model"),
        TokenUsage(input_tokens=30, output_tokens=9, model="test-model"),
    ]
