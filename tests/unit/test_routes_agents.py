"""Agent routes on an in-process runtime (real records, no Ray, no Docker): create, read,
list, tree, hire, fire, and their errors (401, 404 across tenants, 409, 422, 429 quota)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from orchestrator.domain import AgentStatus
from orchestrator.records import SQLiteStore
from orchestrator.tenants import Quotas
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, OTHER, TENANT, api


@pytest.fixture
def app(store: SQLiteStore) -> Iterator[tuple[TestClient, LocalRuntime]]:
    with api(store) as both:
        yield both


def _code(r: object) -> str:
    code: str = r.json()["error"]["code"]  # type: ignore[attr-defined]
    return code


def test_create_read_and_list_agents_of_the_callers_tenant(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    r = client.post("/v1/agents", json={"name": "alice", "role": "tester"}, headers=AUTH)
    assert r.status_code == 201, r.text
    alice = r.json()
    assert alice["path"] == f"{TENANT}/alice" and alice["status"] == "idle"
    assert rt.store.get_agent(alice["id"]) is not None  # recorded, not just answered
    assert client.get(f"/v1/agents/{alice['id']}", headers=AUTH).json()["id"] == alice["id"]
    assert [a["id"] for a in client.get("/v1/agents", headers=AUTH).json()] == [alice["id"]]
    # another tenant sees nothing of it: not in its list, 404 (never 403) by id
    assert client.get("/v1/agents", headers=OTHER).json() == []
    r = client.get(f"/v1/agents/{alice['id']}", headers=OTHER)
    assert r.status_code == 404 and _code(r) == "not_found"


def test_a_second_agent_of_the_same_name_is_409(app: tuple[TestClient, LocalRuntime]) -> None:
    client, _ = app
    assert client.post("/v1/agents", json={"name": "bob"}, headers=AUTH).status_code == 201
    r = client.post("/v1/agents", json={"name": "bob"}, headers=AUTH)
    assert r.status_code == 409 and "exists already" in r.json()["error"]["message"]
    # the same name in another tenant is another agent
    assert client.post("/v1/agents", json={"name": "bob"}, headers=OTHER).status_code == 201


def test_hire_tree_and_fire(app: tuple[TestClient, LocalRuntime]) -> None:
    client, rt = app
    boss = client.post("/v1/agents", json={"name": "boss"}, headers=AUTH).json()
    r = client.post(f"/v1/agents/{boss['id']}/children", json={"name": "dev"}, headers=AUTH)
    assert r.status_code == 201, r.text
    dev = r.json()
    assert dev["parent_id"] == boss["id"] and dev["path"] == f"{TENANT}/boss/dev"
    dup = client.post(f"/v1/agents/{boss['id']}/children", json={"name": "dev"}, headers=AUTH)
    assert dup.status_code == 409
    tree = client.get(f"/v1/agents/{boss['id']}/tree", headers=AUTH).json()
    assert tree["agent"]["id"] == boss["id"]
    assert [c["agent"]["id"] for c in tree["children"]] == [dev["id"]]
    # another tenant can neither see the tree nor hire under the agent nor fire it
    assert client.get(f"/v1/agents/{boss['id']}/tree", headers=OTHER).status_code == 404
    r = client.post(f"/v1/agents/{boss['id']}/children", json={"name": "x"}, headers=OTHER)
    assert r.status_code == 404
    assert client.delete(f"/v1/agents/{boss['id']}", headers=OTHER).status_code == 404
    # firing the boss stops its subtree, in the records too
    r = client.delete(f"/v1/agents/{boss['id']}", headers=AUTH)
    assert r.status_code == 204 and r.content == b""
    for agent_id in (boss["id"], dev["id"]):
        stored = rt.store.get_agent(agent_id)
        assert stored is not None and stored.status == AgentStatus.STOPPED
    # a stopped agent is still readable, but its desktop's routes are 404
    got = client.get(f"/v1/agents/{boss['id']}", headers=AUTH).json()
    assert got["status"] == "stopped"
    assert client.get(f"/v1/agents/{boss['id']}/tree", headers=AUTH).status_code == 404


def test_the_tenants_agent_quota_is_429_quota_exceeded(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    rt.store.set_quotas(TENANT, Quotas(max_agents=1))
    assert client.post("/v1/agents", json={"name": "one"}, headers=AUTH).status_code == 201
    r = client.post("/v1/agents", json={"name": "two"}, headers=AUTH)
    assert r.status_code == 429 and _code(r) == "quota_exceeded", r.text
    assert "max_agents" in r.json()["error"]["message"] and "Retry-After" not in r.headers
    assert client.post("/v1/agents", json={"name": "two"}, headers=OTHER).status_code == 201


@pytest.mark.parametrize(
    "body",
    [{"name": ""}, {"name": "a b/c"}, {"name": "ok", "unknown": 1}, {"role": "x"}],
    ids=["empty-name", "bad-name", "extra-field", "no-name"],
)
def test_an_invalid_spec_is_422_and_nothing_is_created(
    app: tuple[TestClient, LocalRuntime], body: dict[str, object]
) -> None:
    client, rt = app
    r = client.post("/v1/agents", json=body, headers=AUTH)
    assert r.status_code == 422 and _code(r) == "invalid_request", r.text
    assert "create_agent" not in rt.calls and rt.store.list_agents() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/agents"),
        ("POST", "/v1/agents"),
        ("GET", "/v1/agents/agent-x"),
        ("DELETE", "/v1/agents/agent-x"),
        ("GET", "/v1/agents/agent-x/tree"),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key-1234567"])
def test_without_a_valid_key_it_is_401_and_the_runtime_is_not_called(
    app: tuple[TestClient, LocalRuntime], method: str, path: str, auth: str | None
) -> None:
    client, rt = app
    headers = {} if auth is None else {"Authorization": auth}
    r = client.request(method, path, json={"name": "a"}, headers=headers)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert rt.calls == []


def test_a_brain_on_a_model_api_the_cluster_refuses_is_422_before_anything_starts(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    spec = {"name": "a", "brain": {"kind": "openai", "base_url": "http://169.254.169.254/v1"}}
    r = client.post("/v1/agents", json=spec, headers=AUTH)
    assert r.status_code == 422 and "base_url" in r.json()["error"]["message"], r.text
    assert rt.calls == []
