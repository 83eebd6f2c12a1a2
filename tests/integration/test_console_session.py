"""Console sign-in on a running API (two Serve replicas, real HTTP, the session's cluster):
the cookie works on the existing routes, state changes need the API's own Origin, another
tenant's cookie sees nothing, a ticket minted by a replica is redeemed in another process,
a sign-out is refused by every replica within a few seconds, and revoking the key (``orchestrator
keys revoke``) ends its cookie, its tickets and ``still_valid`` within 5 s.

The deployment starts once for the module and is shut down at the end.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.integration.serve_api import free_port
from tests.integration.test_serve_api import until

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

REPLICAS = 2
WITHIN_S = 5.0
"""Revocation and sign-out are in force on every replica within this."""
STREAK = 20
"""Answers in a row that must agree (with two replicas: both of them)."""


@dataclass
class ConsoleApi:
    url: str
    image: str
    address: str

    @property
    def origin(self) -> dict[str, str]:
        return {"Origin": self.url}

    def browser(self) -> httpx.Client:
        """A client that keeps cookies, like a browser (no Authorization header)."""
        return httpx.Client(base_url=self.url, timeout=120)

    def bearer(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )

    def cli(self, *args: str) -> tuple[str, str]:
        from orchestrator.cli import main

        result = CliRunner().invoke(main, ["keys", *args, "--address", self.address])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout, result.stderr

    def add_key(self, tenant: str) -> tuple[str, str]:
        out, err = self.cli("add", tenant, "--name", "console")
        found = re.search(r"key (key-[0-9a-f]+) for tenant", err)
        assert found, err
        return out.strip(), found.group(1)

    def sign_in(self, client: httpx.Client, key: str) -> httpx.Response:
        with self.bearer(key) as c:
            until(lambda: c.get("/v1/agents").status_code == 200, timeout_s=5, what="the key works")
        r = client.post("/v1/session", json={"key": key}, headers=self.origin)
        assert r.status_code == 200, r.text
        return r


@pytest.fixture(scope="module")
def console_api(ray_session: Any) -> Iterator[ConsoleApi]:
    import ray
    from ray import serve

    from serve_app._app import ApiDeployment

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = ApiDeployment.options(  # type: ignore[attr-defined]
        num_replicas=REPLICAS, autoscaling_config=None
    ).bind(None)
    serve.run(app, name="console-session", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout_s=60, what="/healthz")
        yield ConsoleApi(
            url=url, image=ray_session.image, address=ray.get_runtime_context().gcs_address
        )
    finally:
        serve.shutdown()


@pytest.fixture
def driver_auth() -> Iterator[None]:
    """This test process checks tickets and credentials as a replica would: the cluster's
    records (keys, sessions, the ticket secret), not the environment's keys."""
    from serve_app import _auth
    from serve_app._auth import KeyStore, RecordKeys, records_fetch

    saved = (_auth._keys, _auth._records, _auth._sessions, _auth.sessions)
    _auth.configure(KeyStore(), RecordKeys(records_fetch))
    try:
        yield
    finally:
        _auth._keys, _auth._records, _auth._sessions, _auth.sessions = saved


def _refused_by_every_replica(probe: Any, since: float, what: str) -> float:
    """Seconds from ``since`` until ``STREAK`` answers in a row are 401 (fails after
    ``WITHIN_S``)."""
    streak = 0
    while streak < STREAK:
        r = probe()
        streak = streak + 1 if r.status_code == 401 else 0
        assert time.monotonic() - since < WITHIN_S, f"{what}: still accepted after {WITHIN_S} s"
    assert r.json()["error"]["code"] == "unauthorized"
    return time.monotonic() - since


