"""A person in the loop through real HTTP (issue 12): a Ray Serve deployment on 127.0.0.1 in
the session's Ray cluster, real agents with real desktops and scripted brains, a person
using the SDK and the raw routes.

- a task that asks a question waits (``input_required``, the question and its screen in
  ``GET /v1/tasks/{id}``), is answered through the SDK and completes using the answer;
- an approval rejected fails the step with the reason (the file stays), an approval granted
  performs it (the file goes);
- a delegating task's subtree paused over HTTP takes no step until resumed, then completes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orchestrator.domain import EventKind, TaskState
from orchestrator.sdk import Agent, ApiError, Client, ConflictError, NotFoundError

from .serve_api import deployed_api, until

pytestmark = pytest.mark.integration

TENANT, OTHER = "t-person", "t-person-other"
JPEG_MAGIC = b"\xff\xd8"


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    image: str

    def client(self, tenant: str = TENANT) -> Client:
        return Client(self.url, self.keys[tenant], timeout=60)

    def http(self, tenant: str = TENANT) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.keys[tenant]}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=60)


@pytest.fixture(scope="module")
def server(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve on a free loopback port for this module, with two tenants' keys."""
    keys = {TENANT: secrets.token_urlsafe(24), OTHER: secrets.token_urlsafe(24)}
    with deployed_api(keys.items(), tmp_path_factory.mktemp("person")) as url:
        yield Server(url=url, keys=keys, image=ray_session.image)


@pytest.fixture
def desk(server: Server, request: pytest.FixtureRequest) -> Iterator[Agent]:
    """A top-level agent of the test's own, fired at the end."""
    name = request.node.name.removeprefix("test_")[:40].replace("_", "-")
    with server.client() as c:
        agent = c.create_agent(name, role="sysadmin", desktop={"image": server.image})
        try:
            yield agent
        finally:
            try:
                c.agent(agent.id).fire()
            except ApiError:
                pass


