"""Fixtures for the console's browser tests (issue 13, item 7): the API on a real Serve
deployment with the built console, real agents with real desktops, and Debian's Chromium
driven by Playwright (``executable_path``: nothing is downloaded from a browser site).

- ``ray_session`` (package scope): the integration tests' local Ray cluster on loopback,
  started for this package and shut down when it ends, so that tests/integration, run after
  it in the same pytest session, starts its own (Ray allows one per process).
- ``console_api`` (package scope): the API on Serve on a free loopback port; two tenants'
  keys in a keys file, more added to (and revoked from) the records by the tests.
- ``chromium`` (package scope): one browser; every page gets a context (cookie jar) of its own.
- ``console`` (per test): pages signed in through the sign-in form, a screenshot of every step
  kept in ``out/console/<test>-<step>.png`` (and of every open page at the end, passed or
  not), the page's errors in ``out/console/<test>-console.txt``, agents created over HTTP and
  fired at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright

from tests.integration.conftest_ray import RAY_DESKTOPS, RaySession, _fire_everyone, _reap_quietly

T = TypeVar("T")

CHROMIUM = "/usr/lib/chromium/chromium"
"""Debian's Chromium (``apt-get install chromium``; scripts/setup.sh installs it)."""
SHOTS = Path(__file__).resolve().parents[2] / "out" / "console"
"""Where the pages' screenshots are kept (git-ignored)."""
TENANT, OTHER = "t-console", "t-console-other"
"""The tenants of the keys file; every agent a test creates is one of theirs."""
TIMEOUT_MS = 30_000
"""Playwright's default wait for an element or a navigation."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def slug(text: str, cut: int = 80) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:cut].rstrip("-")


async def until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
) -> T:
    """Await ``probe()`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = await probe()
            if last:
                return last  # type: ignore[no-any-return]
        except AssertionError as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s; last: {last!r}")
        await asyncio.sleep(interval_s)  # polling interval of a deadline-bound wait


# ---------------------------------------------------------------------- the cluster and the API


@pytest.fixture(scope="package")
async def ray_session(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RaySession]:
    """The integration tests' local cluster (same setup), for this package only."""
    import ray

    from actors import Runtime, init_ray
    from orchestrator._docker import client
    from orchestrator.errors import DockerError
    from orchestrator.image import default_image

    image = default_image()
    try:
        client().images.get(image)
    except Exception as e:  # noqa: BLE001
        raise DockerError(f"desktop image {image} missing: run scripts/setup.sh ({e})") from e
    if ray.is_initialized():  # pragma: no cover - another fixture got there first
        raise RuntimeError("Ray is already initialised in the test process")
    address = os.environ.pop("RAY_ADDRESS", None)  # always a cluster of our own
    try:
        init_ray(desktops=RAY_DESKTOPS)
    finally:
        if address is not None:
            os.environ["RAY_ADDRESS"] = address
    data_dir = tmp_path_factory.mktemp("console-records")
    runtime = Runtime.connect(data_dir=data_dir)
    try:
        yield RaySession(runtime=runtime, data_dir=data_dir, image=image)
    finally:
        try:
            await _fire_everyone(runtime)
        finally:
            ray.shutdown()
            _reap_quietly()


@dataclass
class ConsoleApi:
    """The API (and the console at ``/console``) on Serve, and its tenants' keys."""

    url: str
    keys: dict[str, str] = field(repr=False)
    session: RaySession = field(repr=False)

    @property
    def image(self) -> str:
        return self.session.image

    def http(self, tenant: str = TENANT, *, key: str | None = None) -> httpx.AsyncClient:
        """A client with a bearer key (the tenant's from the keys file, or ``key``)."""
        auth = {"Authorization": f"Bearer {key or self.keys[tenant]}"}
        return httpx.AsyncClient(base_url=self.url, headers=auth, timeout=60)

    async def add_key(self, tenant: str) -> tuple[str, str]:
        """A new key of ``tenant`` in the records, as ``orchestrator keys add`` makes it:
        (the key, its id)."""
        from orchestrator._cli_keys import add_key

        key, record, _ = await add_key(self.session.runtime.recorder, tenant, "browser-test")
        return key, record.id

    async def revoke(self, key_id: str) -> None:
        """Revoke a key in the records, as ``orchestrator keys revoke`` does."""
        revoked = await self.session.runtime.recorder.revoke_api_key.remote(key_id)
        assert revoked is not None, key_id


@pytest.fixture(scope="package")
def console_api(
    ray_session: RaySession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleApi]:
    """Serve on a free loopback port with two tenants' keys; fails (not skips) when the
    console is not built (scripts/setup.sh builds it)."""
    from ray import serve

    from serve_app import deploy

    keys = {TENANT: secrets.token_urlsafe(24), OTHER: secrets.token_urlsafe(24)}
    keys_file = tmp_path_factory.mktemp("console-keys") / "api-keys"
    keys_file.write_text("".join(f"{t}:{k}\n" for t, k in keys.items()))
    url = deploy(port=free_port(), keys_file=str(keys_file))
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, timeout=5) as c:
            while True:
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not answer /healthz in 60 s"
                time.sleep(0.1)  # polling interval of a deadline-bound wait
            page = c.get("/console/")
            assert page.status_code == 200 and "<html" in page.text.lower(), (
                f"the console is not served ({page.status_code}): run scripts/setup.sh "
                f"(it builds serve_app/console/dist): {page.text[:300]}"
            )
        yield ConsoleApi(url=url, keys=keys, session=ray_session)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="package")
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} missing: apt-get install chromium (scripts/setup.sh)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            await browser.close()


# ---------------------------------------------------------------------- one test's console


@dataclass
class Console:
    """One test's pages, agents and screenshots."""

    api: ConsoleApi
    browser: Browser
    name: str
    contexts: list[BrowserContext] = field(default_factory=list)
    agents: list[tuple[str, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    shots: int = 0

    @property
    def url(self) -> str:
        return self.api.url

    # ------------------------------------------------------------------ pages

    async def context(self) -> BrowserContext:
        """A fresh cookie jar on the API's origin."""
        ctx = await self.browser.new_context(
            base_url=self.api.url, viewport={"width": 1440, "height": 900}
        )
        ctx.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(ctx)
        return ctx

    async def open(
        self,
        tenant: str = TENANT,
        *,
        key: str | None = None,
        context: BrowserContext | None = None,
        sign_in: bool = True,
    ) -> Page:
        """A page on ``/console/``, signed in through the sign-in form with ``key`` (default:
        the tenant's key from the keys file) unless ``sign_in`` is false."""
        ctx = context or await self.context()
        page = await ctx.new_page()
        n = len(self.log)
        page.on("pageerror", lambda e: self.log.append(f"[page {n}] error: {e}"))
        page.on(
            "console",
            lambda m: (
                self.log.append(f"[page {n}] {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        await page.goto("/console/")
        if sign_in:
            await self.sign_in(page, key or self.api.keys[tenant], tenant)
        return page

    async def sign_in(self, page: Page, key: str, tenant: str) -> None:
        from playwright.async_api import expect

        await expect(page.get_by_test_id("signin-key")).to_be_visible()
        await page.get_by_test_id("signin-key").fill(key)
        await page.get_by_test_id("signin-submit").click()
        await expect(page.get_by_test_id("tenant-name")).to_contain_text(tenant)

    async def shot(self, page: Page, step: str) -> Path:
        """Keep a screenshot of the page as ``out/console/<test>-<step>.png``."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.name}-{slug(step)}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.shots += 1
        return path

    @staticmethod
    def testid(page: Page | Locator, testid: str) -> Locator:
        return page.get_by_test_id(testid)

    @staticmethod
    async def tab(page: Page, name: str) -> None:
        """Show one of the panel's tabs (tasks, inbox, swimlanes, replay, stats)."""
        from playwright.async_api import expect

        tab = page.get_by_test_id(f"tab-{name}")
        await tab.click()
        await expect(tab).to_have_attribute("aria-selected", "true")

    # ------------------------------------------------------------------ agents and tasks

    def http(self, tenant: str = TENANT) -> httpx.AsyncClient:
        return self.api.http(tenant)

    async def create_agent(self, name: str, tenant: str = TENANT) -> dict[str, Any]:
        """A top-level agent with a desktop of the session's image; fired at the end."""
        spec = {
            "name": f"{name}-{secrets.token_hex(2)}",
            "role": "tester",
            "desktop": {"image": self.api.image, "width": 1024, "height": 768},
        }
        async with self.http(tenant) as h:
            r = await h.post("/v1/agents", json=spec)
        assert r.status_code == 201, r.text
        info: dict[str, Any] = r.json()
        self.agents.append((tenant, info["id"]))
        return info

    async def assign(
        self, agent_id: str, description: str, script: dict[str, Any], tenant: str = TENANT
    ) -> dict[str, Any]:
        async with self.http(tenant) as h:
            r = await h.post(
                f"/v1/agents/{agent_id}/tasks", json={"description": description, "script": script}
            )
        assert r.status_code == 202, r.text
        task: dict[str, Any] = r.json()
        return task

    async def task(self, task_id: str, tenant: str = TENANT) -> dict[str, Any]:
        async with self.http(tenant) as h:
            r = await h.get(f"/v1/tasks/{task_id}")
        assert r.status_code == 200, r.text
        task: dict[str, Any] = r.json()
        return task

    async def task_in(
        self, task_id: str, states: set[str], *, timeout_s: float = 90, tenant: str = TENANT
    ) -> dict[str, Any]:
        """Wait until the task is in one of ``states``; the task then."""

        async def probe() -> dict[str, Any] | None:
            t = await self.task(task_id, tenant)
            return t if t["state"] in states else None

        return await until(probe, timeout_s=timeout_s, what=f"task {task_id} in {states}")

    async def desk(self, agent_path: str, command: str, timeout_s: float = 30) -> str:
        """Run ``command`` as the desktop's user inside the agent's container (docker exec,
        not the API: what the desktop shows, whoever holds it); its stdout."""
        from orchestrator._docker import client

        def run() -> str:
            found = client().api.containers(
                filters={"label": [f"orchestrator.path={agent_path}", "orchestrator.desktop"]}
            )
            assert len(found) == 1, f"{len(found)} running desktops of {agent_path}"
            out = (
                client()
                .containers.get(found[0]["Id"])
                .exec_run(
                    ["as-agent", "sh", "-c", f"timeout {timeout_s} sh -c {_quote(command)}"],
                    demux=True,
                )
            )
            stdout, stderr = out.output
            assert out.exit_code == 0, (command, out.exit_code, stderr)
            return (stdout or b"").decode()

        return await asyncio.to_thread(run)

    # ------------------------------------------------------------------ the end

    async def close(self) -> None:
        """Screenshots of the pages still open, the page log, contexts closed, agents fired."""
        for ctx in self.contexts:
            for i, page in enumerate(ctx.pages):
                try:
                    await self.shot(page, f"end-{self.contexts.index(ctx)}-{i}")
                except Exception as e:  # noqa: BLE001 - a page that died is no reason to stop
                    self.log.append(f"no end screenshot: {e}")
        if self.log:
            SHOTS.mkdir(parents=True, exist_ok=True)
            (SHOTS / f"{self.name}-console.txt").write_text("\n".join(self.log) + "\n")
        for ctx in self.contexts:
            try:
                await ctx.close()
            except Exception:  # noqa: BLE001, S110 - closed already
                pass
        for tenant, agent_id in reversed(self.agents):
            async with self.http(tenant) as h:
                try:
                    await h.delete(f"/v1/agents/{agent_id}", timeout=120)
                except httpx.HTTPError:
                    pass  # the session's end fires whatever is left


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture
async def console(
    console_api: ConsoleApi, chromium: Browser, request: pytest.FixtureRequest
) -> AsyncIterator[Console]:
    """This test's console: pages, agents, screenshots named after the test."""
    c = Console(api=console_api, browser=chromium, name=slug(request.node.name))
    for old in SHOTS.glob(f"{c.name}-*"):  # screenshots of an earlier run of this test
        old.unlink()
    try:
        yield c
    finally:
        await c.close()