def test_sign_in_cookie_tickets_tenants_sign_out_and_revocation(
    console_api: ConsoleApi, driver_auth: None
) -> None:
    from serve_app._auth import Ended, still_valid
    from serve_app._tickets import redeem

    key_a, key_a_id = console_api.add_key("t-console-a")
    key_b, _ = console_api.add_key("t-console-b")
    with console_api.bearer(key_a) as a_bearer:
        r = a_bearer.post(
            "/v1/agents",
            json={"name": "watched", "role": "tester", "desktop": {"image": console_api.image}},
        )
        assert r.status_code == 201, r.text
        agent_id = r.json()["id"]

    with console_api.browser() as a, console_api.browser() as b:
        signed = console_api.sign_in(a, key_a)
        assert signed.json()["tenant"] == "t-console-a"
        cookie = signed.headers["set-cookie"].lower()
        for attribute in ("orch_session=", "httponly", "samesite=strict", "path=/", "max-age="):
            assert attribute in cookie, cookie
        assert "secure" not in cookie  # plain http on loopback
        assert key_a not in signed.text and key_a not in signed.headers["set-cookie"]

        # The cookie works on the existing routes, on every replica.
        for _ in range(STREAK):
            listed = a.get("/v1/agents")
            assert listed.status_code == 200 and [x["id"] for x in listed.json()] == [agent_id]
        assert a.get("/v1/session").json()["holder"].startswith("session:")

        # State changes need the API's own origin.
        no_origin = a.post(f"/v1/agents/{agent_id}/tickets", json={"mode": "control"})
        assert no_origin.status_code == 403 and no_origin.json()["error"]["code"] == "forbidden"
        minted = a.post(
            f"/v1/agents/{agent_id}/tickets", json={"mode": "control"}, headers=console_api.origin
        )
        assert minted.status_code == 200, minted.text
        ticket = minted.json()["ticket"]
        assert minted.json()["relay_path"] == f"/v1/agents/{agent_id}/vnc?ticket={ticket}"

        # A replica minted it; this process (another one) accepts it.
        grant = asyncio.run(redeem(ticket, agent_id))
        assert grant.tenant == "t-console-a" and grant.mode == "control"
        assert grant.holder == a.get("/v1/session").json()["holder"]

        # Another tenant's cookie sees nothing of the first tenant.
        console_api.sign_in(b, key_b)
        assert b.get("/v1/agents").json() == []
        assert b.get(f"/v1/agents/{agent_id}").status_code == 404
        r = b.post(
            f"/v1/agents/{agent_id}/tickets", json={"mode": "view"}, headers=console_api.origin
        )
        assert r.status_code == 404
        r = b.delete(f"/v1/agents/{agent_id}", headers=console_api.origin)
        assert r.status_code == 404

        # B signs out: every replica refuses its cookie within a few seconds.
        b_cookie = b.cookies.get("orch_session")
        assert b_cookie
        out = b.delete("/v1/session", headers=console_api.origin)
        assert out.status_code == 204 and "orch_session" not in b.cookies
        signed_out_at = time.monotonic()
        b.cookies.set("orch_session", b_cookie)  # a stolen copy of the cookie
        took_sign_out = _refused_by_every_replica(
            lambda: b.get("/v1/agents"), signed_out_at, "a signed-out cookie"
        )

        # A fires its agent from the console (a state change with the cookie).
        fired = a.delete(f"/v1/agents/{agent_id}", headers=console_api.origin)
        assert fired.status_code == 204, fired.text

        # Revoking A's key ends its cookie, its tickets and still_valid within 5 s.
        assert asyncio.run(still_valid(grant.principal))
        console_api.cli("revoke", key_a_id)
        revoked_at = time.monotonic()
        took_revoke = _refused_by_every_replica(
            lambda: a.get("/v1/agents"), revoked_at, "a revoked key's cookie"
        )
        until(
            lambda: not asyncio.run(still_valid(grant.principal)),
            timeout_s=WITHIN_S - (time.monotonic() - revoked_at),
            what="still_valid turns false",
        )
        with pytest.raises(Ended):
            asyncio.run(redeem(ticket, agent_id))
        r = a.post("/v1/session", json={"key": key_a}, headers=console_api.origin)
        assert r.status_code == 401
    log.info(
        "sign-out refused everywhere after %.2f s; revocation after %.2f s",
        took_sign_out,
        took_revoke,
    )
