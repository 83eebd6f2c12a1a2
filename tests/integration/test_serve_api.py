"""The HTTP API through real HTTP: a Ray Serve deployment on 127.0.0.1 inside the session's
Ray cluster, real agents with real desktops, two tenants with their own API keys.

Serve starts once for the module (it takes seconds on a small machine) and is shut down at
the end, so that other modules' use of the session cluster is unaffected.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")

TENANT_A = "t-serve-api-a"
TENANT_B = "t-serve-api-b"
ECHO = {"steps": [{"type": "shell", "command": "echo hello-from-serve"}]}


def until(probe: Callable[[], T], *, timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (AssertionError, httpx.TransportError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s; last: {last!r}")
        time.sleep(interval_s)  # polling interval of a deadline-bound wait


def _error(r: httpx.Response, status: int, code: str | None = None) -> str:
    """Assert the one error shape; returns the message."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message
    return message


@dataclass
class Api:
    url: str
    image: str
    keys: dict[str, str]

    def client(self, tenant: str | None = None, key: str | None = None) -> httpx.Client:
        headers = {}
        if key is None and tenant is not None:
            key = self.keys[tenant]
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "role": "tester", "desktop": {"image": self.image}}

    @contextlib.contextmanager
    def agent(self, name: str, tenant: str = TENANT_A) -> Iterator[dict[str, Any]]:
        """A top-level agent created through the API, fired at the end."""
        with self.client(tenant) as c:
            r = c.post("/v1/agents", json=self.spec(name))
            assert r.status_code == 201, r.text
            info: dict[str, Any] = r.json()
            try:
                yield info
            finally:
                c.delete(f"/v1/agents/{info['id']}")


def _containers(path: str) -> list[dict[str, Any]]:
    from orchestrator._docker import client

    found = client().api.containers(all=True, filters={"label": "orchestrator.desktop"})
    return [
        c
        for c in found
        if (p := c["Labels"].get("orchestrator.path", "")) == path or p.startswith(path + "/")
    ]


