"""Desktop and file routes on an in-process runtime (no Ray, no Docker): each agent's desktop
is a ``MemoryDesktop`` test double, so these check what the routes do with its answers and its
refusals (the desktop itself is tested on real containers in tests/integration)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator import actions as a
from orchestrator.records import SQLiteStore
from tests.fakes.runtime import PNG_1X1, LocalRuntime
from tests.fakes.runtime_app import AUTH, OTHER, api


@pytest.fixture
def app(store: SQLiteStore) -> Iterator[tuple[TestClient, LocalRuntime]]:
    with api(store) as both:
        yield both


@pytest.fixture
def agent(app: tuple[TestClient, LocalRuntime]) -> dict[str, Any]:
    r = app[0].post("/v1/agents", json={"name": "desk"}, headers=AUTH)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def test_screenshot_action_shell_and_live_view(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, rt = app
    base = f"/v1/agents/{agent['id']}"
    r = client.get(f"{base}/screenshot", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == PNG_1X1
    r = client.post(f"{base}/actions", json={"type": "click", "x": 5, "y": 6}, headers=AUTH)
    assert r.status_code == 200 and r.json()["ok"] is True
    desktop = rt.agents[agent["id"]].desktop
    assert desktop.actions == [a.Click(x=5, y=6)]
    desktop.shell_script["echo hi"] = a.CommandResult(exit_code=0, stdout="hi\n", stderr="")
    r = client.post(f"{base}/shell", json={"command": "echo hi", "user": "root"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["stdout"] == "hi\n"
    assert desktop.commands == [("echo hi", 60.0, "root")]
    r = client.get(f"{base}/live-view", headers=AUTH)
    assert r.status_code == 200 and r.json()["url"].startswith("http://127.0.0.1:")
    assert r.headers["Cache-Control"] == "no-store"


def test_bad_desktop_requests_are_422_before_the_runtime(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, rt = app
    base = f"/v1/agents/{agent['id']}"
    calls = list(rt.calls)
    cases: list[tuple[str, str, dict[str, object] | None, dict[str, str | int]]] = [
        ("POST", "actions", {"type": "teleport"}, {}),
        ("POST", "shell", {"command": "ls", "timeout_s": 0}, {}),
        ("GET", "screenshot", None, {"quality": 0}),
        ("GET", "screenshot", None, {"format": "gif"}),
    ]
    for method, path, body, params in cases:
        r = client.request(method, f"{base}/{path}", json=body, params=params, headers=AUTH)
        assert r.status_code == 422, (path, r.text)
    assert rt.calls == calls


def test_another_tenants_or_a_fired_agents_desktop_is_404(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, _ = app
    base = f"/v1/agents/{agent['id']}"
    for headers in (OTHER, AUTH):
        for method, path in [
            ("GET", "screenshot"),
            ("GET", "live-view"),
            ("POST", "desktop/reset"),
            ("GET", "files?path=/etc/hostname"),
            ("PUT", "files?path=x"),
        ]:
            r = client.request(method, f"{base}/{path}", headers=headers, content=b"x")
            assert r.status_code == 404, (path, r.text)
        client.delete(base, headers=AUTH)  # then the owner's own requests: not running


def test_upload_then_download_a_file_and_a_directory(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, rt = app
    files = f"/v1/agents/{agent['id']}/files"
    r = client.put(files, params={"path": "out/report.txt"}, content=b"hello", headers=AUTH)
    assert r.status_code == 201 and r.json() == {"path": "out/report.txt", "size": 5}
    assert rt.agents[agent["id"]].desktop.files == {"/home/agent/out/report.txt": b"hello"}
    r = client.get(files, params={"path": "/home/agent/out/report.txt"}, headers=AUTH)
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["X-Orchestrator-Kind"] == "file"
    assert r.headers["content-type"].startswith("text/plain")
    assert 'filename="report.txt"' in r.headers["Content-Disposition"]
    r = client.get(files, params={"path": "out"}, headers=AUTH)
    assert r.status_code == 200 and r.headers["X-Orchestrator-Kind"] == "directory"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(r.content))) as tar:
        assert tar.getnames() == ["report.txt"]


def test_the_desktops_refusals_answer_404_422_and_409(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, _ = app
    files = f"/v1/agents/{agent['id']}/files"
    r = client.get(files, params={"path": "/nope"}, headers=AUTH)
    assert r.status_code == 404 and "no such file" in r.json()["error"]["message"]
    client.put(files, params={"path": "/d/f"}, content=b"1", headers=AUTH)
    r = client.put(files, params={"path": "/d"}, content=b"2", headers=AUTH)  # a directory
    assert r.status_code == 422 and "path" in r.json()["error"]["message"], r.text
    r = client.get(files, params={"path": ""}, headers=AUTH)
    assert r.status_code == 422


def test_reset_desktop_and_409_while_a_task_runs(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, rt = app
    base = f"/v1/agents/{agent['id']}"
    client.put(f"{base}/files", params={"path": "/tmp/x"}, content=b"1", headers=AUTH)
    r = client.post(f"{base}/desktop/reset", headers=AUTH)
    assert r.status_code == 200 and r.json()["id"] == agent["id"]
    assert rt.agents[agent["id"]].desktop.files == {}  # a new desktop
    client.post(f"{base}/tasks", json={"description": "busy"}, headers=AUTH)
    r = client.post(f"{base}/desktop/reset", headers=AUTH)
    assert r.status_code == 409 and "cancel it first" in r.json()["error"]["message"]


def test_artifacts_of_a_finished_task(
    app: tuple[TestClient, LocalRuntime], agent: dict[str, Any]
) -> None:
    client, rt = app
    r = client.post(f"/v1/agents/{agent['id']}/tasks", json={"description": "d"}, headers=AUTH)
    task = r.json()
    rt.finish(task["id"], "the answer")
    r = client.get(f"/v1/tasks/{task['id']}/artifacts", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = z.namelist()
        assert "manifest.json" in names, names
        assert any(b"the answer" in z.read(n) for n in names)
