"""Signing in and out of the console in a real browser (issue 13, items 1 and 7).

- the sign-in form exchanges a key for an HttpOnly, SameSite=Strict cookie of at most 12 h
  (a wrong key gets none); a state-changing request on the cookie needs the page's Origin;
- signing out ends the session in the records: the old cookie, replayed, is refused;
- another tenant's cookie sees none of a tenant's agents, tasks, events or desktops;
- a revoked key's page stops within 5 s: ``signed-out`` shows and its live desktop is
  disconnected, while a page on another key goes on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import BrowserContext, Cookie, Page, WebSocket, expect

from tests.browser.conftest import OTHER, TENANT, Console, until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

COOKIE = "orch_session"
MAX_AGE_S = 12 * 3600
REVOKED_WITHIN_S = 5.0
QUICK = {"steps": [{"type": "shell", "command": "echo hello from the console test"}]}


async def session_cookie(ctx: BrowserContext) -> Cookie:
    found = [c for c in await ctx.cookies() if c["name"] == COOKIE]
    assert len(found) == 1, await ctx.cookies()
    return found[0]


async def session_status(page: Page) -> int:
    """``GET /v1/session`` with the page's cookie (from the page itself, same origin)."""
    status: int = await page.evaluate(
        "async () => (await fetch('/v1/session', {credentials: 'same-origin'})).status"
    )
    return status


