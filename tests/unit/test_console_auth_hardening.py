"""The security review's console findings: the task stream ends on sign-out and revocation,
holder names reveal nothing of a key's sha256, made-up cookies cost bounded records reads,
the ``__Host-`` cookie, re-sign-in, ``Clear-Site-Data``, the environment's ticket secret,
and a tenant's share of the stream slots.

Through the real API app (FastAPI's TestClient) or its real pieces, on an in-process runtime
over a real record store; nothing is started.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from orchestrator.domain import AgentSpec, TaskSpec, new_id
from orchestrator.records import ConsoleSession, SQLiteStore
from orchestrator.tenants import ApiKey, digest, make_key
from serve_app import _auth, _stream
from serve_app._auth import ENV_TICKET_SECRET, Principal, key_principal
from serve_app._cookie import COOKIE, HOST_COOKIE, MISS_READS_BURST, SessionCache, session_id
from serve_app._limit import ENV_MAX_STREAMS
from serve_app._stream import END_REVOKED, VALID_CHECK_S, _event_stream, slot_stream
from serve_app._tickets import mint, redeem
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, KEY, TENANT, api

ORIGIN = {"Origin": "http://testserver"}
HTTPS = {"Origin": "https://testserver", "X-Forwarded-Proto": "https"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, LocalRuntime]]:
    with SQLiteStore(tmp_path) as store, api(store) as (client, rt):
        yield client, rt


def _sign_in(client: TestClient, headers: dict[str, str] = ORIGIN) -> str:
    r = client.post("/v1/session", json={"key": KEY}, headers=headers)
    assert r.status_code == 200, r.text
    jar: SimpleCookie = SimpleCookie()
    jar.load(r.headers["set-cookie"])
    name = HOST_COOKIE if headers is HTTPS else COOKIE
    return jar[name].value


def _pending_task(client: TestClient, rt: LocalRuntime) -> str:
    agent = asyncio.run(rt.create_agent(TENANT, AgentSpec(name="streamed")))
    r = client.post(f"/v1/agents/{agent.id}/tasks", json={"description": "wait"}, headers=AUTH)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _until_end(stream: object, deadline_s: float) -> tuple[list[str], float]:
    """Read ``stream`` (an async iterator of SSE chunks) until it ends; the chunks and when."""
    chunks: list[str] = []
    started = time.monotonic()

    async def read() -> None:
        async for chunk in stream:  # type: ignore[attr-defined]
            chunks.append(chunk)

    await asyncio.wait_for(read(), deadline_s)
    return chunks, time.monotonic() - started


# ---------------------------------------------------------------- 1: the task stream ends


def test_the_task_stream_ends_within_seconds_of_sign_out(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    task_id = _pending_task(client, rt)  # never runs: the stream would last for ever
    token = _sign_in(client)
    sid = session_id(token)
    session = rt.store.session(sid)
    assert session is not None
    caller = Principal(
        tenant=TENANT,
        key_digest=session.key_digest,
        via="cookie",
        session_id=sid,
        holder=session.holder,
    )

    async def run() -> tuple[list[str], float]:
        stream = _event_stream(rt, caller, task_id, 0)
        first = await stream.__anext__()
        assert first.startswith(": stream of task")
        rt.store.end_session(sid)  # signed out (on any replica)
        return await _until_end(stream, 5.0)

    chunks, took = asyncio.run(run())
    assert chunks[-1] == END_REVOKED
    assert took < 5.0 and took >= VALID_CHECK_S * 0.5


def test_the_task_stream_ends_within_seconds_of_revoking_its_key(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path) as store:
        rt = LocalRuntime(store)
        key = make_key()
        record = store.add_api_key(ApiKey(id=new_id("key"), tenant=TENANT), digest(key))

        async def fetch() -> list[tuple[str, str]]:
            return store.active_api_keys()

        _auth.configure(_auth.KeyStore(), _auth.RecordKeys(fetch), rt)
        try:

            async def run() -> tuple[list[str], float]:
                agent = await rt.create_agent(TENANT, AgentSpec(name="streamed"))
                task = await rt.assign(agent.id, TaskSpec(description="wait"), TENANT)
                caller = await key_principal(TENANT, hashlib.sha256(key.encode()).hexdigest())
                stream = _event_stream(rt, caller, task.id, 0)
                await stream.__anext__()
                store.revoke_api_key(record.id)
                return await _until_end(stream, 5.0 + _auth.KEYS_REFRESH_S)

            chunks, took = asyncio.run(run())
        finally:
            _auth.configure(None)
    assert chunks[-1] == END_REVOKED and took < 5.0


# ---------------------------------------------------------------- 7: holder names


def test_a_key_holder_is_no_prefix_of_the_keys_sha256_and_is_stable(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, _ = app
    holders = {client.get("/v1/session", headers=AUTH).json()["holder"] for _ in range(3)}
    assert len(holders) == 1
    holder = holders.pop()
    assert holder.startswith("key:") and len(holder) == len("key:") + 12
    full = hashlib.sha256(KEY.encode()).hexdigest()
    assert full[:12] not in holder and holder[4:] not in full
    # the same on another replica (it reads the same cluster secret)
    _auth._secret = None
    again = asyncio.run(key_principal(TENANT, full))
    assert again.holder == holder


# ---------------------------------------------------------------- 9: made-up cookies


def test_made_up_cookies_cost_a_bounded_number_of_records_reads(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path) as store:
        rt = LocalRuntime(store)
        cache = SessionCache(lambda: rt)
        real = ConsoleSession(
            id=session_id("real"),
            tenant=TENANT,
            key_digest="b" * 64,
            created_at=time.time(),
            expires_at=time.time() + 600,
        )
        store.add_session(real)

        async def flood() -> None:
            assert await cache.get(real.id) is not None
            for n in range(1000):
                assert await cache.get(session_id(f"bogus-{n}")) is None
            # the real session is still cached, not pushed out by the misses
            reads = cache.reads
            assert await cache.get(real.id) is not None
            assert cache.reads == reads

        started = time.monotonic()
        asyncio.run(flood())
        took = time.monotonic() - started
    # a burst, then MISS_READS_PER_S at most (1 for the real session)
    assert cache.reads <= 1 + MISS_READS_BURST + 8.0 * took + 1, cache.reads


# ---------------------------------------------------------------- 10: cookie hardening


def test_over_https_the_cookie_is_a_host_cookie_and_it_works(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, _ = app
    r = client.post("/v1/session", json={"key": KEY}, headers=HTTPS)
    assert r.status_code == 200
    header = r.headers["set-cookie"]
    assert header.startswith(f"{HOST_COOKIE}=") and "secure" in header.lower()
    assert "path=/" in header.lower() and "domain" not in header.lower()
    token = _sign_in(client, HTTPS)
    client.cookies.clear()
    client.cookies.set(HOST_COOKIE, token)
    assert client.get("/v1/session", headers=HTTPS).json()["tenant"] == TENANT
    out = client.delete("/v1/session", headers=HTTPS)
    assert out.status_code == 204
    cleared = ",".join(out.headers.get_list("set-cookie"))
    assert f"{HOST_COOKIE}=" in cleared


def test_signing_in_again_ends_the_previous_session(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    first = _sign_in(client)
    client.cookies.set(COOKIE, first)
    second = _sign_in(client)
    assert second != first
    ended = rt.store.session(session_id(first))
    assert ended is not None and ended.ended_at is not None
    kept = rt.store.session(session_id(second))
    assert kept is not None and kept.ended_at is None


def test_sign_out_clears_the_browsers_cache(app: tuple[TestClient, LocalRuntime]) -> None:
    client, _ = app
    client.cookies.set(COOKIE, _sign_in(client))
    out = client.delete("/v1/session", headers=ORIGIN)
    assert out.status_code == 204 and out.headers["clear-site-data"] == '"cache"'


# ---------------------------------------------------------------- 13: the ticket secret


def test_with_the_environments_secret_a_ticket_sealed_with_the_records_one_is_refused(
    app: tuple[TestClient, LocalRuntime], monkeypatch: pytest.MonkeyPatch, caplog: object
) -> None:
    client, rt = app
    agent = asyncio.run(rt.create_agent(TENANT, AgentSpec(name="watched")))
    caller = asyncio.run(key_principal(TENANT, hashlib.sha256(KEY.encode()).hexdigest()))
    by_records, _ = asyncio.run(mint(caller, agent.id, "view"))
    assert asyncio.run(redeem(by_records, agent.id)).mode == "view"

    secret = "s" * 40
    monkeypatch.setenv(ENV_TICKET_SECRET, secret)
    _auth._secret = None  # a replica started with it
    with pytest.raises(_auth.Unauthorized):
        asyncio.run(redeem(by_records, agent.id))
    by_env, _ = asyncio.run(mint(caller, agent.id, "view"))
    assert asyncio.run(redeem(by_env, agent.id)).mode == "view"
    assert secret not in repr(_auth.current_keys()) and secret not in str(caplog)

    monkeypatch.setenv(ENV_TICKET_SECRET, "short")
    _auth._secret = None
    with pytest.raises(_auth.ConfigError, match=ENV_TICKET_SECRET):
        asyncio.run(_auth.cluster_secret())
    _auth._secret = None


def test_the_records_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "records.sqlite3"
    db.touch(mode=0o644)
    db.chmod(0o644)
    with SQLiteStore(tmp_path):
        assert db.stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- 14: a tenant's share


def test_one_tenant_cannot_take_every_stream_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MAX_STREAMS, "8")
    monkeypatch.setattr(_stream, "_streams", _stream.TenantSlots(ENV_MAX_STREAMS, 256))

    async def body() -> object:
        yield ""

    taken = []
    for _ in range(2):
        taken.append(slot_stream(body(), "t-greedy"))
    with pytest.raises(HTTPException) as refused:
        slot_stream(body(), "t-greedy")
    assert refused.value.status_code == 429 and "this tenant" in str(refused.value.detail)
    for _ in range(2):
        taken.append(slot_stream(body(), "t-other"))
    assert _stream._streams.busy == 4

    async def finish() -> None:
        async def receive() -> dict[str, object]:
            return {"type": "http.disconnect"}

        async def send(_: object) -> None:
            return None

        await taken[0]({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)

    asyncio.run(finish())
    assert _stream._streams.busy == 3
    slot_stream(body(), "t-greedy")  # its slot was given back


def test_the_tenant_stream_holds_a_stream_slot_not_a_request_slot() -> None:
    from serve_app._limit import counted

    assert not counted("/v1/events/stream") and not counted("/v1/tasks/t-1/events/stream")
    assert counted("/v1/events") and counted("/v1/x/events/stream")