def test_a_question_waits_is_answered_through_the_sdk_and_completes(
    server: Server, desk: Agent
) -> None:
    script = {
        "steps": [
            {"ask": "Which greeting?"},
            {
                "type": "shell",
                "command": "echo {{ outputs[-1] | q }} > greeting.txt; cat greeting.txt",
            },
        ]
    }
    task = desk.assign("greet", script=script)
    assert task.wait(timeout=90, progress=False, until_person=True) is task
    assert task.state == TaskState.INPUT_REQUIRED, (task.state, task.error)

    with server.http() as h, server.http(OTHER) as other:
        shown = h.get(f"/v1/tasks/{task.id}").json()
        assert shown["state"] == "input_required"
        assert shown["waiting"]["question"] == "Which greeting?"
        shot = h.get(f"/v1/tasks/{task.id}/waiting/screenshot")
        assert shot.status_code == 200 and shot.content.startswith(JPEG_MAGIC)
        # another tenant's person cannot answer it, nor see it
        r = other.post(f"/v1/tasks/{task.id}/answer", json={"text": "stolen"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    with pytest.raises(ConflictError, match="not waiting for approval"):
        task.approve()
    assert task.waiting is not None and task.waiting.question == "Which greeting?"

    task.answer("hello there")
    with pytest.raises(ConflictError):  # answered: it asks nothing any more
        task.answer("again")
    assert task.wait(timeout=90, progress=False).state == TaskState.SUCCEEDED, task.error
    assert task.result == "hello there" and task.waiting is None
    assert desk.shell("cat greeting.txt").stdout.strip() == "hello there"
    states = [e.data["state"] for e in task.events() if e.kind == EventKind.TASK]
    assert states == ["pending", "running", "input_required", "running", "succeeded"]


RM = {"type": "shell", "command": "rm -f precious && echo removed"}


@pytest.mark.parametrize("verdict", ["reject", "approve"])
def test_an_approval_rejected_fails_the_step_and_one_granted_performs_it(
    server: Server, desk: Agent, verdict: str
) -> None:
    desk.shell("echo keep > precious")
    task = desk.assign(
        "tidy up", script={"steps": [{"approve": "removes a file", "actions": [RM]}]}
    )
    task.wait(timeout=90, progress=False, until_person=True)
    assert task.state == TaskState.APPROVAL_REQUIRED, (task.state, task.error)
    waiting = task.waiting
    assert waiting is not None and waiting.reason == "removes a file"
    assert [x.model_dump()["command"] for x in waiting.actions] == [RM["command"]]
    with pytest.raises(ConflictError, match="not waiting for an answer"):
        task.answer("yes")

    if verdict == "reject":
        task.reject("not on Fridays")
    else:
        task.approve()
    task.wait(timeout=90, progress=False)

    steps = [e.data for e in task.events() if e.kind == EventKind.STEP]
    kept = desk.shell("cat precious").stdout.strip()
    if verdict == "reject":
        # the step failed with the person's reason, on the timeline; the file is still there
        assert [(s["action"]["command"], s["result"]["ok"]) for s in steps] == [
            (RM["command"], False)
        ]
        assert steps[0]["result"]["error"] == "a person refused: not on Fridays"
        assert kept == "keep"
        assert task.state == TaskState.FAILED  # the scripted brain gives up on a refused step
        assert task.error == "step 1: a person refused to approve it (removes a file)"
    else:
        assert [(s["action"]["command"], s["result"]["ok"]) for s in steps] == [
            (RM["command"], True)
        ]
        assert (task.state, task.result) == (TaskState.SUCCEEDED, "removed")
        assert kept == ""


def _steps(h: httpx.Client, task_id: str) -> int:
    events = h.get(f"/v1/tasks/{task_id}/events", params={"limit": 1000}).json()["events"]
    return sum(e["kind"] == "step" for e in events)


def test_a_paused_subtree_takes_no_action_until_resumed(server: Server, desk: Agent) -> None:
    worker_steps = [
        {"type": "shell", "command": f"sleep 1; echo step {i} >> ~/log.txt; echo {i}"}
        for i in range(1, 5)
    ]
    script = {
        "subtasks": [
            {"id": "w", "role": "Worker", "description": "work", "script": {"steps": worker_steps}}
        ],
        "result": "done: {{ results.w }}",
    }
    root = desk.assign("team work", script=script)
    with server.http() as h:

        def running_subtask() -> str | None:
            ids = h.get(f"/v1/tasks/{root.id}").json()["subtask_ids"]
            if ids and h.get(f"/v1/tasks/{ids[0]}").json()["state"] == "running":
                return str(ids[0])
            return None

        sub = until(running_subtask, timeout_s=90, what="the subtask runs")
        r = h.post(f"/v1/tasks/{root.id}/pause", json={"subtree": True})
        assert r.status_code == 200, r.text

        def paused() -> bool:
            return bool(h.get(f"/v1/tasks/{sub}").json()["state"] == "paused")

        until(paused, timeout_s=30, what="the subtask pauses (the step in flight finishes)")
        taken = _steps(h, sub)
        assert taken < len(worker_steps)
        # No new step while paused: watched for a while (absence has no event to wait for).
        watch_until = time.monotonic() + 4
        while time.monotonic() < watch_until:
            assert _steps(h, sub) == taken
            assert h.get(f"/v1/tasks/{sub}").json()["state"] == "paused"
            # the parent reads paused too (it starts no subtask until resumed), not waiting
            assert h.get(f"/v1/tasks/{root.id}").json()["state"] == "paused"
            time.sleep(0.2)  # polling interval of the watch
        with pytest.raises(NotFoundError):  # a paused task shows no question or approval
            root.client.task(sub).waiting_screenshot()

        r = h.post(f"/v1/tasks/{root.id}/resume", json={"subtree": True})
        assert r.status_code == 200, r.text
        done = root.wait(timeout=120, progress=False)
        assert done.state == TaskState.SUCCEEDED, done.error
        assert done.result == "done: 4"
        assert _steps(h, sub) == len(worker_steps)
        r = h.post(f"/v1/tasks/{root.id}/resume", json={"subtree": True})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
        events = h.get(f"/v1/tasks/{sub}/events", params={"limit": 1000}).json()["events"]
        states = [e["data"]["state"] for e in events if e["kind"] == "task"]
        assert states == ["pending", "running", "paused", "running", "succeeded"]
