"""Console sign-in: the cookie's attributes, the Origin rule, sign-out, expiry, tenants.

Through the real API app (FastAPI's TestClient) on an in-process runtime over a real record
store; nothing is started.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrator.domain import AgentSpec
from orchestrator.records import ConsoleSession, SQLiteStore
from serve_app._cookie import COOKIE, HOST_COOKIE, new_token, same_origin, session_id
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, KEY, OTHER_KEY, TENANT, api

ORIGIN = {"Origin": "http://testserver"}
"""The API's own origin as the TestClient reaches it."""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, LocalRuntime]]:
    with SQLiteStore(tmp_path) as store, api(store) as (client, rt):
        yield client, rt


def _set_cookie(r: object) -> SimpleCookie:
    header = r.headers.get("set-cookie")  # type: ignore[attr-defined]
    assert header, "no Set-Cookie"
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar


def _sign_in(client: TestClient, key: str = KEY, **headers: str) -> str:
    r = client.post("/v1/session", json={"key": key}, headers={**ORIGIN, **headers})
    assert r.status_code == 200, r.text
    return _set_cookie(r)[COOKIE].value


def test_sign_in_sets_an_httponly_strict_cookie_of_at_most_12_hours(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    before = time.time()
    r = client.post("/v1/session", json={"key": KEY}, headers=ORIGIN)
    assert r.status_code == 200
    body = r.json()
    assert body["tenant"] == TENANT
    assert before + 43_200 - 5 <= body["expires_at"] <= time.time() + 43_200
    raw = r.headers["set-cookie"].lower()
    cookie = _set_cookie(r)[COOKIE]
    assert cookie["httponly"] and cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/" and 43_195 <= int(cookie["max-age"]) <= 43_200
    assert not cookie["secure"] and "secure" not in raw.replace("; httponly", "")
    token = cookie.value
    assert len(token) >= 43 and KEY not in r.headers["set-cookie"]
    # only the token's digest is recorded, with the tenant and the key's digest
    stored = rt.store.session(session_id(token))
    assert stored is not None and stored.tenant == TENANT and stored.ended_at is None
    assert stored.key_digest == hashlib.sha256(KEY.encode()).hexdigest()
    db = b"".join(p.read_bytes() for p in Path(rt.store.data_dir).glob("records.sqlite3*"))  # type: ignore[attr-defined]
    assert token.encode() not in db and KEY.encode() not in db


def test_the_cookie_is_secure_when_the_request_came_over_https(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, _ = app
    r = client.post(
        "/v1/session",
        json={"key": KEY},
        headers={"Origin": "https://testserver", "X-Forwarded-Proto": "https"},
    )
    assert r.status_code == 200, r.text
    assert _set_cookie(r)[HOST_COOKIE]["secure"]  # named __Host- over https


def test_a_bad_key_gets_401_and_no_cookie(app: tuple[TestClient, LocalRuntime]) -> None:
    client, _ = app
    r = client.post("/v1/session", json={"key": "not-a-key-at-all"}, headers=ORIGIN)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert "set-cookie" not in r.headers
    assert "not-a-key" not in r.text


def test_sign_in_without_a_key_is_401(app: tuple[TestClient, LocalRuntime]) -> None:
    client, _ = app
    for body in ({}, {"name": "x"}, {"key": ""}, {"key": None}):
        r = client.post("/v1/session", json=body, headers=ORIGIN)
        assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
        assert "set-cookie" not in r.headers
    # a body it cannot read is 401 too (as on every route without credentials), and 422
    # once the caller is known
    json_ct = {"Content-Type": "application/json"}
    for content in (b'{"key": ', b"[1, 2]", b'{"key": 5}', b'"key"'):
        r = client.post("/v1/session", content=content, headers=json_ct)
        assert r.status_code == 401, (content, r.text)
        r = client.post("/v1/session", content=content, headers={**json_ct, **AUTH})
        assert r.status_code == 422, (content, r.text)
    # a bearer header is no sign-in: the key goes in the body
    r = client.post("/v1/session", json={}, headers={**ORIGIN, **AUTH})
    assert r.status_code == 401


def test_sign_in_from_another_origin_is_403(app: tuple[TestClient, LocalRuntime]) -> None:
    client, _ = app
    r = client.post("/v1/session", json={"key": KEY}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert "set-cookie" not in r.headers
    # without Origin (curl, a script) it is allowed
    assert client.post("/v1/session", json={"key": KEY}).status_code == 200


def test_the_cookie_works_on_the_api_and_state_changes_need_the_own_origin(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, _ = app
    token = _sign_in(client)
    client.cookies.clear()
    client.cookies.set(COOKIE, token)
    r = client.get("/v1/agents")
    assert r.status_code == 200 and r.json() == []
    spec = {"name": "alice"}
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        r = client.post("/v1/agents", json=spec, headers=headers)
        assert r.status_code == 403, headers
        assert r.json()["error"]["code"] == "forbidden"
    r = client.post("/v1/agents", json=spec, headers=ORIGIN)
    assert r.status_code == 201, r.text
    assert r.json()["tenant"] == TENANT
    # a malformed body from a signed-in console is 422 (authenticated first), from
    # elsewhere 403
    bad = b'{"name": '
    headers = {"Content-Type": "application/json"}
    assert client.post("/v1/agents", headers={**headers, **ORIGIN}, content=bad).status_code == 422
    assert client.post("/v1/agents", headers=headers, content=bad).status_code == 403
    # bearer requests are as before: no Origin needed
    assert client.post("/v1/agents", json={"name": "bob"}, headers=AUTH).status_code == 201


def test_session_info_and_sign_out(app: tuple[TestClient, LocalRuntime]) -> None:
    client, rt = app
    token = _sign_in(client)
    client.cookies.clear()
    client.cookies.set(COOKIE, token)
    info = client.get("/v1/session").json()
    assert info["tenant"] == TENANT and info["holder"] == f"session:{session_id(token)[:12]}"
    assert info["expires_at"] > time.time() + 43_000
    keyed = client.get("/v1/session", headers=AUTH).json()
    assert keyed["expires_at"] is None and keyed["holder"].startswith("key:")
    assert (
        client.get("/v1/session", headers={"Authorization": "Bearer nope-nope"}).status_code == 401
    )
    # signing out from another origin is refused, and changes nothing
    assert client.delete("/v1/session").status_code == 403
    assert client.get("/v1/agents").status_code == 200
    r = client.delete("/v1/session", headers=ORIGIN)
    assert r.status_code == 204
    cleared = _set_cookie(r)[COOKIE]
    assert cleared.value in ("", '""') and int(cleared["max-age"]) == 0
    ended = rt.store.session(session_id(token))
    assert ended is not None and ended.ended_at is not None
    client.cookies.set(COOKIE, token)  # a copy kept (stolen) is refused
    r = client.get("/v1/agents")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert "session" in r.json()["error"]["message"]
    assert client.delete("/v1/session", headers=ORIGIN).status_code == 204  # again: fine
    client.cookies.clear()
    assert client.delete("/v1/session", headers=ORIGIN).status_code == 401  # no cookie


def test_an_expired_or_unknown_session_is_401(app: tuple[TestClient, LocalRuntime]) -> None:
    client, rt = app
    token = new_token()
    now = time.time()
    rt.store.add_session(
        ConsoleSession(
            id=session_id(token),
            tenant=TENANT,
            key_digest=hashlib.sha256(KEY.encode()).hexdigest(),
            created_at=now - 100,
            expires_at=now - 1,
        )
    )
    for cookie in (token, new_token(), "not a token!"):
        client.cookies.set(COOKIE, cookie)
        assert client.get("/v1/agents").status_code == 401


def test_a_session_of_a_key_no_longer_configured_is_401(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    token = new_token()
    now = time.time()
    rt.store.add_session(
        ConsoleSession(
            id=session_id(token),
            tenant=TENANT,
            key_digest=hashlib.sha256(b"a key removed from the config").hexdigest(),
            created_at=now,
            expires_at=now + 600,
        )
    )
    client.cookies.set(COOKIE, token)
    assert client.get("/v1/agents").status_code == 401


def test_another_tenants_cookie_sees_nothing_of_the_first(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    import asyncio

    agent = asyncio.run(rt.create_agent(TENANT, AgentSpec(name="alice")))
    theirs = _sign_in(client, OTHER_KEY)
    client.cookies.clear()
    client.cookies.set(COOKIE, theirs)
    assert client.get("/v1/agents").json() == []
    assert client.get(f"/v1/agents/{agent.id}").status_code == 404
    r = client.post(f"/v1/agents/{agent.id}/tickets", json={"mode": "view"}, headers=ORIGIN)
    assert r.status_code == 404
    r = client.delete(f"/v1/agents/{agent.id}", headers=ORIGIN)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "same"),
    [
        ("http://127.0.0.1:8000", "http", "127.0.0.1:8000", True),
        ("HTTP://LocalHost:8000", "http", "localhost:8000", True),
        ("http://example.org", "http", "example.org:80", True),
        ("https://example.org:443", "https", "example.org", True),
        ("http://[::1]:8000", "http", "[::1]:8000", True),
        ("http://example.org/", "http", "example.org", True),
        ("https://example.org", "http", "example.org", False),
        ("http://example.org:8001", "http", "example.org:8000", False),
        ("http://example.org.evil.net", "http", "example.org", False),
        ("http://user@example.org", "http", "example.org", False),
        ("null", "http", "example.org", False),
        ("", "http", "example.org", False),
        ("http://example.org/path", "http", "example.org", False),
        ("http://example.org", "http", "", False),
    ],
)
def test_same_origin(origin: str, scheme: str, host: str, same: bool) -> None:
    assert same_origin(origin, scheme, host) is same
