"""More of the HTTP API through real HTTP: task listing, live event streams (SSE), the live
view link, workflows, stats, and the per-replica overload limit.

Uses the Serve deployment of ``test_serve_api`` (its module fixture, started again for this
module) plus a second app on the same Serve instance with a concurrency limit of 1.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.domain import AgentStatus, TaskState
from tests.integration.test_serve_api import (
    ECHO,
    TENANT_A,
    TENANT_B,
    Api,
    _error,
    api,
    until,
)

pytestmark = pytest.mark.integration

__all__ = ["api"]  # the imported module fixture

FINAL = ("succeeded", "failed", "cancelled")
SLOW = {
    "steps": [
        {"type": "shell", "command": "echo one"},
        {"type": "shell", "command": "sleep 2; echo two"},
    ]
}


@pytest.fixture(scope="module")
def desk(api: Api) -> Iterator[dict[str, Any]]:
    """A top-level agent of tenant A, created through the API."""
    with api.agent("desk-more") as info:
        yield info


@pytest.fixture(scope="module")
def limited(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second app on the same Serve instance: one replica, at most 1 request and 2 event
    streams at once, keep-alive comments every 0.5 s; its base URL."""
    from ray import serve

    from serve_app._app import ApiDeployment

    keys_file: Path = tmp_path_factory.mktemp("serve-more") / "api-keys"
    digest_a = hashlib.sha256(api.keys[TENANT_A].encode()).hexdigest()
    keys_file.write_text(f"{TENANT_A}:sha256:{digest_a}\n{TENANT_B}:{api.keys[TENANT_B]}\n")
    env = {
        "ORCHESTRATOR_API_MAX_CONCURRENT": "1",
        "ORCHESTRATOR_API_MAX_STREAMS": "2",
        "ORCHESTRATOR_API_SSE_KEEPALIVE_S": "0.5",
    }
    app = ApiDeployment.options(  # type: ignore[attr-defined]
        name="orchestrator-api-limited",
        num_replicas=1,
        autoscaling_config=None,
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}},
    ).bind(str(keys_file))
    serve.run(app, name="limited", route_prefix="/limited")
    url = f"{api.url}/limited"
    try:
        with httpx.Client(base_url=url, timeout=5) as c:
            until(lambda: c.get("/healthz").status_code == 200, timeout_s=60, what="/healthz")
        yield url
    finally:
        serve.delete("limited")


def _assign(c: httpx.Client, agent_id: str, script: dict[str, Any], what: str = "t") -> str:
    r = c.post(f"/v1/agents/{agent_id}/tasks", json={"description": what, "script": script})
    assert r.status_code == 202, r.text
    tid: str = r.json()["id"]
    return tid


