"""A model-driven agent asking a person, and a policy holding its steps for approval, through
real HTTP (issue 12): a Ray Serve deployment on 127.0.0.1 in the session's Ray cluster, real
agents with real desktops, a fake OpenAI server at the model boundary (the real ``openai``
client in the agent's actor speaks to it), a person using the SDK and the raw routes.

- the model calls ``ask_user``: the task waits (``input_required``, the question in
  ``GET /v1/tasks/{id}``), is answered through the SDK, the answer is the call's result in
  the model's next request, and the task completes;
- an OpenAI computer-use agent whose policy asks a person about pending safety checks: the
  step waits (``approval_required``, the checks as the reason); approved, the click runs and
  the model's next request acknowledges the checks;
- an agent whose policy needs approval for shell as root: the step waits
  (``approval_required``, the pending command in ``GET /v1/tasks/{id}``); rejected, it fails
  with the reason, which the model sees, and nothing ran; granted (a second task), the
  command runs as root on the desktop.

Run with ``-o log_cli=true --log-cli-level=INFO`` to see each task's timeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orchestrator.desktop import DesktopSpec
from orchestrator.domain import BrainConfig, EventKind, TaskState
from orchestrator.policy import ApprovalPolicy
from orchestrator.sdk import Agent, ApiError, Client, Task
from tests.fakes.openai_server import (
    CHAT,
    RESPONSES,
    FakeOpenAIServer,
    chat_json,
    chat_tool_calls,
    computer_call_item,
    message_item,
    responses_reply,
    tool_call,
)

from .serve_api import deployed_api

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

log = logging.getLogger(__name__)

TENANT = "t-policy"
MODEL = "fake-policy-model"
MARK = "/etc/policy-mark"
"""A file only root can write: the command held for approval writes it."""


@dataclass
class Server:
    url: str
    key: str
    image: str

    def client(self) -> Client:
        return Client(self.url, self.key, timeout=60)

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


@pytest.fixture(scope="module")
def server(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve on a free loopback port for this module, with one tenant's key."""
    key = secrets.token_urlsafe(24)
    with deployed_api([(TENANT, key)], tmp_path_factory.mktemp("policy")) as url:
        yield Server(url=url, key=key, image=ray_session.image)


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer().start()
    try:
        yield fake
    finally:
        asyncio.run(fake.close())


@pytest.fixture
def sdk(server: Server) -> Iterator[Client]:
    with server.client() as c:
        yield c


def hire(
    sdk: Client,
    server: Server,
    model: FakeOpenAIServer,
    name: str,
    policy: ApprovalPolicy,
    mode: Any = "chat",
) -> Agent:
    brain = BrainConfig(
        kind="openai",
        model=MODEL if mode == "chat" else "computer-use-preview",
        base_url=model.base_url,
        api_key="test",
        mode=mode,
    )
    return sdk.create_agent(
        name, role="sysadmin", brain=brain, desktop=DesktopSpec(image=server.image), policy=policy
    )


def fire(agent: Agent) -> None:
    try:
        agent.fire()
    except ApiError:
        pass


def timeline(task: Task) -> list[str]:
    """The task's events in words, one a line (logged for the record of the run)."""
    lines = []
    for e in task.events():
        data = dict(e.data)
        data.pop("usage", None)
        lines.append(f"{e.kind.value:7} {json.dumps(data, sort_keys=True)[:300]}")
    log.info("timeline of %s:\n  %s", task.id, "\n  ".join(lines))
    return lines


def tool_answers(body: dict[str, Any]) -> dict[str, str]:
    """The tool messages of a chat request, by tool_call_id."""
    return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}


def task_states(task: Task) -> list[str]:
    return [e.data["state"] for e in task.events() if e.kind == EventKind.TASK]


# ---------------------------------------------------------------------- a question


def test_the_model_asks_the_person_answers_through_the_sdk_and_the_task_completes(
    server: Server, sdk: Client, model: FakeOpenAIServer
) -> None:
    agent = hire(sdk, server, model, "asker", ApprovalPolicy())
    try:
        model.add(
            chat_json({"decision": "do", "reason": "one desktop"}),
            chat_tool_calls(
                tool_call("ask_user", {"question": "Which greeting should I write?"}, id="ask1"),
                content="The task does not say which greeting.",
            ),
            chat_tool_calls(
                tool_call("shell", {"command": "echo 'hello there' > ~/greeting.txt"}, id="sh1")
            ),
            chat_tool_calls(tool_call("done", {"result": "wrote ~/greeting.txt"})),
        )
        task = agent.assign("Write a greeting to ~/greeting.txt.")
        task.wait(timeout=120, progress=False, until_person=True)
        assert task.state == TaskState.INPUT_REQUIRED, (task.state, task.error)
        with server.http() as h:
            shown = h.get(f"/v1/tasks/{task.id}").json()
        assert shown["state"] == "input_required"
        assert shown["waiting"]["question"] == "Which greeting should I write?"
        assert len(model.bodies(CHAT)) == 2  # triage and the step that asked: nothing since

        task.answer("hello there")
        assert task.wait(timeout=120, progress=False).state == TaskState.SUCCEEDED, task.error
        assert task.result == "wrote ~/greeting.txt"
        model.verify()
        # the answer reached the model as the result of its ask_user call
        after = model.bodies(CHAT)[2]
        assert tool_answers(after) == {"ask1": "The person answered: hello there"}
        assert agent.shell("cat ~/greeting.txt").stdout.strip() == "hello there"
        assert task_states(task) == ["pending", "running", "input_required", "running", "succeeded"]
        timeline(task)
    finally:
        fire(agent)


