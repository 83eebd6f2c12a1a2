"""The lease and live-feed routes and their SDK faces, through the real API app (FastAPI's
TestClient) on an in-process runtime over a real record store; nothing is started.

Two keys of one tenant are two people: the one holding an agent's lease steers its desktop,
the other gets 409. The tenant's events page and blobs are the tenant's only; the SDK's
``live_view()`` is still the link and shows the embed page with a ticket that redeems.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator.domain import AgentSpec, Event, EventKind, TaskSpec, TaskState
from orchestrator.records import SQLiteStore
from orchestrator.sdk import Client, ConflictError, LiveViewUrl
from tests.fakes.runtime import LocalRuntime

TENANT, OTHER_TENANT = "t-a", "t-b"
ALICE, BOB, EVE = "lease-key-alice-123456", "lease-key-bob-1234567", "lease-key-eve-1234567"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, LocalRuntime]]:
    from serve_app import KeyStore, build_app
    from serve_app._front import runtime

    with SQLiteStore(tmp_path) as store:
        rt = LocalRuntime(store)
        keys = KeyStore.parse(f"{TENANT}:{ALICE},{TENANT}:{BOB},{OTHER_TENANT}:{EVE}")
        built = build_app(keys, session_records=rt)
        built.dependency_overrides[runtime] = lambda: rt
        with TestClient(built) as client:
            yield client, rt


class _Through(httpx.BaseTransport):
    """The SDK's httpx requests, sent through the app's TestClient (in process)."""

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        r = self._client.request(
            request.method, str(request.url), headers=dict(request.headers), content=request.read()
        )
        return httpx.Response(r.status_code, headers=list(r.headers.items()), content=r.content)


def _sdk(client: TestClient, key: str) -> Client:
    return Client("http://testserver", key, http=httpx.Client(transport=_Through(client)))


def _agent(rt: LocalRuntime, name: str = "desk", tenant: str = TENANT) -> str:
    return asyncio.run(rt.create_agent(tenant, AgentSpec(name=name))).id


def test_the_holder_steers_the_desktop_and_others_get_409(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    agent_id = _agent(rt)
    task = asyncio.run(rt.assign(agent_id, TaskSpec(description="work")))
    rt.run(task.id)
    base = f"/v1/agents/{agent_id}"
    assert client.get(f"{base}/lease", headers=_auth(ALICE)).json() is None

    taken = client.post(f"{base}/lease", json={"ttl_s": 60}, headers=_auth(ALICE))
    assert taken.status_code == 200, taken.text
    lease = taken.json()
    assert lease["holder"].startswith("key:") and lease["task_id"] == task.id
    assert rt.store.get_task(task.id).state == TaskState.PAUSED  # type: ignore[union-attr]
    assert client.get(f"{base}/lease", headers=_auth(BOB)).json()["holder"] == lease["holder"]

    key = {"type": "keypress", "keys": ["a"]}
    for path, body in ((f"{base}/actions", key), (f"{base}/lease", {"ttl_s": 60})):
        r = client.post(path, json=body, headers=_auth(BOB))
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
    r = client.post(f"{base}/lease/hand-back", json={"note": "mine"}, headers=_auth(BOB))
    assert r.status_code == 409, r.text
    # another tenant does not see the agent at all
    assert client.get(f"{base}/lease", headers=_auth(EVE)).status_code == 404

    assert client.post(f"{base}/actions", json=key, headers=_auth(ALICE)).status_code == 200
    back = client.post(f"{base}/lease/hand-back", json={"note": "done"}, headers=_auth(ALICE))
    assert back.status_code == 200 and back.json()["note"] == "done"
    assert rt.store.get_task(task.id).state == TaskState.RUNNING  # type: ignore[union-attr]
    assert client.post(f"{base}/actions", json=key, headers=_auth(BOB)).status_code == 200


def test_no_one_but_the_holder_uploads_resets_or_steers(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    agent_id = _agent(rt)
    base = f"/v1/agents/{agent_id}"
    assert client.post(f"{base}/lease", json={"ttl_s": 60}, headers=_auth(ALICE)).status_code == 200
    put = {"params": {"path": "/tmp/x.txt"}, "content": b"hi"}
    r = client.put(f"{base}/files", headers=_auth(BOB), **put)  # type: ignore[arg-type]
    assert r.status_code == 409, r.text
    r = client.post(f"{base}/desktop/reset", headers=_auth(BOB))
    assert r.status_code == 409, r.text
    r = client.put(f"{base}/files", headers=_auth(ALICE), **put)  # type: ignore[arg-type]
    assert r.status_code == 201, r.text
    assert client.post(f"{base}/desktop/reset", headers=_auth(ALICE)).status_code == 200
    assert client.post(f"{base}/lease/hand-back", headers=_auth(ALICE)).status_code == 200
    r = client.put(f"{base}/files", headers=_auth(BOB), **put)  # type: ignore[arg-type]
    assert r.status_code == 201, r.text


ORIGIN = {"Origin": "http://testserver"}


def test_a_lease_ends_with_its_holders_session(app: tuple[TestClient, LocalRuntime]) -> None:
    """A console session that signs out leaves no lease behind: the next person takes over
    (the paused task resumes first), and a session's lease never outlives the session."""
    client, rt = app
    agent_id = _agent(rt)
    task = asyncio.run(rt.assign(agent_id, TaskSpec(description="work")))
    rt.run(task.id)
    base = f"/v1/agents/{agent_id}"
    assert client.post("/v1/session", json={"key": ALICE}, headers=ORIGIN).status_code in (200, 201)
    taken = client.post(f"{base}/lease", json={"ttl_s": 43_000}, headers=ORIGIN)
    assert taken.status_code == 200, taken.text
    lease = taken.json()
    assert lease["holder"].startswith("session:") and "holder_auth" not in lease
    session = client.get("/v1/session", headers=ORIGIN).json()
    assert lease["expires_at"] <= session["expires_at"] + 1  # capped at the session's end
    assert rt.store.get_task(task.id).state == TaskState.PAUSED  # type: ignore[union-attr]
    # while the session holds, the other person is refused
    assert client.post(f"{base}/lease", headers=_auth(BOB)).status_code == 409
    assert client.delete("/v1/session", headers=ORIGIN).status_code == 204
    client.cookies.clear()
    deadline = time.monotonic() + 10  # the replica's copy of the session is ~1 s old at most
    while (r := client.post(f"{base}/lease", headers=_auth(BOB))).status_code == 409:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    assert r.json()["holder"].startswith("key:") and r.json()["id"] != lease["id"]
    # the signed-out holder's lease ended first (its task resumed), then BOB's paused it again
    assert rt.store.get_task(task.id).state == TaskState.PAUSED  # type: ignore[union-attr]
    back = client.post(f"{base}/lease/hand-back", headers=_auth(BOB))
    assert back.status_code == 200 and rt.store.get_task(task.id).state == TaskState.RUNNING  # type: ignore[union-attr]


