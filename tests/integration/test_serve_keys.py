"""API keys and quotas on a running API, through real HTTP: keys added and revoked with
``orchestrator keys`` (the CLI, in this process, on the session's cluster) while a Serve
deployment of two replicas answers, and tenants' quotas refusing with 429.

The deployment starts once for the module and is shut down at the end.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.integration.serve_api import free_port
from tests.integration.test_serve_api import until

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

FILE_TENANT = "t-keys-file"
REPLICAS = 2
REVOKE_WITHIN_S = 5.0
SLEEPY = {"steps": [{"type": "shell", "command": "sleep 60"}]}


@dataclass
class KeysApi:
    url: str
    image: str
    address: str
    file_key: str

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )

    def cli(self, *args: str) -> tuple[str, str]:
        """Run ``orchestrator keys ARGS`` on the session's cluster; (stdout, stderr)."""
        from orchestrator.cli import main

        result = CliRunner().invoke(main, ["keys", *args, "--address", self.address])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout, result.stderr

    def add_key(self, tenant: str, *options: str) -> tuple[str, str]:
        """A new key of ``tenant`` (with quota ``options``): (key, key id)."""
        out, err = self.cli("add", tenant, "--name", "integration", *options)
        found = re.search(r"key (key-[0-9a-f]+) for tenant", err)
        assert found, err
        return out.strip(), found.group(1)

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "role": "tester", "desktop": {"image": self.image}}


@pytest.fixture(scope="module")
def keys_api(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeysApi]:
    """The API on two replicas; its keys file holds one tenant's key (the rest come from
    the records)."""
    import secrets

    import ray
    from ray import serve

    from serve_app._app import ApiDeployment

    file_key = secrets.token_urlsafe(24)
    keys_file: Path = tmp_path_factory.mktemp("serve-keys") / "api-keys"
    keys_file.write_text(f"{FILE_TENANT}:{file_key}\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = ApiDeployment.options(  # type: ignore[attr-defined]
        num_replicas=REPLICAS, autoscaling_config=None
    ).bind(str(keys_file))
    serve.run(app, name="keys", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout_s=60, what="/healthz")
        yield KeysApi(
            url=url,
            image=ray_session.image,
            address=ray.get_runtime_context().gcs_address,
            file_key=file_key,
        )
    finally:
        serve.shutdown()


def _code(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


def test_a_key_added_while_the_api_runs_works_and_stops_within_5_s_of_its_revocation(
    keys_api: KeysApi,
) -> None:
    tenant = "t-keys-added"
    key, key_id = keys_api.add_key(tenant)
    with keys_api.client(key) as c:
        t0 = time.monotonic()
        until(
            lambda: c.get("/v1/agents").status_code == 200,
            timeout_s=5,
            what="the new key works",
            interval_s=0.02,
        )
        took_add = time.monotonic() - t0
        for _ in range(20):  # every replica has taken the key into its copy
            assert c.get("/v1/agents").status_code == 200
        with keys_api.client(keys_api.file_key) as f:  # the file's keys work beside them
            assert f.get("/v1/agents").status_code == 200

        listed, _ = keys_api.cli("list", "--tenant", tenant)
        assert key_id in listed and key not in listed
        from orchestrator.tenants import digest

        assert digest(key) not in listed and digest(key)[:16] not in listed

        keys_api.cli("revoke", key_id)
        revoked_at = time.monotonic()
        # Each replica refuses it once its copy is read again: until 20 answers in a row
        # are 401 (with two replicas, both of them), within 5 s.
        streak = 0
        while streak < 20:
            r = c.get("/v1/agents")
            streak = streak + 1 if r.status_code == 401 else 0
            assert time.monotonic() - revoked_at < REVOKE_WITHIN_S, "still accepted after 5 s"
        took_revoke = time.monotonic() - revoked_at
        assert _code(r) == "unauthorized"
    listed, _ = keys_api.cli("list", "--tenant", tenant)
    assert re.search(rf"{key_id}\s+{tenant}\s+\S+ \S+\s+\d{{4}}-", listed), listed  # revoked
    log.info("new key in force after %.2f s; revoked after %.2f s", took_add, took_revoke)


def test_quotas_refuse_with_429_and_leave_other_tenants_alone(keys_api: KeysApi) -> None:
    capped, _ = keys_api.add_key("t-keys-capped", "--max-agents", "1")
    free, _ = keys_api.add_key("t-keys-free")
    created: list[tuple[str, str]] = []
    for key in (capped, free):  # a new key is in force within a fraction of a second
        with keys_api.client(key) as c:
            until(lambda c=c: c.get("/v1/agents").status_code == 200, timeout_s=5, what="new key")
    try:
        # Three creates at once against a quota of one: exactly one passes.
        answers: list[httpx.Response] = []

        def create(i: int) -> None:
            with keys_api.client(capped) as c:
                answers.append(c.post("/v1/agents", json=keys_api.spec(f"a{i}")))

        threads = [threading.Thread(target=create, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        ok = [r for r in answers if r.status_code == 201]
        refused = [r for r in answers if r.status_code == 429]
        assert len(ok) == 1 and len(refused) == 2, [(r.status_code, r.text) for r in answers]
        created.append((capped, ok[0].json()["id"]))
        for r in refused:
            assert _code(r) == "quota_exceeded" and "Retry-After" not in r.headers
            message = r.json()["error"]["message"]
            assert "has 1 live top-level agents and its quota is 1 (max_agents)" in message
        with keys_api.client(capped) as c:
            assert len(c.get("/v1/agents").json()) == 1  # the refused ones left no record

        # Another tenant is not affected.
        with keys_api.client(free) as c:
            r = c.post("/v1/agents", json=keys_api.spec("b"))
            assert r.status_code == 201, r.text
            created.append((free, r.json()["id"]))

        # Desktops (a hire) and running tasks, set on the running cluster.
        keys_api.cli("quota", "t-keys-capped", "--max-desktops", "1", "--max-running-tasks", "1")
        boss = ok[0].json()["id"]
        with keys_api.client(capped) as c:
            r = c.post(f"/v1/agents/{boss}/children", json=keys_api.spec("helper"))
            assert r.status_code == 429 and _code(r) == "quota_exceeded", r.text
            assert "(max_desktops)" in r.json()["error"]["message"]
            first = c.post(f"/v1/agents/{boss}/tasks", json={"description": "s", "script": SLEEPY})
            assert first.status_code == 202, first.text
            r = c.post(f"/v1/agents/{boss}/tasks", json={"description": "s", "script": SLEEPY})
            assert r.status_code == 429 and _code(r) == "quota_exceeded", r.text
            assert "has 1 tasks pending or running and its quota is 1" in r.text
            assert c.post(f"/v1/tasks/{first.json()['id']}/cancel").status_code == 200
            r = c.post(f"/v1/agents/{boss}/tasks", json={"description": "s", "script": SLEEPY})
            assert r.status_code == 202, r.text  # the slot is free again
            c.post(f"/v1/tasks/{r.json()['id']}/cancel")
        keys_api.cli("quota", "t-keys-capped", "--max-agents", "unlimited")
        out, _ = keys_api.cli("quota", "t-keys-capped")
        assert "agents unlimited, desktops 1, running tasks 1" in out
    finally:
        for key, agent_id in created:
            with keys_api.client(key) as c:
                c.delete(f"/v1/agents/{agent_id}")
