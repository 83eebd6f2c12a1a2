"""A budget that cascades down the tree, through real HTTP (issue 12): a Ray Serve deployment
on 127.0.0.1 in the session's Ray cluster, a real boss agent that delegates to two real
specialists (each its own actor and desktop) with scripted brains that keep working.

The boss's task has a budget of 6 steps for its whole subtree; the specialists' steps count
against it. Once the subtree has taken a 7th step, the specialist that took it asks the boss's
agent to cancel the boss's task: the task ends ``cancelled`` with the reason, both specialists'
tasks are cancelled with the same reason (they take no more steps), ``GET /v1/tasks/{id}``
shows the usage rolled up the tree and the reason, and the boss's timeline notes the budget
and the usage that exceeded it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orchestrator.domain import TaskState
from orchestrator.sdk import Agent, ApiError, Client

from .serve_api import deployed_api

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

TENANT = "t-budget"
BUDGET_STEPS = 6


@dataclass
class Server:
    url: str
    key: str
    image: str

    def client(self) -> Client:
        return Client(self.url, self.key, timeout=60)

    def http(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=60)


@pytest.fixture(scope="module")
def server(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve on a free loopback port for this module."""
    key = secrets.token_urlsafe(24)
    with deployed_api([(TENANT, key)], tmp_path_factory.mktemp("budget")) as url:
        yield Server(url=url, key=key, image=ray_session.image)


@pytest.fixture
def boss(server: Server) -> Iterator[Agent]:
    """A top-level agent of the test's own, fired (with its specialists) at the end."""
    with server.client() as c:
        agent = c.create_agent("boss", role="manager", desktop={"image": server.image})
        try:
            yield agent
        finally:
            try:
                c.agent(agent.id).fire()
            except ApiError:
                pass


def _events(h: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    page = h.get(f"/v1/tasks/{task_id}/events", params={"limit": 1000}).json()
    events: list[dict[str, Any]] = page["events"]
    return events


def _line(e: dict[str, Any]) -> str:
    data = e["data"]
    if e["kind"] == "step":
        what = f"{data['action']['type']} {data['action'].get('command', '')}"
    elif e["kind"] == "task":
        what = f"{data['state']}" + (f": {data['error']}" if data.get("error") else "")
    elif e["kind"] == "log":
        what = data.get("msg") or str(data)
    else:
        what = " ".join(str({k: v for k, v in data.items() if k != "text"}).split())[:90]
    return f"{e['seq']:>6} {e['task_id']} {e['kind']:<7} {what}"


def test_a_subtree_over_its_budget_is_cancelled_with_the_reason(
    server: Server, boss: Agent
) -> None:
    def looping(name: str) -> dict[str, Any]:
        steps = [
            {"type": "shell", "command": f"sleep 0.5; echo {name} {i} >> ~/log.txt"}
            for i in range(1, 31)
        ]
        return {"id": name, "role": f"{name} worker", "description": f"loop {name}",
                "script": {"steps": steps}}  # fmt: skip

    script = {"subtasks": [looping("left"), looping("right")], "result": "both looped"}
    root = boss.assign("two loops", script=script, budget={"steps": BUDGET_STEPS})
    assert root.info.spec.budget is not None and root.info.spec.budget.steps == BUDGET_STEPS

    ended = root.wait(timeout=180, progress=False)

    assert ended.state == TaskState.CANCELLED, (ended.state, ended.error)
    reason = ended.error or ""
    assert reason.startswith("budget exceeded: "), reason
    assert reason.endswith(f" steps of {BUDGET_STEPS} (subtree of {root.id})"), reason
    with server.http() as h:
        shown = h.get(f"/v1/tasks/{root.id}").json()
        assert (shown["state"], shown["error"]) == ("cancelled", reason)
        subs = shown["subtask_ids"]
        assert len(subs) == 2
        children = [h.get(f"/v1/tasks/{s}").json() for s in subs]
        for child in children:  # each specialist's task cancelled with the reason
            assert (child["state"], child["error"]) == ("cancelled", reason), child
        steps = {c["id"]: sum(e["kind"] == "step" for e in _events(h, c["id"])) for c in children}
        taken = sum(steps.values())
        # the 7th step exceeded it; a step in flight elsewhere may finish (0.5 s each)
        assert BUDGET_STEPS < taken <= BUDGET_STEPS + 3, steps
        # the usage, rolled up the tree: the boss took no step itself
        assert shown["usage"]["steps"] == 0
        assert shown["subtree_usage"]["steps"] == taken
        assert shown["subtree_usage"]["model_calls"] == 0  # scripted brains call no model
        assert shown["subtree_usage"]["cost_usd"] == 0.0
        for child in children:
            assert child["usage"]["steps"] == steps[child["id"]]
        # no step after the cancel: the specialists' logs stop where their timelines do
        time.sleep(2)  # a step that escaped the cancel would land within its 0.5 s
        assert sum(sum(e["kind"] == "step" for e in _events(h, s)) for s in subs) == taken
        # the boss's timeline: the budget and what exceeded it, then the end with the reason
        timeline = _events(h, root.id)
        notes = [e for e in timeline if e["kind"] == "log" and "budget" in e["data"]]
        # one notice per specialist that saw the budget exceeded: two stepping at the same
        # moment may both see it (each names itself); the subtree is cancelled once all the same
        assert 1 <= len(notes) <= len(subs), notes
        assert len({n["data"]["noticed_by"] for n in notes}) == len(notes), notes
        for noted in notes:
            assert noted["data"]["msg"] == reason
            assert noted["data"]["budget"] == {"steps": BUDGET_STEPS}
            assert noted["data"]["subtree_usage"]["steps"] > BUDGET_STEPS
            assert noted["data"]["noticed_by"] in subs
        last = [e for e in timeline if e["kind"] == "task"][-1]
        assert (last["data"]["state"], last["data"]["error"]) == ("cancelled", reason)
        agent = h.get(f"/v1/agents/{boss.id}").json()
        assert agent["usage"]["steps"] == 0
        assert agent["subtree_usage"]["steps"] == taken  # its specialists' steps, rolled up
        every = sorted([e for t in [root.id, *subs] for e in _events(h, t)], key=lambda e: e["seq"])
        log.info("timeline of the budget cancellation:\n%s", "\n".join(map(_line, every)))