def test_the_embed_grants_nothing_and_a_failed_mint_shows_no_password() -> None:
    from orchestrator.sdk._live import embed_html

    shown = embed_html("https://api/console/embed/a?ticket=t", "live")
    assert "clipboard" not in shown and "allow=" not in shown

    def failing() -> str:
        raise RuntimeError("no console here")

    url = LiveViewUrl("http://127.0.0.1:6080/vnc.html?autoconnect=1&password=s3cret", "a", failing)
    fallback = url._repr_html_()
    assert "s3cret" not in fallback and "password" not in fallback
    assert "http://127.0.0.1:6080/vnc.html" in fallback
    assert url == "http://127.0.0.1:6080/vnc.html?autoconnect=1&password=s3cret"  # the value


def test_the_async_live_view_mints_its_ticket_when_shown(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    """``AsyncAgent.live_view()`` mints nothing up front (a ticket minted then would be
    stale by the time the notebook shows it); showing it mints one that redeems."""
    import threading

    import uvicorn

    from orchestrator.sdk import AsyncClient
    from serve_app._tickets import redeem

    client, rt = app
    agent_id = _agent(rt)
    minted: list[str] = []

    class Counting(httpx.ASGITransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/tickets"):
                minted.append(request.url.path)
            return await super().handle_async_request(request)

    server = uvicorn.Server(
        uvicorn.Config(client.app, host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not (server.started and server.servers):
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"

        async def view() -> LiveViewUrl:
            http = httpx.AsyncClient(base_url=base, transport=Counting(app=client.app))
            async with AsyncClient(base, ALICE, http=http) as sdk:
                return await (await sdk.agent(agent_id)).live_view()

        url = asyncio.run(view())
        assert minted == []  # nothing minted yet
        shown = url._repr_html_()  # Jupyter shows it: minted now, over the API
        src = html.unescape(re.search(r'<iframe src="([^"]+)"', shown).group(1))  # type: ignore[union-attr]
        assert src.startswith(f"{base}/console/embed/{agent_id}?ticket=")
        grant = asyncio.run(redeem(src.partition("ticket=")[2], agent_id))
        assert (grant.mode, grant.tenant) == ("embed", TENANT)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_replay_reads_at_most_a_few_agents_at_once(
    app: tuple[TestClient, LocalRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rt = app
    for i in range(40):
        _agent(rt, f"desk-{i}")
    running = 0
    most = 0
    read = rt.events

    async def counted(**kw: object) -> list[Event]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0)  # let every other read that may start, start
            return await read(**kw)  # type: ignore[arg-type]
        finally:
            running -= 1

    monkeypatch.setattr(rt, "events", counted)
    r = client.get("/v1/replay", params={"at": time.time() + 5}, headers=_auth(ALICE))
    assert r.status_code == 200 and len(r.json()["agents"]) == 40, r.text
    # two reads per agent, at most 16 agents at once (not all 40)
    assert 0 < most <= 2 * 16, most


def test_a_tenants_events_before_a_moment_are_read_by_time() -> None:
    """The tenant page and replay query (as records/_sqlite.py builds it) is bounded by the
    moment through an index, not by reading each agent's whole history."""
    import sqlite3

    from orchestrator.records._schema import migrate

    db = sqlite3.connect(":memory:")
    migrate(db)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT seq, payload FROM events WHERE seq > ? AND agent_id IN"
        " (SELECT id FROM agents WHERE tenant = ?) AND at <= ? ORDER BY seq DESC LIMIT ?",
        (0, TENANT, 1.0, 100),
    ).fetchall()
    assert any("events_agent_at (agent_id=? AND at<?)" in row[3] for row in plan), plan
    # the per-agent latest-first read keeps its early stop on (agent_id, seq)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT seq, payload FROM events WHERE seq > ? AND agent_id = ?"
        " AND at <= ? ORDER BY seq DESC LIMIT ?",
        (0, "a", 1.0, 50),
    ).fetchall()
    assert any("events_agent (agent_id=? AND seq>?)" in row[3] for row in plan), plan


def test_a_lease_length_out_of_range_is_refused(app: tuple[TestClient, LocalRuntime]) -> None:
    client, rt = app
    agent_id = _agent(rt)
    for ttl in (0, -1, 12 * 3600 + 1, "x"):
        r = client.post(f"/v1/agents/{agent_id}/lease", json={"ttl_s": ttl}, headers=_auth(ALICE))
        assert r.status_code == 422, (ttl, r.text)


def test_the_events_page_and_blobs_are_the_tenants_only(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    client, rt = app
    mine, theirs = _agent(rt, "a"), _agent(rt, "x", OTHER_TENANT)
    shot = rt.store.put_blob(b"\xff\xd8\xff-mine", "image/jpeg")
    secret = rt.store.put_blob(b"\xff\xd8\xff-theirs", "image/jpeg")
    t0 = time.time() + 10  # after the agents were created
    early = rt.store.append_event(
        Event(kind=EventKind.STEP, agent_id=mine, data={"n": 1}, blobs=[shot], at=t0)
    )
    rt.store.append_event(Event(kind=EventKind.STEP, agent_id=theirs, blobs=[secret], at=t0))
    late = rt.store.append_event(Event(kind=EventKind.LOG, agent_id=mine, at=t0 + 1000))

    page = client.get("/v1/events", params={"limit": 1000}, headers=_auth(ALICE)).json()
    assert {e["agent_id"] for e in page["events"]} == {mine}
    before = client.get("/v1/events", params={"before_at": t0 + 500}, headers=_auth(ALICE)).json()
    assert [e["seq"] for e in before["events"]] == [early.seq]
    latest = client.get(
        "/v1/events", params={"before_at": t0 + 5000, "limit": 1}, headers=_auth(ALICE)
    ).json()
    assert [e["seq"] for e in latest["events"]] == [late.seq]  # the latest, not the oldest

    got = client.get(f"/v1/blobs/{shot}", headers=_auth(ALICE))
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert client.get(f"/v1/blobs/{secret}", headers=_auth(ALICE)).status_code == 404
    assert client.get(f"/v1/blobs/{shot}", headers=_auth(EVE)).status_code == 404
    assert client.get("/v1/blobs/not-an-address", headers=_auth(ALICE)).status_code == 422

    moment = client.get("/v1/replay", params={"at": t0 + 500}, headers=_auth(ALICE)).json()
    assert [(x["agent_id"], x["screenshot"], x["shot_at"]) for x in moment["agents"]] == [
        (mine, shot, t0)
    ]
    assert moment["events"] == []  # none in the 30 s before it
    then = client.get("/v1/replay", params={"at": t0 + 10}, headers=_auth(ALICE)).json()
    assert [e["seq"] for e in then["events"]] == [early.seq]
    before = client.get("/v1/replay", params={"at": t0 - 3600}, headers=_auth(ALICE)).json()
    assert before["agents"] == []  # not created yet then
    assert client.get("/v1/capacity", headers=_auth(ALICE)).json() == {
        "nodes": [],
        "starting_unplaced": 0,
    }


def test_live_view_is_the_link_and_shows_the_embed_page_with_a_ticket(
    app: tuple[TestClient, LocalRuntime],
) -> None:
    from serve_app._tickets import redeem

    client, rt = app
    agent_id = _agent(rt)
    sdk = _sdk(client, ALICE)
    url = sdk.agent(agent_id).live_view()
    assert isinstance(url, LiveViewUrl) and isinstance(url, str)
    assert url == asyncio.run(rt.agents[agent_id].live_view())  # the link, as before
    shown = url._repr_html_()
    src = html.unescape(re.search(r'<iframe src="([^"]+)"', shown).group(1))  # type: ignore[union-attr]
    assert src.startswith(f"http://testserver/console/embed/{agent_id}?ticket=")
    grant = asyncio.run(redeem(src.partition("ticket=")[2], agent_id))
    assert (grant.mode, grant.tenant, grant.agent_id) == ("embed", TENANT, agent_id)

    task = sdk.agent(agent_id).assign("work")
    view = task.show()
    assert "is pending" in view.status_line() and "<iframe" in view._repr_html_()

    with pytest.raises(ConflictError):
        _sdk(client, BOB).agent(agent_id).hand_back("not mine")