async def test_signing_in_sets_a_strict_httponly_cookie_and_shows_the_tenant(
    console: Console,
) -> None:
    page = await console.open(sign_in=False)
    await expect(console.testid(page, "signin-key")).to_be_visible()
    await console.shot(page, "sign-in-form")
    ctx = page.context
    assert COOKIE not in {c["name"] for c in await ctx.cookies()}

    # A wrong key: refused, no cookie, still on the form.
    await console.testid(page, "signin-key").fill("not-a-key-of-anyone")
    await console.testid(page, "signin-submit").click()
    await expect(console.testid(page, "signin-key")).to_be_visible()
    await expect(console.testid(page, "tenant-name")).to_have_count(0)
    assert COOKIE not in {c["name"] for c in await ctx.cookies()}
    assert await session_status(page) == 401
    await console.shot(page, "wrong-key")

    before = time.time()
    await console.sign_in(page, console.api.keys[TENANT], TENANT)
    await console.shot(page, "signed-in")
    cookie = await session_cookie(ctx)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    assert cookie["path"] == "/" and cookie["secure"] is False, cookie  # plain http here
    expires = cookie["expires"]
    assert before < expires <= before + MAX_AGE_S + 5, (expires - before, cookie)
    # The page's scripts cannot read it.
    assert COOKIE not in await page.evaluate("document.cookie")
    info = await page.evaluate(
        "async () => (await fetch('/v1/session', {credentials: 'same-origin'})).json()"
    )
    assert info["tenant"] == TENANT and info["holder"].startswith("session:"), info
    assert float(info["expires_at"]) <= before + MAX_AGE_S + 5, info

    # A state-changing request on the cookie must come from the page's own origin.
    path = "/v1/tasks/task-nonexistent/cancel"
    r = await ctx.request.post(path, headers={"Origin": "http://evil.example"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden", await r.text()
    r = await ctx.request.post(path)  # no Origin at all
    assert r.status == 403, await r.text()
    r = await ctx.request.post(path, headers={"Origin": console.url})
    assert r.status == 404, await r.text()  # let through: the task does not exist
    # The same from the page itself (the browser sets Origin).
    status = await page.evaluate(
        "async (p) => (await fetch(p, {method: 'POST', credentials: 'same-origin'})).status",
        path,
    )
    assert status == 404


async def test_signing_out_ends_the_session_everywhere(console: Console) -> None:
    page = await console.open()
    cookie = await session_cookie(page.context)
    assert await session_status(page) == 200
    await console.testid(page, "signout").click()
    await expect(console.testid(page, "tenant-name")).to_have_count(0)
    await expect(
        console.testid(page, "signin-key").or_(console.testid(page, "signed-out")).first
    ).to_be_visible()
    await console.shot(page, "signed-out")
    assert await session_status(page) == 401
    assert COOKIE not in {c["name"] for c in await page.context.cookies()}

    # The old cookie, replayed from another browser, is refused: the session ended in the
    # records, not just in this browser's jar.
    thief = await console.context()
    await thief.add_cookies(
        [{"name": COOKIE, "value": cookie["value"], "url": console.url, "httpOnly": True}]
    )
    r = await thief.request.get("/v1/session")
    assert r.status == 401, await r.text()
    r = await thief.request.get("/v1/agents")
    assert r.status == 401, await r.text()


async def test_another_tenants_cookie_sees_none_of_it(console: Console) -> None:
    mine = await console.open(TENANT)
    theirs = await console.open(OTHER)
    agent = await console.create_agent("private")
    task = await console.assign(agent["id"], "private work", QUICK)
    await expect(console.testid(mine, f"agent-node-{agent['id']}")).to_be_visible()
    await console.task_in(task["id"], {"succeeded"})
    await expect(console.testid(mine, f"task-row-{task['id']}")).to_be_visible()
    async with console.http() as h:
        events = (await h.get(f"/v1/tasks/{task['id']}/events")).json()["events"]
    seqs = [e["seq"] for e in events]
    assert seqs, events
    await expect(console.testid(mine, f"event-{seqs[-1]}")).to_be_attached()
    await console.shot(mine, "owner-sees-it")

    # The other tenant's page, open all along (its stream live), shows none of it.
    await expect(console.testid(theirs, "agent-tree")).to_be_attached()
    await console.tab(theirs, "swimlanes")
    await console.shot(theirs, "other-tenant")
    for testid in (
        f"agent-node-{agent['id']}",
        f"desktop-tile-{agent['id']}",
        f"task-row-{task['id']}",
        f"lane-{agent['id']}",
        *(f"event-{s}" for s in seqs),
    ):
        assert await console.testid(theirs, testid).count() == 0, testid
    # Nor does its cookie reach any of it through the API.
    req = theirs.context.request
    origin = {"Origin": console.url}
    for path in (f"/v1/agents/{agent['id']}", f"/v1/tasks/{task['id']}"):
        r = await req.get(path)
        assert r.status == 404, (path, await r.text())
    r = await req.post(f"/v1/agents/{agent['id']}/tickets", data={"mode": "view"}, headers=origin)
    assert r.status == 404, await r.text()
    r = await req.get("/v1/events", params={"limit": 1000})
    assert r.status == 200, await r.text()
    assert not [e for e in (await r.json())["events"] if e.get("agent_id") == agent["id"]]
    r = await req.get("/v1/replay", params={"at": str(time.time())})
    assert r.status == 200, await r.text()
    assert agent["id"] not in {a["agent_id"] for a in (await r.json())["agents"]}


async def test_a_revoked_keys_page_stops_within_5_s(console: Console) -> None:
    key, key_id = await console.api.add_key(TENANT)
    agent = await console.create_agent("watched")
    # A key added to the records is in force within seconds.
    probe = console.api.http(key=key)

    async def key_works() -> bool:
        return (await probe.get("/v1/session")).status_code in (401, 200) and (
            await probe.get("/v1/agents")
        ).status_code == 200

    await until(key_works, timeout_s=10, what="the new key works")
    await probe.aclose()

    page = await console.open(TENANT, key=key)
    other = await console.open(TENANT)  # the same tenant, on the file's key
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    await console.testid(page, f"desktop-tile-{agent['id']}").click()
    live = console.testid(page, "live-desktop")
    await expect(live).to_have_attribute("data-state", "connected", timeout=30_000)
    relays = [ws for ws in sockets if f"/v1/agents/{agent['id']}/vnc" in ws.url]
    assert len(relays) == 1 and not relays[0].is_closed(), [ws.url for ws in sockets]
    await console.shot(page, "live-before-revoke")

    await console.api.revoke(key_id)
    revoked = time.monotonic()
    await expect(console.testid(page, "signed-out")).to_be_visible(timeout=REVOKED_WITHIN_S * 1000)
    left = max(0.1, REVOKED_WITHIN_S - (time.monotonic() - revoked))
    await until(_closed(relays[0]), timeout_s=left, what="the relay closed", interval_s=0.02)
    took = time.monotonic() - revoked
    assert took <= REVOKED_WITHIN_S, took
    if await live.count():  # the desktop, if still on the page, says so
        await expect(live).to_have_attribute("data-state", "disconnected", timeout=1000)
    await console.shot(page, "revoked")
    assert await session_status(page) == 401
    # The page on the other key goes on.
    assert await session_status(other) == 200
    await expect(console.testid(other, f"agent-node-{agent['id']}")).to_be_visible()


def _closed(ws: WebSocket) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return ws.is_closed()

    return probe