def _wait_done(c: httpx.Client, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        t: dict[str, Any] = c.get(f"/v1/tasks/{task_id}").json()
        return t if t["state"] in FINAL else None

    return until(done, timeout_s=60, what=f"task {task_id} done")


def _read_sse(
    c: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """Read an SSE stream until the server closes it: (id, event) pairs and comments."""
    events: list[tuple[int, dict[str, Any]]] = []
    comments: list[str] = []
    with c.stream("GET", path, headers=headers, timeout=httpx.Timeout(60, read=30)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        ident: int | None = None
        for line in r.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                assert ident is not None, line
                events.append((ident, json.loads(line[6:])))
                ident = None
    return events, comments


# ---------------------------------------------------------------------- auth


NEW_ROUTES = [
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/task-0000000000/events/stream"),
    ("GET", "/v1/agents/agent-0000000000/live-view"),
    ("POST", "/v1/workflows"),
    ("GET", "/v1/stats"),
]


def test_new_routes_answer_401_without_a_valid_key(api: Api) -> None:
    with api.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    for method, path in NEW_ROUTES:
        templ = path.replace("task-0000000000", "{task_id}").replace(
            "agent-0000000000", "{agent_id}"
        )
        assert method.lower() in paths[templ], (method, templ)
    for key in (None, "not-a-key"):
        with api.client(key=key) as c:
            for method, path in NEW_ROUTES:
                r = c.request(method, path)
                _error(r, 401, "unauthorized")
                assert r.headers["WWW-Authenticate"] == "Bearer", (method, path)


# ---------------------------------------------------------------------- tasks


def test_list_tasks_newest_first_filtered_and_paged(api: Api, desk: dict[str, Any]) -> None:
    aid = desk["id"]
    with api.client(TENANT_A) as a, api.client(TENANT_B) as b:
        first = _assign(a, aid, ECHO, "first")
        _wait_done(a, first)
        second = _assign(a, aid, ECHO, "second")
        _wait_done(a, second)

        ids = [t["id"] for t in a.get("/v1/tasks").json()]
        assert ids.index(second) < ids.index(first), ids
        mine = a.get("/v1/tasks", params={"agent_id": aid}).json()
        assert {t["agent_id"] for t in mine} == {aid} and mine[0]["id"] == second
        page = a.get("/v1/tasks", params={"agent_id": aid, "limit": 1, "offset": 1}).json()
        assert [t["id"] for t in page] == [mine[1]["id"]]
        ok = a.get("/v1/tasks", params={"state": "succeeded", "agent_id": aid}).json()
        assert {first, second} <= {t["id"] for t in ok}
        assert a.get("/v1/tasks", params={"state": "pending", "agent_id": aid}).json() == []

        # another tenant sees none of them, and not the agent
        assert not {first, second} & {t["id"] for t in b.get("/v1/tasks").json()}
        _error(b.get("/v1/tasks", params={"agent_id": aid}), 404, "not_found")
        assert "query field 'state'" in _error(a.get("/v1/tasks", params={"state": "x"}), 422)
        _error(a.get("/v1/tasks", params={"limit": 0}), 422, "invalid_request")
        _error(a.get("/v1/tasks", params={"offset": -1}), 422, "invalid_request")


def test_event_stream_follows_a_task_to_its_end(api: Api, desk: dict[str, Any]) -> None:
    with api.client(TENANT_A) as a, api.client(TENANT_B) as b:
        tid = _assign(a, desk["id"], SLOW, "streamed")
        t0 = time.monotonic()
        events, _ = _read_sse(a, f"/v1/tasks/{tid}/events/stream")
        assert time.monotonic() - t0 < 45
        seqs = [e["seq"] for _, e in events]
        assert [i for i, _ in events] == seqs and seqs == sorted(set(seqs)), seqs
        assert all(e["task_id"] == tid for _, e in events)
        states = [e["data"]["state"] for _, e in events if e["kind"] == "task"]
        assert states[0] == "pending" and states[-1] == "succeeded", states
        assert events[-1][1]["kind"] == "task" and events[-1][1]["data"]["state"] == "succeeded"
        assert a.get(f"/v1/tasks/{tid}").json()["state"] == "succeeded"
        # the stream holds what the paged events hold
        paged = a.get(f"/v1/tasks/{tid}/events", params={"limit": 1000}).json()["events"]
        assert [e["seq"] for e in paged] == seqs

        # resuming: after Last-Event-ID, or after_seq
        resumed, _ = _read_sse(
            a, f"/v1/tasks/{tid}/events/stream", headers={"Last-Event-ID": str(seqs[1])}
        )
        assert [i for i, _ in resumed] == seqs[2:]
        resumed, _ = _read_sse(a, f"/v1/tasks/{tid}/events/stream?after_seq={seqs[0]}")
        assert [i for i, _ in resumed] == seqs[1:]
        r = a.get(f"/v1/tasks/{tid}/events/stream", headers={"Last-Event-ID": "x"})
        assert "Last-Event-ID" in _error(r, 422, "invalid_request")

        _error(b.get(f"/v1/tasks/{tid}/events/stream"), 404, "not_found")
        _error(a.get("/v1/tasks/task-0000000000/events/stream"), 404, "not_found")


def test_event_stream_sends_keepalives_while_idle(
    api: Api, desk: dict[str, Any], limited: str
) -> None:
    with api.client(TENANT_A) as a:
        tid = _assign(a, desk["id"], SLOW, "quiet")
        c = httpx.Client(base_url=limited, headers=dict(a.headers))
        with c:
            events, comments = _read_sse(c, f"/v1/tasks/{tid}/events/stream")
    assert ": keep-alive" in comments, comments
    assert events[-1][1]["data"]["state"] == "succeeded"


# ---------------------------------------------------------------------- live view


def test_live_view_link_is_tenant_checked_and_serves_novnc(api: Api, desk: dict[str, Any]) -> None:
    aid = desk["id"]
    with api.client(TENANT_A) as a, api.client(TENANT_B) as b:
        r = a.get(f"/v1/agents/{aid}/live-view")
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert set(body) == {"url", "expires"} and body["expires"] is None
        assert body["url"].startswith("http://127.0.0.1:"), body
        page = httpx.get(body["url"], timeout=10)
        assert page.status_code == 200 and "novnc" in page.text.lower()

        msg = _error(b.get(f"/v1/agents/{aid}/live-view"), 404, "not_found")
        assert msg == f"no agent {aid}"
        assert body["url"] not in b.get(f"/v1/agents/{aid}/live-view").text
        _error(a.get("/v1/agents/agent-0000000000/live-view"), 404, "not_found")


# ---------------------------------------------------------------------- workflows

WORKFLOW = """\
tenant: somebody-else
agent: {name: wf-runner, role: tester, desktop: {image: IMAGE}}
task:
  description: say hello
  script:
    steps:
      - {type: shell, command: echo hello-from-workflow}
"""


def test_workflow_creates_agent_in_callers_tenant_and_runs(api: Api) -> None:
    with api.client(TENANT_A) as a:
        text = WORKFLOW.replace("IMAGE", api.image)
        r = a.post("/v1/workflows", content=text, headers={"Content-Type": "text/yaml"})
        assert r.status_code == 202, r.text
        body = r.json()
        agent, task = body["agent"], body["task"]
        try:
            assert agent["tenant"] == TENANT_A and agent["path"] == f"{TENANT_A}/wf-runner"
            assert task["agent_id"] == agent["id"]
            final = _wait_done(a, task["id"])
            assert final["state"] == "succeeded" and final["result"] == "hello-from-workflow"
            # the same workflow again: its agent exists already
            r = a.post("/v1/workflows", json={"yaml": text})
            assert "exists already" in _error(r, 409, "conflict")
        finally:
            assert a.delete(f"/v1/agents/{agent['id']}").status_code == 204


def test_bad_workflows_get_422_with_the_reason(api: Api) -> None:
    with api.client(TENANT_A) as a:
        yaml_ct = {"Content-Type": "text/yaml"}
        r = a.post("/v1/workflows", content="agent: [unclosed", headers=yaml_ct)
        assert "workflow is not valid YAML" in _error(r, 422, "invalid_request")
        r = a.post("/v1/workflows", json={"yaml": "agent: {name: x}\n"})
        msg = _error(r, 422, "invalid_request")
        assert msg.startswith("invalid workflow:") and "task" in msg, msg
        bad_script = WORKFLOW.replace("type: shell", "type: teleport")
        r = a.post("/v1/workflows", content=bad_script, headers=yaml_ct)
        assert "invalid workflow script" in _error(r, 422, "invalid_request")
        r = a.post("/v1/workflows", json={"yml": "x"})
        assert "body field 'yaml'" in _error(r, 422, "invalid_request")
        r = a.post("/v1/workflows", content=b"{", headers={"Content-Type": "application/json"})
        assert "malformed JSON" in _error(r, 422, "invalid_request")
        r = a.post("/v1/workflows", content=b"x", headers={"Content-Type": "image/png"})
        _error(r, 415, "unsupported_media_type")
        assert not [x for x in a.get("/v1/agents").json() if x["spec"]["name"] == "x"]


# ---------------------------------------------------------------------- stats


def test_stats_count_the_tenants_agents_and_tasks(api: Api, desk: dict[str, Any]) -> None:
    with api.client(TENANT_A) as a, api.client(TENANT_B) as b:
        _wait_done(a, _assign(a, desk["id"], ECHO, "counted"))
        stats = a.get("/v1/stats").json()
        agents = a.get("/v1/agents").json()
        tasks = a.get("/v1/tasks", params={"limit": 1000}).json()
        # every status and every state is counted, 0 when none is in it
        assert stats["agents"] == {
            s.value: sum(x["status"] == s for x in agents) for s in AgentStatus
        }
        assert stats["tasks"] == {s.value: sum(t["state"] == s for t in tasks) for s in TaskState}
        assert stats["agents"]["idle"] >= 1 and stats["tasks"]["succeeded"] >= 1
        other = b.get("/v1/stats").json()
        assert other["tasks"]["succeeded"] == sum(
            t["state"] == "succeeded" for t in b.get("/v1/tasks").json()
        )


# ---------------------------------------------------------------------- overload


def test_over_the_concurrency_limit_is_429_not_a_hang(
    api: Api, desk: dict[str, Any], limited: str
) -> None:
    headers = {"Authorization": f"Bearer {api.keys[TENANT_A]}"}
    slow: list[httpx.Response] = []

    def hold() -> None:
        """Take the one slot with a slow command (again if a probe held it at that moment)."""
        with httpx.Client(base_url=limited, headers=headers, timeout=30) as c:
            for _ in range(50):
                r = c.post(f"/v1/agents/{desk['id']}/shell", json={"command": "sleep 6.5"})
                if r.status_code != 429:
                    slow.append(r)
                    return
                time.sleep(0.05)  # the slot was busy for an instant: take it again

    def holding() -> bool:
        """The slow command runs on the desktop (seen through the unlimited app)."""
        with httpx.Client(base_url=api.url, headers=headers, timeout=10) as main:
            r = main.post(
                f"/v1/agents/{desk['id']}/shell", json={"command": "pgrep -f 'slee[p] 6.5'"}
            )
            return bool(r.status_code == 200 and r.json()["exit_code"] == 0)

    holder = threading.Thread(target=hold)
    with httpx.Client(base_url=limited, headers=headers, timeout=5) as c:
        assert c.get("/v1/agents").status_code == 200
        holder.start()
        try:
            until(holding, timeout_s=10, what="the slow command holding the slot")
            r = c.get("/v1/agents")
            assert "too many concurrent requests" in _error(r, 429, "too_many_requests")
            assert int(r.headers["Retry-After"]) >= 1
            assert c.get("/healthz").status_code == 200  # liveness is not counted
        finally:
            holder.join(timeout=30)
        assert slow and slow[0].status_code == 200, slow
        assert slow[0].json()["exit_code"] == 0
        assert c.get("/v1/agents").status_code == 200  # the slot was given back


def _open_and_leave(c: httpx.Client, path: str) -> int:
    with c.stream("GET", path) as r:
        return r.status_code


def test_stream_slots_are_capped_and_given_back_when_clients_leave(
    api: Api, desk: dict[str, Any], limited: str
) -> None:
    with api.client(TENANT_A) as a:
        tid = _assign(a, desk["id"], {"steps": [{"type": "shell", "command": "sleep 6"}]}, "hold")
        headers = dict(a.headers)
    path = f"/v1/tasks/{tid}/events/stream"
    with httpx.Client(base_url=limited, headers=headers, timeout=10) as c:
        for _ in range(6):  # clients that leave at once, before reading anything
            # a slot comes back once the server sees the client gone (not at once via Serve)
            until(lambda: c.get("/v1/stats").status_code == 200, timeout_s=5, what="idle")
            opened = until(
                lambda: _open_and_leave(c, path) == 200 or None, timeout_s=15, what="a slot"
            )
            assert opened
        with c.stream("GET", path) as one, c.stream("GET", path) as two:
            assert one.status_code == two.status_code == 200
            third = c.get(path)
            assert "too many open event streams" in _error(third, 429, "too_many_requests")
            assert int(third.headers["Retry-After"]) >= 1
        # both closed: their slots are free again
        again = until(
            lambda: (r := c.get(f"{path}?after_seq=999999", timeout=20)).status_code == 200 and r,
            timeout_s=10,
            what="a stream slot free again",
        )
        assert again.status_code == 200