# ---------------------------------------------------------------------- an approval


ROOT_WRITE = {"command": f"echo granted > {MARK}", "user": "root"}


def held_step(model: FakeOpenAIServer, call_id: str, then: Any) -> None:
    model.add(
        chat_json({"decision": "do", "reason": "one command"}),
        chat_tool_calls(tool_call("shell", ROOT_WRITE, id=call_id), content="Mark it as root."),
        then,
    )


def wait_for_approval(server: Server, task: Task) -> dict[str, Any]:
    task.wait(timeout=120, progress=False, until_person=True)
    assert task.state == TaskState.APPROVAL_REQUIRED, (task.state, task.error)
    with server.http() as h:
        shown: dict[str, Any] = h.get(f"/v1/tasks/{task.id}").json()
        assert h.get(f"/v1/tasks/{task.id}/waiting/screenshot").status_code == 200
    assert shown["state"] == "approval_required"
    return shown


def test_shell_as_root_waits_for_approval_rejected_fails_granted_runs(
    server: Server, sdk: Client, model: FakeOpenAIServer
) -> None:
    agent = hire(sdk, server, model, "guarded", ApprovalPolicy(approve=["shell_as_root"]))
    try:
        # rejected: the step fails with the reason, the model sees it, nothing ran
        held_step(
            model, "sh1", chat_tool_calls(tool_call("fail", {"reason": "the person refused"}))
        )
        first = agent.assign("Mark this desktop as checked (as root).")
        shown = wait_for_approval(server, first)
        (pending,) = shown["waiting"]["actions"]
        assert (pending["type"], pending["command"], pending["user"]) == (
            "shell",
            ROOT_WRITE["command"],
            "root",
        )
        assert shown["waiting"]["reason"] == (
            f"shell as root needs a person's approval: {ROOT_WRITE['command']}"
        )
        first.reject("not on this machine")
        assert first.wait(timeout=120, progress=False).state == TaskState.FAILED
        assert first.error == "the person refused"
        steps = [e.data for e in first.events() if e.kind == EventKind.STEP]
        assert [(s["action"]["command"], s["result"]["error"]) for s in steps] == [
            (ROOT_WRITE["command"], "a person refused: not on this machine")
        ]
        seen = tool_answers(model.bodies(CHAT)[2])
        assert "a person refused: not on this machine" in seen["sh1"]
        assert agent.shell(f"test -e {MARK}").exit_code == 1  # nothing ran
        assert task_states(first) == [
            "pending",
            "running",
            "approval_required",
            "running",
            "failed",
        ]
        timeline(first)

        # granted: the same step runs, as root, once
        held_step(model, "sh2", chat_tool_calls(tool_call("done", {"result": "marked"})))
        second = agent.assign("Mark this desktop as checked (as root).")
        wait_for_approval(server, second)
        second.approve()
        assert second.wait(timeout=120, progress=False).state == TaskState.SUCCEEDED, second.error
        assert second.result == "marked"
        model.verify()
        ok = json.loads(tool_answers(model.bodies(CHAT)[5])["sh2"])
        assert ok["ok"] is True and ok["command"]["exit_code"] == 0
        assert agent.shell(f"stat -c %U {MARK}; cat {MARK}").stdout.split() == ["root", "granted"]
        assert task_states(second) == [
            "pending",
            "running",
            "approval_required",
            "running",
            "succeeded",
        ]
        timeline(second)
    finally:
        fire(agent)


# ---------------------------------------------------------------------- a safety check

CHECK = {"id": "sc_live", "code": "malicious_instructions", "message": "The page says to."}


def test_a_pending_safety_check_asks_a_person_and_approved_is_acknowledged(
    server: Server, sdk: Client, model: FakeOpenAIServer
) -> None:
    policy = ApprovalPolicy(safety_checks="ask")
    agent = hire(sdk, server, model, "careful", policy, mode="responses")
    try:
        click = {"type": "click", "x": 40, "y": 30, "button": "left"}
        model.add(
            responses_reply(message_item(json.dumps({"decision": "do", "reason": "a click"}))),
            responses_reply(
                computer_call_item(click, call_id="cu1", safety_checks=[CHECK]), id="resp_cu"
            ),
            responses_reply(message_item("Clicked the link.")),
        )
        task = agent.assign("Click the link at the top left.")
        shown = wait_for_approval(server, task)
        assert shown["waiting"]["reason"] == (
            "safety check pending: malicious_instructions: The page says to."
        )
        assert [x["type"] for x in shown["waiting"]["actions"]] == ["click"]
        assert len(model.bodies(RESPONSES)) == 2  # nothing asked of the model meanwhile
        task.approve()
        assert task.wait(timeout=120, progress=False).state == TaskState.SUCCEEDED, task.error
        assert task.result == "Clicked the link."
        model.verify()
        steps = [e.data for e in task.events() if e.kind == EventKind.STEP]
        assert [(s["action"]["type"], s["result"]["ok"]) for s in steps] == [("click", True)]
        assert steps[0]["result"]["cursor"] == {"x": 40, "y": 30}  # the pointer went there
        last = model.bodies(RESPONSES)[2]
        assert last["previous_response_id"] == "resp_cu"
        (answer,) = [x for x in last["input"] if x["type"] == "computer_call_output"]
        assert answer["call_id"] == "cu1"
        assert answer["acknowledged_safety_checks"] == [CHECK]
        assert answer["output"]["image_url"].startswith("data:image/")
        timeline(task)
    finally:
        fire(agent)
