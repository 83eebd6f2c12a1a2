"""Agents driven by a model over the OpenAI API, on the real thing: real Ray actors and
desktops; only the model is a fake (a local OpenAI-compatible HTTP server serving scripted
replies and recording every request, spoken to by the real ``openai`` client inside the
agent's actor).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from orchestrator.brains._tools import chat_tools
from orchestrator.domain import AgentStatus, BrainConfig, EventKind, TaskSpec, TaskState
from tests.fakes.openai_server import (
    CHAT,
    FakeOpenAIServer,
    chat_json,
    chat_text,
    chat_tool_calls,
    raw_reply,
    tool_call,
)

pytestmark = pytest.mark.timeout(180)

MODEL = "fake-computer-user"
NOT_CACHED = {"cached_input_tokens": 0}
SIZE = (1024, 768)  # the kit's desktops

OPEN_XTERM = (
    "xterm -geometry 80x10+10+10 >/dev/null 2>&1 & "
    "xdotool search --sync --onlyvisible --class xterm windowfocus --sync >/dev/null"
)


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        await server.close()


def brain(server: FakeOpenAIServer, max_retries: int = 2) -> BrainConfig:
    return BrainConfig(
        kind="openai",
        model=MODEL,
        base_url=server.base_url,
        api_key="test",
        mode="chat",
        max_retries=max_retries,
    )


def images(body: dict[str, Any]) -> list[Image.Image]:
    """The images a chat request carried, decoded from their data URLs."""
    found: list[Image.Image] = []
    for message in body["messages"]:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                head, _, data = url.partition(",")
                assert head in ("data:image/jpeg;base64", "data:image/png;base64"), head
                img = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
                img.load()
                assert img.format == ("JPEG" if "jpeg" in head else "PNG")
                found.append(img)
    return found


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


async def wait_file(agents, agent_path: str, path_in_desktop: str) -> str:
    actor = agents.actor(agent_path)

    async def probe() -> str:
        res = await actor.shell.remote(f"cat {path_in_desktop}")
        return res.stdout.strip() if res.exit_code == 0 else ""

    text: str = await agents.until(probe, timeout_s=10, what=f"{path_in_desktop} on {agent_path}")
    return text


# ---------------------------------------------------------------------- doing, in one step


async def test_model_sees_the_desktop_and_gets_the_tools(agents, model) -> None:
    boss = await agents.create("boss", role="sysadmin", brain=brain(model))
    model.add(
        chat_json({"decision": "do", "reason": "one desktop is enough"}, input_tokens=1111,
                  output_tokens=11),
        chat_tool_calls(tool_call("done", {"result": "nothing to do"}), input_tokens=2222,
                        output_tokens=22),
    )  # fmt: skip
    done = await agents.run(boss.id, TaskSpec(description="look at the screen"))

    assert done.state == TaskState.SUCCEEDED, done.error
    assert done.result == "nothing to do"
    model.verify()
    triage, step = model.bodies(CHAT)
    assert triage["model"] == step["model"] == MODEL
    # every request shows the desktop as a real image of its size
    for body in (triage, step):
        (img,) = images(body)
        assert img.size == SIZE
        assert f"{SIZE[0]}x{SIZE[1]}" in text_of(body["messages"][0])
        assert "look at the screen" in text_of(body["messages"][1])
        assert boss.path in text_of(body["messages"][0])
    # triage asks for JSON with a schema; the step offers the action tools
    assert triage["response_format"]["type"] == "json_schema"
    assert set(triage["response_format"]["json_schema"]["schema"]["properties"]) == {
        "decision",
        "reason",
    }
    assert "tools" not in triage
    assert step["tools"] == json.loads(json.dumps(chat_tools()))
    names = [t["function"]["name"] for t in step["tools"]]
    assert {"click", "type", "keypress", "shell", "done", "fail"} <= set(names)
    # the key reached the server, and the records do not hold it
    assert {r.headers["authorization"] for r in model.requests} == {"Bearer test"}
    stored = await agents.runtime.agent(boss.id)
    assert stored.spec.brain.api_key is None

    # token use appears in the MODEL events
    events = await agents.events(task_id=done.id)
    usage = [(e.data["call"], e.data["usage"]) for e in events if e.kind == EventKind.MODEL]
    assert usage == [
        ("triage", [{"input_tokens": 1111, "output_tokens": 11, "model": MODEL, **NOT_CACHED}]),
        ("step", [{"input_tokens": 2222, "output_tokens": 22, "model": MODEL, **NOT_CACHED}]),
    ]
    triage_event = next(e for e in events if e.kind == EventKind.MODEL)
    assert triage_event.data["decision"] == "do" and triage_event.blobs


# ---------------------------------------------------------------------- doing, step by step


async def test_model_actions_run_on_the_desktop_with_history(agents, model) -> None:
    boss = await agents.create("boss", role="sysadmin", brain=brain(model))
    shell = tool_call(
        "shell", {"command": f"echo from-model > ~/model.txt && {OPEN_XTERM}"}, id="call_sh"
    )
    typing = tool_call("type", {"text": "echo typed-by-model > ~/typed.txt"}, id="call_ty")
    enter = tool_call("keypress", {"keys": ["Return"]}, id="call_kp")
    model.add(
        chat_json({"decision": "do", "reason": "simple"}),
        chat_tool_calls(shell, content="write the file, open a terminal"),
        chat_tool_calls(typing, enter),
        chat_tool_calls(tool_call("done", {"result": "wrote model.txt and typed.txt"})),
    )
    done = await agents.run(boss.id, TaskSpec(description="write two files"), 60)

    assert done.state == TaskState.SUCCEEDED, done.error
    assert done.result == "wrote model.txt and typed.txt"
    model.verify()
    # the files really are on the agent's desktop
    assert await wait_file(agents, boss.path, "~/model.txt") == "from-model"
    assert await wait_file(agents, boss.path, "~/typed.txt") == "typed-by-model"

    _, step1, step2, step3 = model.bodies(CHAT)
    assert [m["role"] for m in step1["messages"]] == ["system", "user"]
    # step 2: the shell call, answered by its result, then the screen after it
    m = step2["messages"]
    assert [x["role"] for x in m] == ["system", "user", "assistant", "tool", "user"]
    assert m[2]["tool_calls"][0]["id"] == "call_sh"
    assert m[2]["content"] == "write the file, open a terminal"
    assert m[3]["tool_call_id"] == "call_sh"
    answer = json.loads(m[3]["content"])
    assert answer["ok"] is True and answer["command"]["exit_code"] == 0
    assert len(images(step2)) == 2
    # step 3: the two GUI calls answered in order, each by its own result
    m = step3["messages"]
    assert [x["role"] for x in m[-4:]] == ["assistant", "tool", "tool", "user"]
    assert [c["id"] for c in m[-4]["tool_calls"]] == ["call_ty", "call_kp"]
    assert [x["tool_call_id"] for x in m[-3:-1]] == ["call_ty", "call_kp"]
    assert all(json.loads(x["content"])["ok"] for x in m[-3:-1])
    assert all(img.size == SIZE for img in images(step3))
    # the requests grow by the history: each is a prefix of the next (prompt caching)
    assert step2["messages"][:2] == step1["messages"][:2]
    assert step3["messages"][:5] == step2["messages"][:5]

    events = await agents.events(task_id=done.id)
    steps = [e.data["action"]["type"] for e in events if e.kind == EventKind.STEP]
    assert steps == ["shell", "type", "keypress"]
    calls = [e.data for e in events if e.kind == EventKind.MODEL]
    assert [c["call"] for c in calls] == ["triage", "step", "step", "step"]
    assert all(c["usage"] and c["usage"][0]["model"] == MODEL for c in calls)


# ---------------------------------------------------------------------- malformed replies


async def test_malformed_replies_fail_the_task_not_the_agent(agents, model) -> None:
    boss = await agents.create("boss", role="sysadmin", brain=brain(model, max_retries=1))
    model.add(
        chat_text("Sure! I will do it myself."),  # not JSON: retried
        chat_json({"decision": "do", "reason": "simple"}),
        chat_tool_calls(tool_call("click", "{not json", id="call_bad")),  # retried
        chat_tool_calls(tool_call("teleport", {"to": "mars"}, id="call_unknown")),  # gives up
    )
    failed = await agents.run(boss.id, TaskSpec(description="do something"))

    assert failed.state == TaskState.FAILED
    assert failed.error.startswith("brain: no usable step decision after 2 attempt(s)")
    assert "there is no tool named 'teleport'" in failed.error
    model.verify()
    bodies = model.bodies(CHAT)
    assert len(bodies) == 4
    # each retry tells the model what was wrong with its last reply
    assert "not valid JSON" in text_of(bodies[1]["messages"][-1])
    bad_answer = [x for x in bodies[3]["messages"] if x["role"] == "tool"]
    assert [x["tool_call_id"] for x in bad_answer] == ["call_bad"]
    assert "the arguments of click are not valid JSON" in bad_answer[0]["content"]
    events = await agents.events(task_id=failed.id)
    assert [e.data["state"] for e in events if e.kind == EventKind.TASK][-1] == "failed"
    assert not [e for e in events if e.kind == EventKind.STEP]  # nothing was done

    # the agent lives on: idle, and a second task on it works
    assert (await agents.runtime.agent(boss.id)).status == AgentStatus.IDLE
    model.add(
        chat_json({"decision": "do", "reason": "easy"}),
        chat_tool_calls(tool_call("done", {"result": "second task ok"})),
    )
    again = await agents.run(boss.id, TaskSpec(description="do something else"))
    assert again.state == TaskState.SUCCEEDED and again.result == "second task ok"
    model.verify()


async def test_a_reply_that_is_not_json_fails_the_task_with_the_reason(agents, model) -> None:
    """A proxy's HTML page instead of the model's JSON crashed with AttributeError."""
    boss = await agents.create("boss", role="sysadmin", brain=brain(model))
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    model.add(raw_reply(CHAT, page))
    failed = await agents.run(boss.id, TaskSpec(description="do something"))
    assert failed.state == TaskState.FAILED
    assert "sent a reply that is not JSON (text/html)" in failed.error, failed.error
    assert "502 Bad Gateway" in failed.error
    model.verify()
    assert (await agents.runtime.agent(boss.id)).status == AgentStatus.IDLE


# ---------------------------------------------------------------------- delegating


async def test_model_plan_hires_children_and_checks(agents, model) -> None:
    boss = await agents.create("boss", role="project lead", brain=brain(model))
    plan = {
        "subtasks": [
            {"id": "db", "role": "Database Admin", "description": "create the db",
             "depends_on": []},
            {"id": "app", "role": "Web Developer", "description": "deploy the app",
             "depends_on": ["db"]},
        ],
        "check": "the app answers on port 80",
    }  # fmt: skip
    model.add(
        chat_json({"decision": "delegate", "reason": "two kinds of expertise"}),  # boss triage
        chat_json(plan),  # boss plan
        chat_json({"decision": "do", "reason": "mine"}),  # db specialist
        chat_tool_calls(tool_call("done", {"result": "db at postgres://db/app"})),
        chat_json({"decision": "do", "reason": "mine"}),  # app specialist
        chat_tool_calls(tool_call("done", {"result": "app on http://app:80"})),
        chat_tool_calls(tool_call("done", {"result": "verified: all up"})),  # boss check
    )
    done = await agents.run(boss.id, TaskSpec(description="ship the product"), 90)

    assert done.state == TaskState.SUCCEEDED, done.error
    assert done.result == "verified: all up"
    model.verify()

    dba, web = f"{boss.path}/database-admin", f"{boss.path}/web-developer"
    tree = await agents.actor(boss.path).tree.remote()
    assert sorted(c.agent.path for c in tree.children) == [dba, web]
    assert {c.agent.spec.role for c in tree.children} == {"Database Admin", "Web Developer"}
    assert {dba, web} <= agents.named_actors()
    assert agents.container_paths(boss.path) == {boss.path, dba, web}

    subtasks = {t.spec.description.split("\n")[0]: t for t in await agents.subtasks(done.id)}
    assert subtasks["create the db"].result == "db at postgres://db/app"
    assert subtasks["deploy the app"].spec.inputs == {"db": "db at postgres://db/app"}

    bodies = model.bodies(CHAT)
    # the children's brains talked to the same server, as their roles
    assert "Database Admin" in text_of(bodies[2]["messages"][0])
    assert dba in text_of(bodies[2]["messages"][0])
    # the app specialist was told what the db specialist reported
    assert "db at postgres://db/app" in text_of(bodies[4]["messages"][1])
    # the boss's check saw both reports and what to verify, with its own screen
    check = text_of(bodies[6]["messages"][1])
    assert "db at postgres://db/app" in check and "app on http://app:80" in check
    assert "the app answers on port 80" in check
    assert boss.path in text_of(bodies[6]["messages"][0])
    assert [img.size for img in images(bodies[6])] == [SIZE]

    events = await agents.events(task_id=done.id)
    calls = [e.data["call"] for e in events if e.kind == EventKind.MODEL]
    assert calls == ["triage", "plan", "step"]
    planned = next(e.data for e in events if e.data.get("call") == "plan")
    assert [s["id"] for s in planned["subtasks"]] == ["db", "app"]
    assert planned["usage"] and planned["usage"][0]["model"] == MODEL


async def test_tokens_of_unusable_replies_are_recorded(agents, model) -> None:
    boss = await agents.create("boss", brain=brain(model, max_retries=1))
    model.add(
        chat_json({"decision": "do", "reason": "simple"}, input_tokens=10, output_tokens=1),
        chat_text("no tool call", input_tokens=20, output_tokens=2),
        chat_text("still none", input_tokens=40, output_tokens=4),
    )
    failed = await agents.run(boss.id, TaskSpec(description="do something"))
    assert failed.state == TaskState.FAILED and "called no tool" in failed.error
    model.verify()
    events = await agents.events(task_id=failed.id)
    used = [u for e in events if e.kind == EventKind.MODEL for u in e.data["usage"]]
    assert sum(u["input_tokens"] for u in used) == 70, used
