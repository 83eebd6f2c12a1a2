"""Task routes on an in-process runtime (real records, no Ray, no Docker): assign, read,
list, cancel, pin, events and their live stream, and their errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.records import SQLiteStore
from orchestrator.tenants import Quotas
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, OTHER, TENANT, api


@pytest.fixture
def app(store: SQLiteStore) -> Iterator[tuple[TestClient, LocalRuntime]]:
    with api(store) as both:
        yield both


@pytest.fixture
def agent(app: tuple[TestClient, LocalRuntime]) -> dict[str, Any]:
    client, _ = app
    r = client.post("/v1/agents", json={"name": "worker"}, headers=AUTH)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _assign(client: TestClient, agent_id: str, text: str = "do it") -> dict[str, Any]:
    r = client.post(f"/v1/agents/{agent_id}/tasks", json={"description": text}, headers=AUTH)
    assert r.status_code == 202, r.text
    task: dict[str, Any] = r.json()
    return task


def test_assign_read_and_list(app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]) -> None:
    client, rt = app
    task = _assign(client, agent["id"])
    assert task["state"] == "pending" and task["agent_id"] == agent["id"]
    got = client.get(f"/v1/tasks/{task['id']}", headers=AUTH)
    assert got.status_code == 200 and got.json()["id"] == task["id"]
    assert got.headers["content-type"] == "application/json"
    second = _assign(client, agent["id"], "again")
    rt.finish(second["id"], "done")
    listed = client.get("/v1/tasks", headers=AUTH).json()
    assert [t["id"] for t in listed] == [second["id"], task["id"]]  # newest first
    ended = client.get("/v1/tasks", params={"state": "succeeded"}, headers=AUTH).json()
    assert [t["id"] for t in ended] == [second["id"]]
    page = client.get("/v1/tasks", params={"limit": 1, "offset": 1}, headers=AUTH).json()
    assert [t["id"] for t in page] == [task["id"]]
    mine = client.get("/v1/tasks", params={"agent_id": agent["id"]}, headers=AUTH).json()
    assert len(mine) == 2


def test_another_tenants_tasks_are_404(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, _ = app
    task = _assign(client, agent["id"])
    for method, path in [
        ("GET", f"/v1/tasks/{task['id']}"),
        ("POST", f"/v1/tasks/{task['id']}/cancel"),
        ("POST", f"/v1/tasks/{task['id']}/pin"),
        ("GET", f"/v1/tasks/{task['id']}/events"),
        ("GET", f"/v1/tasks/{task['id']}/events/stream"),
        ("GET", f"/v1/tasks/{task['id']}/artifacts"),
    ]:
        r = client.request(method, path, headers=OTHER)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    assert client.get("/v1/tasks", headers=OTHER).json() == []
    r = client.get("/v1/tasks", params={"agent_id": agent["id"]}, headers=OTHER)
    assert r.status_code == 404
    r = client.post(f"/v1/agents/{agent['id']}/tasks", json={"description": "x"}, headers=OTHER)
    assert r.status_code == 404


def test_cancel_and_pin(app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]) -> None:
    client, rt = app
    task = _assign(client, agent["id"])
    r = client.post(f"/v1/tasks/{task['id']}/pin", headers=AUTH)
    assert r.json() == {"task_id": task["id"], "pinned": True} and rt.store.is_pinned(task["id"])
    r = client.delete(f"/v1/tasks/{task['id']}/pin", headers=AUTH)
    assert r.json()["pinned"] is False and not rt.store.is_pinned(task["id"])
    r = client.post(f"/v1/tasks/{task['id']}/cancel", headers=AUTH)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    stored = rt.store.get_task(task["id"])
    assert stored is not None and stored.state.value == "cancelled"


def test_events_page_and_stream(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, rt = app
    task = _assign(client, agent["id"])
    rt.finish(task["id"], "all done")
    page = client.get(f"/v1/tasks/{task['id']}/events", headers=AUTH).json()
    states = [e["data"].get("state") for e in page["events"]]
    assert states[-1] == "succeeded" and page["has_more"] is False
    assert page["next_after_seq"] == page["events"][-1]["seq"]
    after = client.get(
        f"/v1/tasks/{task['id']}/events",
        params={"after_seq": page["next_after_seq"]},
        headers=AUTH,
    ).json()
    assert after["events"] == [] and after["next_after_seq"] == page["next_after_seq"]
    # the stream of a finished task sends its events and ends
    with client.stream("GET", f"/v1/tasks/{task['id']}/events/stream", headers=AUTH) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    sent = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert [e["seq"] for e in sent] == [e["seq"] for e in page["events"]]
    # resumed after the last one: nothing more
    last = str(page["next_after_seq"])
    stream = f"/v1/tasks/{task['id']}/events/stream"
    with client.stream("GET", stream, headers={**AUTH, "Last-Event-ID": last}) as r:
        assert "data: " not in "".join(r.iter_text())


def test_the_running_task_quota_is_429_and_the_task_is_not_recorded(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, rt = app
    rt.store.set_quotas(TENANT, Quotas(max_running_tasks=1))
    _assign(client, agent["id"])
    r = client.post(f"/v1/agents/{agent['id']}/tasks", json={"description": "2"}, headers=AUTH)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded", r.text
    assert len(rt.store.list_tasks(tenant=TENANT)) == 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/tasks", {"limit": 0}),
        ("/v1/tasks", {"limit": 1001}),
        ("/v1/tasks", {"state": "sleeping"}),
        ("/v1/tasks/task-x/events", {"limit": 0}),
        ("/v1/tasks/task-x/events", {"after_seq": -1}),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    app: tuple[TestClient, LocalRuntime], path: str, params: dict[str, str | int]
) -> None:
    client, rt = app
    r = client.get(path, params=params, headers=AUTH)
    assert r.status_code == 422 and "query field" in r.json()["error"]["message"], r.text
    assert rt.calls == []


def test_an_unknown_task_is_404(app: tuple[TestClient, LocalRuntime]) -> None:
    client, _ = app
    r = client.get("/v1/tasks/task-nope", headers=AUTH)
    assert r.status_code == 404 and "task-nope" in r.json()["error"]["message"]
    body = {"description": "x"}
    assert client.post("/v1/agents/agent-nope/tasks", json=body, headers=AUTH).status_code == 404