@pytest.fixture(scope="module")
def api(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from ray import serve

    from serve_app import deploy

    keys = {TENANT_A: secrets.token_urlsafe(24), TENANT_B: secrets.token_urlsafe(24)}
    keys_file: Path = tmp_path_factory.mktemp("serve") / "api-keys"
    digest_a = hashlib.sha256(keys[TENANT_A].encode()).hexdigest()
    keys_file.write_text(
        f"# tenant A stored as a hash, tenant B in clear\n"
        f"{TENANT_A}:sha256:{digest_a}\n{TENANT_B}:{keys[TENANT_B]}\n"
    )
    url = deploy(port=free_port(), keys_file=str(keys_file))
    try:
        with httpx.Client(base_url=url, timeout=5) as c:
            until(lambda: c.get("/healthz").status_code == 200, timeout_s=60, what="/healthz")
        yield Api(url=url, image=ray_session.image, keys=keys)
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def agent_a(api: Api) -> Iterator[dict[str, Any]]:
    """A top-level agent of tenant A, created through the API."""
    with api.agent("desk") as info:
        yield info


# ---------------------------------------------------------------------- auth


def test_health_and_docs_need_no_key(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/docs").status_code == 200
        assert "/v1/agents/{agent_id}/screenshot" in c.get("/openapi.json").json()["paths"]


def test_every_route_answers_401_without_a_valid_key(api: Api) -> None:
    with api.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    routes = [
        (method.upper(), re.sub(r"\{[^}]+\}", "agent-0000000000", path))
        for path, ops in paths.items()
        if path.startswith("/v1/")
        for method in ops
    ]
    assert len(routes) >= 13, routes  # every /v1 route, however many there are
    for key in (None, "not-a-key", api.keys[TENANT_A] + "x"):
        with api.client(key=key) as c:
            for method, path in routes:
                r = c.request(method, path, json={"name": "x"})
                _error(r, 401, "unauthorized")
                assert r.headers["WWW-Authenticate"] == "Bearer", (method, path)
                assert api.keys[TENANT_A] not in r.text


# ---------------------------------------------------------------------- agents


def test_create_agent_appears_in_its_tenants_list_only(api: Api, agent_a: dict[str, Any]) -> None:
    assert agent_a["tenant"] == TENANT_A and agent_a["path"] == f"{TENANT_A}/desk"
    assert agent_a["status"] == "idle"
    with api.client(TENANT_A) as a, api.client(TENANT_B) as b:
        assert agent_a["id"] in [x["id"] for x in a.get("/v1/agents").json()]
        assert a.get(f"/v1/agents/{agent_a['id']}").json()["id"] == agent_a["id"]
        tree = a.get(f"/v1/agents/{agent_a['id']}/tree").json()
        assert tree["agent"]["id"] == agent_a["id"] and tree["children"] == []
        assert agent_a["id"] not in [x["id"] for x in b.get("/v1/agents").json()]
        # the same name again is a conflict, not a crash
        msg = _error(a.post("/v1/agents", json=api.spec("desk")), 409, "conflict")
        assert "exists already" in msg


def test_other_tenant_gets_404_for_the_agent(api: Api, agent_a: dict[str, Any]) -> None:
    aid = agent_a["id"]
    with api.client(TENANT_B) as b:
        for method, path, body in [
            ("GET", f"/v1/agents/{aid}", None),
            ("GET", f"/v1/agents/{aid}/tree", None),
            ("GET", f"/v1/agents/{aid}/screenshot", None),
            ("POST", f"/v1/agents/{aid}/tasks", {"description": "steal", "script": ECHO}),
            ("POST", f"/v1/agents/{aid}/actions", {"type": "click", "x": 1, "y": 1}),
            ("POST", f"/v1/agents/{aid}/shell", {"command": "id"}),
            ("POST", f"/v1/agents/{aid}/children", api.spec("spy")),
            ("DELETE", f"/v1/agents/{aid}", None),
        ]:
            r = b.request(method, path, json=body)
            assert _error(r, 404, "not_found") == f"no agent {aid}", (method, path)
    with api.client(TENANT_A) as a:  # and it is still there
        assert a.get(f"/v1/agents/{aid}").status_code == 200


# ---------------------------------------------------------------------- tasks


def test_scripted_task_runs_and_its_events_page(api: Api, agent_a: dict[str, Any]) -> None:
    with api.client(TENANT_A) as a, api.client(TENANT_B) as b:
        r = a.post(
            f"/v1/agents/{agent_a['id']}/tasks", json={"description": "echo", "script": ECHO}
        )
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["agent_id"] == agent_a["id"] and task["state"] in ("pending", "running")
        tid = task["id"]

        def done() -> dict[str, Any] | None:
            t: dict[str, Any] = a.get(f"/v1/tasks/{tid}").json()
            return t if t["state"] in ("succeeded", "failed", "cancelled") else None

        final = until(done, timeout_s=30, what="task done")
        assert final["state"] == "succeeded", final
        assert final["result"] == "hello-from-serve"

        # another tenant sees none of it
        for method, path in [
            ("GET", f"/v1/tasks/{tid}"),
            ("GET", f"/v1/tasks/{tid}/events"),
            ("POST", f"/v1/tasks/{tid}/cancel"),
        ]:
            _error(b.request(method, path), 404, "not_found")

        # events, two at a time, following the cursor
        seen: list[dict[str, Any]] = []
        cursor = 0
        for _ in range(50):
            page = a.get(f"/v1/tasks/{tid}/events", params={"after_seq": cursor, "limit": 2})
            assert page.status_code == 200, page.text
            body = page.json()
            assert len(body["events"]) <= 2
            seen += body["events"]
            assert body["next_after_seq"] >= cursor
            cursor = body["next_after_seq"]
            if not body["has_more"]:
                break
        seqs = [e["seq"] for e in seen]
        assert seqs == sorted(set(seqs)) and all(e["task_id"] == tid for e in seen)
        states = [e["data"]["state"] for e in seen if e["kind"] == "task"]
        assert states[0] == "pending" and states[-1] == "succeeded", states
        assert any(e["kind"] == "step" for e in seen)
        # past the end: an empty page that keeps the cursor
        last = a.get(f"/v1/tasks/{tid}/events", params={"after_seq": cursor}).json()
        assert last == {"events": [], "next_after_seq": cursor, "has_more": False}
        # cancelling a finished task leaves it as it was
        assert a.post(f"/v1/tasks/{tid}/cancel").json()["state"] == "succeeded"


# ---------------------------------------------------------------------- the desktop


def test_screenshot_is_a_png_of_the_screen(api: Api, agent_a: dict[str, Any]) -> None:
    with api.client(TENANT_A) as a:
        r = a.get(f"/v1/agents/{agent_a['id']}/screenshot")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        png = r.content
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        assert struct.unpack(">II", png[16:24]) == (1280, 800)
        r = a.get(f"/v1/agents/{agent_a['id']}/screenshot", params={"format": "jpeg"})
        assert r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
        _error(a.get(f"/v1/agents/{agent_a['id']}/screenshot", params={"format": "gif"}), 422)


def test_actions_and_shell(api: Api, agent_a: dict[str, Any]) -> None:
    aid = agent_a["id"]
    with api.client(TENANT_A) as a:
        r = a.post(f"/v1/agents/{aid}/actions", json={"type": "click", "x": 100, "y": 100})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True and r.json()["cursor"] == {"x": 100, "y": 100}
        r = a.post(f"/v1/agents/{aid}/actions", json={"type": "click", "x": 5000, "y": 10})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is False
        assert r.json()["error"] == "x=5000 is outside the screen (0..1279)"
        r = a.post(f"/v1/agents/{aid}/shell", json={"command": "echo out; echo err >&2; exit 3"})
        assert r.status_code == 200, r.text
        res = r.json()
        assert (res["exit_code"], res["stdout"], res["stderr"]) == (3, "out\n", "err\n")
        r = a.post(f"/v1/agents/{aid}/shell", json={"command": "id -un", "user": "root"})
        assert r.json()["stdout"].strip() == "root"


# ---------------------------------------------------------------------- bad input


def test_bad_input_gets_clear_4xx(api: Api, agent_a: dict[str, Any]) -> None:
    aid = agent_a["id"]
    json_ct = {"Content-Type": "application/json"}
    with api.client(TENANT_A) as a:
        r = a.post(f"/v1/agents/{aid}/actions", content=b'{"type": "click",', headers=json_ct)
        assert "malformed JSON" in _error(r, 422, "invalid_request")
        r = a.post(f"/v1/agents/{aid}/actions", content=b"click", headers={})
        assert "JSON" in _error(r, 422, "invalid_request")
        r = a.post(f"/v1/agents/{aid}/actions", json={"type": "teleport", "x": 1})
        assert "'teleport'" in _error(r, 422, "invalid_request")
        r = a.post(f"/v1/agents/{aid}/actions", json={"type": "click", "x": "left"})
        msg = _error(r, 422, "invalid_request")
        assert "'click.x'" in msg and "'click.y'" in msg, msg
        r = a.post("/v1/agents", json={"name": "no spaces allowed"})
        assert "body field 'name'" in _error(r, 422, "invalid_request")
        r = a.post(f"/v1/agents/{aid}/shell", json={"command": "true", "timeout_s": -1})
        assert "'timeout_s'" in _error(r, 422, "invalid_request")
        r = a.get("/v1/tasks/task-0000000000/events", params={"limit": 0})
        assert "query field 'limit'" in _error(r, 422, "invalid_request")
        # over the limit: by Content-Length, and while reading a chunked body
        big = b'{"command": "' + b"x" * (1 << 20) + b'"}'
        _error(a.post(f"/v1/agents/{aid}/shell", content=big, headers=json_ct), 413)
        chunks = (b"x" * 65536 for _ in range(20))
        r = a.post(f"/v1/agents/{aid}/shell", content=chunks, headers=json_ct)
        _error(r, 413, "body_too_large")
        # unknown ids
        assert _error(a.get("/v1/agents/agent-0000000000"), 404) == "no agent agent-0000000000"
        _error(a.get("/v1/agents/agent-0000000000/screenshot"), 404, "not_found")
        _error(a.get("/v1/tasks/task-0000000000"), 404, "not_found")
        _error(a.get("/v1/nothing-here"), 404, "not_found")


# ---------------------------------------------------------------------- hire and fire


def test_hire_then_fire_child_and_agent(api: Api, agent_a: dict[str, Any]) -> None:
    aid, path = agent_a["id"], agent_a["path"]
    with api.client(TENANT_A) as a:
        r = a.post(f"/v1/agents/{aid}/children", json=api.spec("helper"))
        assert r.status_code == 201, r.text
        child = r.json()
        assert child["parent_id"] == aid and child["path"] == f"{path}/helper"
        tree = a.get(f"/v1/agents/{aid}/tree").json()
        assert [c["agent"]["id"] for c in tree["children"]] == [child["id"]]
        assert len(_containers(child["path"])) == 1

        assert a.delete(f"/v1/agents/{child['id']}").status_code == 204
        until(lambda: not _containers(child["path"]), timeout_s=30, what="child desktop gone")
        assert a.get(f"/v1/agents/{aid}/tree").json()["children"] == []

        r = a.delete(f"/v1/agents/{aid}")
        assert r.status_code == 204 and r.content == b""
        until(lambda: not _containers(path), timeout_s=30, what="desktop gone")
        assert a.get(f"/v1/agents/{aid}").json()["status"] == "stopped"
        _error(a.get(f"/v1/agents/{aid}/screenshot"), 404, "not_found")
        _error(a.delete(f"/v1/agents/{aid}"), 404, "not_found")


# ---------------------------------------------------------------------- key configuration


def test_key_configuration_keeps_only_hashes_and_never_echoes_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.errors import ConfigError
    from serve_app import KeyStore

    secret = "correct-horse-battery"
    digest = hashlib.sha256(b"file-key-123").hexdigest()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# comment\n\nt-file:sha256:{digest}\n")
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS", f"t-env:{secret}, t-env2:another-key-1")
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS_FILE", str(keys_file))
    store = KeyStore.from_env()
    assert store.tenants == {"t-env", "t-env2", "t-file"}
    assert store.tenant_for(secret) == "t-env"
    assert store.tenant_for("file-key-123") == "t-file"
    assert store.tenant_for(secret[:-1]) is None and store.tenant_for("") is None
    assert secret not in repr(vars(store))  # only digests are kept

    for bad in ["no-colon-key-here", "t-x:short", "t-x:sha256:abc", "bad tenant:long-enough-key"]:
        with pytest.raises(ConfigError) as err:
            KeyStore.parse(bad)
        assert bad.rpartition(":")[2] not in str(err.value) or "sha256" in bad
    missing = tmp_path / "missing"
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS_FILE", str(missing))
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        KeyStore.from_env()


def test_a_desktop_docker_refuses_is_422_not_503(api: Api) -> None:
    with api.client(TENANT_A) as a:
        spec = api.spec("too-big")
        spec["desktop"]["cpus"] = 64
        r = a.post("/v1/agents", json=spec)
        # refused before Docker sees it, naming the field and the node's maximum
        msg = _error(r, 422, "invalid_request")
        assert msg.startswith("desktop.cpus: 64 is over the maximum") or "CPUs" in msg, msg
        assert "Retry-After" not in r.headers
        spec = api.spec("no-image")
        spec["desktop"]["image"] = "orchestrator-desktop:not-built"
        assert "image build" in _error(a.post("/v1/agents", json=spec), 422, "invalid_request")
        # the names are free again: nothing of the failed starts is left running
        names = [x["path"] for x in a.get("/v1/agents").json() if x["status"] != "failed"]
        assert f"{TENANT_A}/too-big" not in names and f"{TENANT_A}/no-image" not in names
