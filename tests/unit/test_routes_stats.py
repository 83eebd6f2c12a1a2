"""Stats and workflow routes on an in-process runtime (no Ray, no Docker)."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_stats_count_by_status_and_state_without_listing_anything(
    app: tuple[TestClient, LocalRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old route listed every task in pages of 10,000 on each call (and counted agents
    from one page of them): now the records count, and the route lists nothing."""
    client, rt = app
    ids = [
        client.post("/v1/agents", json={"name": f"a{i}"}, headers=AUTH).json()["id"] for i in (0, 1)
    ]
    assign = f"/v1/agents/{ids[0]}/tasks"
    tasks = [
        client.post(assign, json={"description": str(i)}, headers=AUTH).json() for i in range(3)
    ]
    rt.finish(tasks[0]["id"], "ok")
    client.post(f"/v1/tasks/{tasks[1]['id']}/cancel", headers=AUTH)
    client.delete(f"/v1/agents/{ids[1]}", headers=AUTH)
    client.post("/v1/agents", json={"name": "b"}, headers=OTHER)  # another tenant's

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("stats must not list records")

    monkeypatch.setattr(rt.store, "list_tasks", refuse)
    monkeypatch.setattr(rt.store, "list_agents", refuse)
    rt.calls.clear()
    r = client.get("/v1/stats", headers=AUTH)
    assert r.status_code == 200, r.text
    assert rt.calls == ["stats"]
    body = r.json()
    assert body["agents"]["busy"] == 1 and body["agents"]["stopped"] == 1
    assert sum(body["agents"].values()) == 2
    assert body["tasks"]["succeeded"] == 1 and body["tasks"]["cancelled"] == 1
    assert body["tasks"]["pending"] == 1 and sum(body["tasks"].values()) == 3
    assert set(body["tasks"]) >= {"pending", "running", "waiting", "failed"}  # every state
    other = client.get("/v1/stats", headers=OTHER).json()
    assert sum(other["agents"].values()) == 1 and sum(other["tasks"].values()) == 0
    assert client.get("/v1/stats").status_code == 401


WORKFLOW = """
tenant: ignored
agent: {name: admin, role: system administrator}
task: {description: Install a web server.}
"""


def test_a_workflow_starts_its_agent_in_the_callers_tenant(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    r = client.post(
        "/v1/workflows", content=WORKFLOW, headers={**AUTH, "Content-Type": "text/yaml"}
    )
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["agent"]["path"] == f"{TENANT}/admin"
    assert started["task"]["agent_id"] == started["agent"]["id"]
    assert started["agent"]["status"] == "busy"
    r = client.post("/v1/workflows", json={"yaml": WORKFLOW.replace("admin", "two")}, headers=AUTH)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        ("agent: {name: a}\n", "text/yaml", 422),  # no task
        ("{not yaml", "text/yaml", 422),
        ('{"yaml": ""}', "application/json", 422),
        ("agent: {name: a}", "application/xml", 415),
    ],
)
def test_a_bad_workflow_is_refused_and_starts_nothing(
    app: tuple[TestClient, LocalRuntime], body: str, ctype: str, status: int
) -> None:
    client, rt = app
    r = client.post("/v1/workflows", content=body, headers={**AUTH, "Content-Type": ctype})
    assert r.status_code == status, r.text
    assert rt.store.list_agents() == []


def test_a_workflow_whose_task_is_refused_leaves_no_agent_behind(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    rt.store.set_quotas(TENANT, Quotas(max_running_tasks=0))
    r = client.post(
        "/v1/workflows", content=WORKFLOW, headers={**AUTH, "Content-Type": "text/yaml"}
    )
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded", r.text
    assert [a.status.value for a in rt.store.list_agents(TENANT)] == ["stopped"]
    assert rt.agents == {}
