"""Stepping in and the console's live feeds, through real HTTP on the real thing: a Ray Serve
deployment on 127.0.0.1 in the session's Ray cluster, real agents with real desktops, a
model behind a fake OpenAI server (it records what the brain sends), the SDK and raw routes.

- a person takes over an agent running a task: the task pauses (its event says who took
  over), another caller's action and shell answer 409 while the holder's pass, hand-back
  with a note resumes the task and the note is in the very next request to the model;
- the tenant-wide stream carries the events of two tasks of one tenant and none of another
  tenant's; it ends within 5 s once the console session behind it signs out;
- the replay of a moment shows each agent's screenshot then (a blob the tenant may read and
  another tenant may not), and capacity shows the node's desktops in use.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orchestrator.desktop import DesktopSpec
from orchestrator.domain import BrainConfig, TaskSpec, TaskState
from orchestrator.lease import hand_back_text
from orchestrator.sdk import Agent, ApiError, Client, ConflictError
from tests.fakes.openai_server import (
    CHAT,
    FakeOpenAIServer,
    chat_json,
    chat_tool_calls,
    tool_call,
)

from .serve_api import deployed_api, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

TENANT, OTHER = "t-lease", "t-lease-other"
JPEG_MAGIC = b"\xff\xd8"


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    """One key per tenant, and ``TENANT + "#2"``: a second key of ``TENANT`` (another person)."""
    image: str

    def client(self, who: str = TENANT) -> Client:
        return Client(self.url, self.keys[who], timeout=60)

    def http(self, who: str = TENANT, timeout: float = 60) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.keys[who]}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=timeout)


@pytest.fixture(scope="module")
def server(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve on a free loopback port for this module: two tenants, the first with two keys."""
    keys = {
        TENANT: secrets.token_urlsafe(24),
        TENANT + "#2": secrets.token_urlsafe(24),
        OTHER: secrets.token_urlsafe(24),
    }
    lines = [(t.split("#")[0], k) for t, k in keys.items()]
    with deployed_api(lines, tmp_path_factory.mktemp("lease")) as url:
        yield Server(url=url, keys=keys, image=ray_session.image)


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer().start()
    try:
        yield fake
    finally:
        asyncio.run(fake.close())


def _fire(agent: Agent) -> None:
    try:
        agent.fire()
    except ApiError:
        pass


