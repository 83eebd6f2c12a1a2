"""Desktop tickets and revocation: tamper, expiry, wrong agent or tenant, a sign-out or a
revoked key ending cookies and tickets, and a second replica seeing a sign-out within
``SESSION_REFRESH_S``.

Through the real API app (FastAPI's TestClient) on an in-process runtime over a real record
store; ``redeem`` and ``still_valid`` are called as the relay and the streams call them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrator.domain import AgentSpec, new_id
from orchestrator.records import SQLiteStore
from orchestrator.tenants import ApiKey, digest, make_key
from serve_app import _auth
from serve_app._auth import (
    KEYS_REFRESH_S,
    Ended,
    KeyStore,
    RecordKeys,
    Unauthorized,
    key_principal,
)
from serve_app._cookie import COOKIE, SESSION_REFRESH_S, SessionCache, session_id
from serve_app._front import still_valid
from serve_app._tickets import MAX_TICKET_CHARS, Seal, redeem
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, KEY, OTHER, TENANT, api

ORIGIN = {"Origin": "http://testserver"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, LocalRuntime, str]]:
    with SQLiteStore(tmp_path) as store, api(store) as (client, rt):
        agent = asyncio.run(rt.create_agent(TENANT, AgentSpec(name="alice")))
        yield client, rt, agent.id


def _ticket(client: TestClient, agent_id: str, mode: str, **kw: object) -> dict[str, object]:
    r = client.post(f"/v1/agents/{agent_id}/tickets", json={"mode": mode}, **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_a_ticket_grants_its_agent_in_its_mode(
    app: tuple[TestClient, LocalRuntime, str],
) -> None:
    client, _, agent_id = app
    before = time.time()
    body = _ticket(client, agent_id, "control", headers=AUTH)
    ticket = str(body["ticket"])
    assert body["mode"] == "control" and body["embed_path"] is None
    assert body["relay_path"] == f"/v1/agents/{agent_id}/vnc?ticket={ticket}"
    assert before + 59 <= float(body["expires_at"]) <= time.time() + 60  # type: ignore[arg-type]
    assert KEY not in ticket and len(ticket) < MAX_TICKET_CHARS
    grant = asyncio.run(redeem(ticket, agent_id))
    assert (grant.tenant, grant.agent_id, grant.mode) == (TENANT, agent_id, "control")
    assert grant.principal.via == "ticket" and grant.principal.tenant == TENANT
    keyed = client.get("/v1/session", headers=AUTH).json()
    assert grant.holder == keyed["holder"] == grant.principal.holder
    # the key's digest is sealed, not shown
    assert grant.principal.key_digest not in ticket


def test_embed_tickets_last_15_minutes_and_name_the_embed_page(
    app: tuple[TestClient, LocalRuntime, str],
) -> None:
    client, _, agent_id = app
    body = _ticket(client, agent_id, "embed", headers=AUTH)
    ticket = str(body["ticket"])
    assert body["embed_path"] == f"/console/embed/{agent_id}?ticket={ticket}"
    later = time.time() + 600
    assert asyncio.run(redeem(ticket, agent_id, clock=lambda: later)).mode == "embed"
    with pytest.raises(Unauthorized, match="expired"):
        asyncio.run(redeem(ticket, agent_id, clock=lambda: time.time() + 901))


def test_view_tickets_expire_after_a_minute(app: tuple[TestClient, LocalRuntime, str]) -> None:
    client, _, agent_id = app
    ticket = str(_ticket(client, agent_id, "view", headers=AUTH)["ticket"])
    with pytest.raises(Unauthorized, match="expired"):
        asyncio.run(redeem(ticket, agent_id, clock=lambda: time.time() + 61))


def test_a_tampered_or_foreign_ticket_is_refused(
    app: tuple[TestClient, LocalRuntime, str], tmp_path: Path
) -> None:
    client, _, agent_id = app
    ticket = str(_ticket(client, agent_id, "view", headers=AUTH)["ticket"])
    for i in (0, 5, len(ticket) // 2, len(ticket) - 2):
        flipped = ticket[:i] + ("A" if ticket[i] != "A" else "B") + ticket[i + 1 :]
        with pytest.raises(Unauthorized, match="invalid ticket"):
            asyncio.run(redeem(flipped, agent_id))
    for junk in ("", "x", "!!!!", "A" * (MAX_TICKET_CHARS + 1), ticket[:-10], ticket + "AA"):
        with pytest.raises(Unauthorized, match="invalid ticket"):
            asyncio.run(redeem(junk, agent_id))
    # sealed with another cluster's secret: refused
    import base64

    other = Seal(b"another cluster's secret 32 byte")
    sealed = other.close(
        b'{"t":"t-a","a":"x","m":"control","k":"' + b"0" * 64 + b'","h":"x","e":1e12}'
    )
    forged = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()
    with pytest.raises(Unauthorized, match="invalid ticket"):
        asyncio.run(redeem(forged, agent_id))


def test_a_ticket_is_for_its_agent_only_and_only_the_tenants(
    app: tuple[TestClient, LocalRuntime, str],
) -> None:
    client, rt, agent_id = app
    other_agent = asyncio.run(rt.create_agent(TENANT, AgentSpec(name="bob")))
    ticket = str(_ticket(client, agent_id, "view", headers=AUTH)["ticket"])
    with pytest.raises(Unauthorized, match="another agent"):
        asyncio.run(redeem(ticket, other_agent.id))
    # another tenant cannot mint one for this agent (404, as for an unknown id)
    r = client.post(f"/v1/agents/{agent_id}/tickets", json={"mode": "view"}, headers=OTHER)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.post("/v1/agents/no-such-agent/tickets", json={"mode": "view"}, headers=AUTH)
    assert r.status_code == 404
    r = client.post(f"/v1/agents/{agent_id}/tickets", json={"mode": "admin"}, headers=AUTH)
    assert r.status_code == 422
    assert client.post(f"/v1/agents/{agent_id}/tickets", json={"mode": "view"}).status_code == 401


def test_signing_out_ends_the_cookie_its_tickets_and_still_valid(
    app: tuple[TestClient, LocalRuntime, str],
) -> None:
    client, _, agent_id = app
    r = client.post("/v1/session", json={"key": KEY}, headers=ORIGIN)
    token = r.cookies[COOKIE]
    body = _ticket(client, agent_id, "control", headers=ORIGIN)
    ticket = str(body["ticket"])
    grant = asyncio.run(redeem(ticket, agent_id))
    assert grant.principal.session_id == session_id(token)
    assert grant.holder == f"session:{session_id(token)[:12]}"
    assert asyncio.run(still_valid(grant.principal))
    # minting from the console needs the console's origin too
    r = client.post(f"/v1/agents/{agent_id}/tickets", json={"mode": "view"})
    assert r.status_code == 403
    assert client.delete("/v1/session", headers=ORIGIN).status_code == 204
    assert not asyncio.run(still_valid(grant.principal))
    with pytest.raises(Ended):
        asyncio.run(redeem(ticket, agent_id))
    client.cookies.set(COOKIE, token)
    assert client.get("/v1/agents").status_code == 401


@pytest.fixture
def revocable(tmp_path: Path) -> Iterator[tuple[TestClient, LocalRuntime, Clock]]:
    """The app with keys in the records too (``orchestrator keys add``), on a clock."""
    saved = (_auth._keys, _auth._records, _auth._sessions, _auth.sessions)
    clock = Clock()
    with SQLiteStore(tmp_path) as store, api(store) as (client, rt):

        async def fetch() -> list[tuple[str, str]]:
            return store.active_api_keys()

        _auth.configure(KeyStore.parse(f"{TENANT}:{KEY}"), RecordKeys(fetch, clock), rt)
        try:
            yield client, rt, clock
        finally:
            _auth._keys, _auth._records, _auth._sessions, _auth.sessions = saved


def test_revoking_a_key_ends_its_cookies_tickets_and_still_valid(
    revocable: tuple[TestClient, LocalRuntime, Clock],
) -> None:
    client, rt, clock = revocable
    key = make_key()
    record = rt.store.add_api_key(
        ApiKey(id=new_id("key"), tenant="t-rec", name="console"), digest(key)
    )
    agent = asyncio.run(rt.create_agent("t-rec", AgentSpec(name="carol")))
    r = client.post("/v1/session", json={"key": key}, headers=ORIGIN)
    assert r.status_code == 200 and r.json()["tenant"] == "t-rec"
    token = r.cookies[COOKIE]
    cookie_ticket = str(_ticket(client, agent.id, "view", headers=ORIGIN)["ticket"])
    bearer = {"Authorization": f"Bearer {key}"}
    key_ticket = str(_ticket(client, agent.id, "embed", headers=bearer)["ticket"])
    grants = [asyncio.run(redeem(t, agent.id)) for t in (cookie_ticket, key_ticket)]
    keyed = asyncio.run(key_principal("t-rec", digest(key)))
    assert all([asyncio.run(still_valid(p)) for p in (keyed, *(g.principal for g in grants))])
    assert client.get("/v1/agents").status_code == 200

    rt.store.revoke_api_key(record.id)
    ended = rt.store.session(session_id(token))
    assert ended is not None and ended.ended_at is not None  # in the same transaction
    clock.now += KEYS_REFRESH_S  # every replica's copy of the keys is read again by now
    for p in (keyed, *(g.principal for g in grants)):
        assert not asyncio.run(still_valid(p)), p.via
    for t in (cookie_ticket, key_ticket):
        with pytest.raises(Ended):
            asyncio.run(redeem(t, agent.id))
    assert client.get("/v1/agents").status_code == 401
    assert client.get("/v1/agents", headers=bearer).status_code == 401
    r = client.post("/v1/session", json={"key": key}, headers=ORIGIN)
    assert r.status_code == 401 and COOKIE not in r.cookies


def test_another_replica_sees_a_sign_out_within_the_refresh_interval(
    app: tuple[TestClient, LocalRuntime, str],
) -> None:
    client, rt, _ = app
    r = client.post("/v1/session", json={"key": KEY}, headers=ORIGIN)
    sid = session_id(r.cookies[COOKIE])
    clock = Clock()
    replica = SessionCache(lambda: rt, clock)  # another replica's copies, on a clock

    async def open_on_replica() -> bool:
        s = await replica.get(sid)
        return s is not None and s.open_at(time.time())

    assert asyncio.run(open_on_replica())
    assert client.delete("/v1/session", headers=ORIGIN).status_code == 204
    clock.now += SESSION_REFRESH_S / 2
    assert asyncio.run(open_on_replica())  # its copy is young: at most SESSION_REFRESH_S
    clock.now += SESSION_REFRESH_S / 2
    assert not asyncio.run(open_on_replica())


def test_concurrent_checks_of_one_session_share_one_read(
    app: tuple[TestClient, LocalRuntime, str],
) -> None:
    client, rt, _ = app
    r = client.post("/v1/session", json={"key": KEY}, headers=ORIGIN)
    sid = session_id(r.cookies[COOKIE])
    reads: list[str] = []

    class Counting:
        async def session(self, session_id: str) -> object:
            reads.append(session_id)
            await asyncio.sleep(0)  # let the others pile up behind this read
            return await rt.session(session_id)

    cache = SessionCache(lambda: Counting())  # type: ignore[arg-type, return-value]

    async def many() -> list[object]:
        return await asyncio.gather(*(cache.get(sid) for _ in range(20)))

    found = asyncio.run(many())
    assert reads == [sid] and all(f is not None for f in found)
