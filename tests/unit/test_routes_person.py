"""A person's routes on an in-process runtime (real records, no Ray, no Docker): answer,
approve, reject, pause and resume a task (its subtree too), what a waiting task shows in
``GET /v1/tasks/{id}``, the screenshot it asked about, and the errors: 409 for a call that
does not fit the task's state, 404 for an unknown task or another tenant's, 422 for a body
out of its limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator import actions as a
from orchestrator.records import SQLiteStore
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, OTHER, api

App = tuple[TestClient, LocalRuntime]


@pytest.fixture
def app(store: SQLiteStore) -> Iterator[App]:
    with api(store) as both:
        yield both


def _agent(client: TestClient, name: str = "worker") -> str:
    r = client.post("/v1/agents", json={"name": name}, headers=AUTH)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _task(app: App, name: str = "worker") -> str:
    client, rt = app
    r = client.post(
        f"/v1/agents/{_agent(client, name)}/tasks", json={"description": "x"}, headers=AUTH
    )
    assert r.status_code == 202, r.text
    task_id = str(r.json()["id"])
    rt.run(task_id)
    return task_id


def _post(client: TestClient, task_id: str, what: str, body: Any = None, **kw: Any) -> Any:
    return client.post(f"/v1/tasks/{task_id}/{what}", json=body, headers=kw.get("headers", AUTH))


def _error(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return str(r.json()["error"]["message"])


def test_a_question_shows_in_the_task_and_is_answered(app: App) -> None:
    client, rt = app
    task_id = _task(app)
    blob = rt.store.put_blob(b"\xff\xd8 a jpeg", "image/jpeg")
    rt.ask(task_id, "Which port?", screenshot=blob)
    got = client.get(f"/v1/tasks/{task_id}", headers=AUTH).json()
    assert got["state"] == "input_required"
    assert got["waiting"] == {
        "question": "Which port?",
        "actions": [],
        "reason": None,
        "screenshot": blob,
    }
    shot = client.get(f"/v1/tasks/{task_id}/waiting/screenshot", headers=AUTH)
    assert shot.status_code == 200 and shot.content == b"\xff\xd8 a jpeg"
    assert shot.headers["content-type"] == "image/jpeg"
    _error(client.get(f"/v1/tasks/{task_id}/waiting/screenshot", headers=OTHER), 404, "not_found")

    r = _post(client, task_id, "answer", {"text": "8080"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "running" and r.json()["waiting"] is None
    assert rt.given == [(task_id, "answer", "8080")]
    # answered: it asks nothing any more
    msg = _error(_post(client, task_id, "answer", {"text": "again"}), 409, "conflict")
    assert msg == f"task {task_id} is not waiting for an answer (running)"
    _error(client.get(f"/v1/tasks/{task_id}/waiting/screenshot", headers=AUTH), 404, "not_found")


def test_approve_and_reject(app: App) -> None:
    client, rt = app
    task_id = _task(app)
    rm = a.Shell(command="rm -rf /srv/old")
    rt.await_approval(task_id, [rm], "deletes files")
    waiting = client.get(f"/v1/tasks/{task_id}", headers=AUTH).json()["waiting"]
    assert waiting["reason"] == "deletes files"
    assert [x["command"] for x in waiting["actions"]] == ["rm -rf /srv/old"]
    # an answer is not an approval
    _error(_post(client, task_id, "answer", {"text": "yes"}), 409, "conflict")
    r = client.post(f"/v1/tasks/{task_id}/approve", headers=AUTH)  # no body at all
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    _error(_post(client, task_id, "approve", {}), 409, "conflict")  # nothing to approve now

    rt.await_approval(task_id, [rm], "deletes files")
    r = _post(client, task_id, "reject", {"reason": "not on a Friday"})
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    assert rt.given == [(task_id, "approve", True), (task_id, "reject", "not on a Friday")]
    _error(_post(client, task_id, "reject", {"reason": "again"}), 409, "conflict")


def test_pause_and_resume_a_subtree(app: App) -> None:
    client, rt = app
    root = _task(app)
    helper = _agent(client, "helper")
    child = rt.subtask(root, helper)
    grandchild = rt.subtask(child.id, helper)
    ended = rt.subtask(root, helper)
    rt.finish(ended.id, "done")

    def states() -> list[str]:
        return [
            client.get(f"/v1/tasks/{t}", headers=AUTH).json()["state"]
            for t in (root, child.id, grandchild.id, ended.id)
        ]

    r = _post(client, root, "pause")  # no body: the subtree
    assert r.status_code == 200 and r.json()["state"] == "paused", r.text
    assert states() == ["paused", "paused", "paused", "succeeded"]
    assert _post(client, root, "pause", {"subtree": True}).status_code == 200  # idempotent
    r = _post(client, root, "resume", {"subtree": True})
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    assert states() == ["running", "running", "running", "succeeded"]
    _error(_post(client, root, "resume"), 409, "conflict")  # nothing of it is paused

    # the task alone
    assert _post(client, root, "pause", {"subtree": False}).status_code == 200
    assert states() == ["paused", "running", "running", "succeeded"]
    _error(_post(client, child.id, "resume", {"subtree": False}), 409, "conflict")
    assert _post(client, root, "resume", {"subtree": False}).status_code == 200
    assert states() == ["running", "running", "running", "succeeded"]
    # an ended task cannot be paused
    msg = _error(_post(client, ended.id, "pause"), 409, "conflict")
    assert "has ended (succeeded)" in msg


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("answer", {"text": "x"}),
        ("approve", {}),
        ("reject", {"reason": "no"}),
        ("pause", {"subtree": True}),
        ("resume", {"subtree": False}),
    ],
)
def test_unknown_or_another_tenants_task_is_404(app: App, what: str, body: Any) -> None:
    client, rt = app
    task_id = _task(app)
    rt.ask(task_id, "?")
    _error(_post(client, "task-nope", what, body), 404, "not_found")
    _error(_post(client, task_id, what, body, headers=OTHER), 404, "not_found")
    assert client.get(f"/v1/tasks/{task_id}", headers=AUTH).json()["state"] == "input_required"
    assert rt.given == []


@pytest.mark.parametrize(
    ("what", "body", "where"),
    [
        ("answer", {}, "text"),
        ("answer", {"text": ""}, "text"),
        ("answer", {"text": "x" * 20_001}, "text"),
        ("answer", {"text": "x", "more": 1}, "more"),
        ("reject", {}, "reason"),
        ("reject", {"reason": "x" * 4_001}, "reason"),
        ("approve", {"approved": False}, "approved"),
        ("pause", {"subtree": "maybe"}, "subtree"),
    ],
)
def test_bodies_out_of_limits_are_422(app: App, what: str, body: Any, where: str) -> None:
    client, rt = app
    task_id = _task(app)
    rt.ask(task_id, "?")
    msg = _error(_post(client, task_id, what, body), 422, "invalid_request")
    assert where in msg
    assert rt.given == []


def test_the_routes_are_documented(app: App) -> None:
    client, _ = app
    paths = client.get("/openapi.json").json()["paths"]
    for what in ("answer", "approve", "reject", "pause", "resume"):
        op = paths[f"/v1/tasks/{{task_id}}/{what}"]["post"]
        assert op["summary"] and op["description"], what
        assert {"404", "409", "422"} <= set(op["responses"]), what
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Answer"]["properties"]["text"]["maxLength"] == 20_000
    assert schemas["Rejection"]["properties"]["reason"]["maxLength"] == 4_000
    assert "waiting" in schemas["TaskInfo"]["properties"]