def _task_events(h: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    page = h.get(f"/v1/tasks/{task_id}/events", params={"limit": 1000}).json()
    events: list[dict[str, Any]] = page["events"]
    return events


# ---------------------------------------------------------------------- take over, hand back


def test_take_over_pauses_the_task_blocks_others_and_hand_back_gives_the_note_to_the_model(
    server: Server, model: FakeOpenAIServer
) -> None:
    brain = BrainConfig(
        kind="openai", model="fake-lease-model", base_url=model.base_url, api_key="test"
    )
    with server.client() as sdk, server.client(TENANT + "#2") as other_sdk:
        agent = sdk.create_agent(
            "taken", role="sysadmin", brain=brain, desktop=DesktopSpec(image=server.image)
        )
        try:
            model.add(
                chat_json({"decision": "do", "reason": "one desktop"}),
                # a step that lasts: the person takes over while it runs
                chat_tool_calls(
                    tool_call("shell", {"command": "sleep 3; echo first > ~/one.txt"}, id="sh1")
                ),
                chat_tool_calls(tool_call("done", {"result": "finished after the takeover"})),
            )
            task = agent.assign("Write ~/one.txt, then report.")
            until(lambda: len(model.bodies(CHAT)) >= 2, timeout_s=120, what="the first step")

            lease = agent.take_over(ttl_s=600)
            assert lease.task_id == task.id and lease.holder.startswith("key:")
            assert agent.lease() == lease
            # another person of the same tenant cannot take it, nor steer the desktop
            with pytest.raises(ConflictError, match="taken over"):
                other_sdk.agent(agent.id).take_over()
            with server.http(TENANT + "#2") as h2:
                r = h2.post(f"/v1/agents/{agent.id}/shell", json={"command": "echo intruder"})
                assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
                r = h2.post(
                    f"/v1/agents/{agent.id}/actions", json={"type": "keypress", "keys": ["a"]}
                )
                assert r.status_code == 409, r.text
                r = h2.post(f"/v1/agents/{agent.id}/lease/hand-back", json={"note": "mine"})
                assert r.status_code == 409, r.text

            def paused() -> bool:
                return task.refresh().state == TaskState.PAUSED

            until(paused, timeout_s=60, what="the task pauses after its step")
            assert len(model.bodies(CHAT)) == 2  # no decision while taken over
            # nor may the other person resume the task the lease paused, upload to the
            # desktop or reset it (the agent's actor checks the lease)
            with server.http(TENANT + "#2") as h2:
                r = h2.post(f"/v1/tasks/{task.id}/resume", json={"subtree": False})
                assert r.status_code == 409, r.text
                r = h2.put(f"/v1/agents/{agent.id}/files", params={"path": "/tmp/x"}, content=b"x")
                assert r.status_code == 409, r.text
                assert h2.post(f"/v1/agents/{agent.id}/desktop/reset").status_code == 409
            assert task.refresh().state == TaskState.PAUSED
            # the holder's own input reaches the desktop
            done = agent.shell("echo by-the-person > ~/person.txt && cat ~/one.txt")
            assert done.exit_code == 0 and done.stdout.strip() == "first", done

            back = agent.hand_back("I wrote ~/person.txt for you")
            assert back.note == "I wrote ~/person.txt for you" and agent.lease() is None
            assert task.wait(timeout=120, progress=False).state == TaskState.SUCCEEDED, task.error
            assert task.result == "finished after the takeover"
            model.verify()
            # the note is in what the model saw next
            after = json.dumps(model.bodies(CHAT)[2])
            assert hand_back_text("I wrote ~/person.txt for you") in after
            with server.http() as h:
                events = _task_events(h, task.id)
            states = [
                (e["data"]["state"], e["data"].get("person")) for e in events if e["kind"] == "task"
            ]
            assert ("paused", f"taken over by {lease.holder}") in states, states
            assert ("running", hand_back_text("I wrote ~/person.txt for you")) in states, states
            # free again: anyone of the tenant may use the desktop
            assert other_sdk.agent(agent.id).shell("cat ~/person.txt").stdout.strip() == (
                "by-the-person"
            )
        finally:
            _fire(agent)


def test_a_lease_runs_out_and_hands_back_by_itself(server: Server) -> None:
    steps = [
        {"type": "shell", "command": "sleep 2; echo 1"},
        {"type": "shell", "command": "echo 2"},
    ]
    with server.client() as sdk:
        agent = sdk.create_agent("expiring", role="sysadmin", desktop={"image": server.image})
        try:
            task = agent.assign("two steps", script={"steps": steps})
            until(lambda: task.refresh().state == TaskState.RUNNING, timeout_s=60, what="running")
            agent.take_over(ttl_s=4)
            assert task.wait(timeout=60, progress=False).state == TaskState.SUCCEEDED, task.error
            assert agent.lease() is None
            with server.http() as h:
                events = h.get(
                    "/v1/events", params={"before_at": time.time(), "limit": 1000}
                ).json()["events"]
            said = [
                e["data"]["lease"]
                for e in events
                if e["agent_id"] == agent.id and "lease" in e["data"]
            ]
            assert said[-2:] == ["taken", "expired"], said
        finally:
            _fire(agent)


# ---------------------------------------------------------------------- the live feeds


def _read_stream(
    h: httpx.Client, path: str, stop: Callable[[list[dict[str, Any]]], bool], timeout_s: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Events (and ``event:`` names) of an SSE stream until ``stop(events)`` or its end."""
    events: list[dict[str, Any]] = []
    names: list[str] = []
    deadline = time.monotonic() + timeout_s
    with h.stream("GET", path) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: ") and not names[-1:] == ["end"]:
                events.append(json.loads(line[len("data: ") :]))
            elif line.startswith("event: "):
                names.append(line[len("event: ") :])
            if stop(events) or time.monotonic() > deadline:
                break
    return events, names


def test_the_tenant_stream_replay_blobs_and_capacity(server: Server) -> None:
    script = {"steps": [{"type": "shell", "command": "echo hi"}]}
    with server.client() as sdk, server.client(OTHER) as other:
        a1 = sdk.create_agent("feed-a", role="sysadmin", desktop={"image": server.image})
        a2 = sdk.create_agent("feed-b", role="sysadmin", desktop={"image": server.image})
        b1 = other.create_agent("feed-x", role="sysadmin", desktop={"image": server.image})
        try:
            with server.http() as h:
                start = h.get("/v1/events", params={"before_at": time.time(), "limit": 1})
                after = max([e["seq"] for e in start.json()["events"]], default=0)
            secret = secrets.token_hex(16)  # a file only this tenant's task keeps
            keep = {"steps": [{"type": "shell", "command": f"echo {secret} > ~/secret.txt"}]}
            t1 = a1.assign(TaskSpec(description="one", script=keep, outputs=["secret.txt"]))
            t2 = a2.assign("two", script=script)
            tb = b1.assign("theirs", script=script)
            ours = {t1.id, t2.id}

            def both_done(events: list[dict[str, Any]]) -> bool:
                ended = {
                    e["task_id"]
                    for e in events
                    if e["kind"] == "task" and e["data"].get("state") == "succeeded"
                }
                return ours <= ended

            with server.http(timeout=120) as h:
                events, _ = _read_stream(h, f"/v1/events/stream?after_seq={after}", both_done, 120)
            assert both_done(events), events[-5:]
            assert all(e["agent_id"] in {a1.id, a2.id} for e in events), {
                e["agent_id"] for e in events
            }
            assert tb.wait(timeout=60, progress=False).state == TaskState.SUCCEEDED
            seqs = [e["seq"] for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

            # the replay of the moment the first task ended: its agent's screen then
            ended_at = max(
                e["at"]
                for e in events
                if e["task_id"] == t1.id and e["data"].get("state") == "succeeded"
            )
            with server.http() as h, server.http(OTHER) as hx:
                moment = h.get("/v1/replay", params={"at": ended_at}).json()
                shown = {x["agent_id"]: x for x in moment["agents"]}
                assert b1.id not in shown and a1.id in shown, shown
                shot = shown[a1.id]["screenshot"]
                assert shot is not None and shown[a1.id]["shot_at"] <= ended_at
                assert shown[a1.id]["status"] == "busy", shown[a1.id]
                assert all(ended_at - 30 <= e["at"] <= ended_at for e in moment["events"])
                assert any(e["task_id"] == t1.id for e in moment["events"])
                blob = h.get(f"/v1/blobs/{shot}")
                assert blob.status_code == 200 and blob.content.startswith(JPEG_MAGIC)
                assert blob.headers["content-type"] == "image/jpeg"
                # the kept file: this tenant reads it, another tenant cannot (a blank screen
                # may be the same blob in both tenants' events: content-addressed)
                kept = [e for e in events if e["task_id"] == t1.id and e["kind"] == "file"]
                assert len(kept) == 1 and len(kept[0]["blobs"]) == 1, kept
                mine = h.get(f"/v1/blobs/{kept[0]['blobs'][0]}")
                assert mine.status_code == 200 and mine.content.strip() == secret.encode()
                assert mine.headers["content-disposition"].startswith("attachment")
                refused = hx.get(f"/v1/blobs/{kept[0]['blobs'][0]}")
                assert refused.status_code == 404, refused.status_code
                assert hx.get(f"/v1/blobs/{'0' * 64}").status_code == 404
                # a moment before the agents existed shows none of them
                early = h.get("/v1/replay", params={"at": a1.info.created_at - 60}).json()
                assert a1.id not in {x["agent_id"] for x in early["agents"]}

                answer = h.get("/v1/capacity")
                cap = answer.json()
                alive = [n for n in cap["nodes"] if n["alive"]]
                assert alive and sum(n["desktops_used"] for n in alive) >= 3, cap
                for n in alive:
                    assert n["desktops_used"] + n["desktops_free"] == n["desktops_total"], n
                # no node's Ray id or address reaches a tenant: opaque labels only
                import ray

                for raw in ray.nodes():  # type: ignore[no-untyped-call]
                    assert raw["NodeID"] not in answer.text, cap
                    assert raw["NodeManagerAddress"] not in answer.text, cap
                assert all(n["node_id"].startswith("node-") for n in cap["nodes"]), cap
        finally:
            for agent in (a1, a2, b1):
                _fire(agent)


def _starting(cap: dict[str, Any]) -> int:
    return int(cap["starting_unplaced"]) + sum(n["desktops_starting"] for n in cap["nodes"])


def test_capacity_counts_only_the_callers_starting_agents(server: Server) -> None:
    """While another tenant's agent starts, its count shows in that tenant's capacity and
    not in this one's."""
    import threading

    made: list[Agent] = []
    other = server.client(OTHER)
    starter = threading.Thread(
        target=lambda: made.append(
            other.create_agent("starting-b", role="sysadmin", desktop={"image": server.image})
        ),
        daemon=True,
    )
    try:
        with server.http() as h, server.http(OTHER) as hx:
            starter.start()

            def counted() -> dict[str, Any] | None:
                cap: dict[str, Any] = hx.get("/v1/capacity").json()
                return cap if _starting(cap) else None

            theirs = until(
                counted,
                timeout_s=60,
                what="the other tenant's agent counted starting",
            )
            mine = h.get("/v1/capacity").json()
            assert _starting(theirs) >= 1 and _starting(mine) == 0, (theirs, mine)
            starter.join(timeout=180)
    finally:
        starter.join(timeout=180)
        for agent in made:
            _fire(agent)


def test_the_tenant_stream_ends_once_its_session_signs_out(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        r = browser.post("/v1/session", json={"key": server.keys[TENANT]})
        assert r.status_code == 200, r.text
        with browser.stream("GET", "/v1/events/stream") as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines).startswith(":")  # the stream is open
            t0 = time.monotonic()
            out = browser.delete("/v1/session", headers={"Origin": server.url})
            assert out.status_code == 204, out.text
            names = [line for line in lines if line.startswith("event: ")]
            took = time.monotonic() - t0
        assert names == ["event: end"], names
        assert took < 5.0, took
