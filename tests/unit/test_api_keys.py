"""API keys kept in the records, as the API checks them: a replica's copy is read again
within seconds (a revocation holds), an unknown key is looked up at once (a new key works),
a copy that cannot be refreshed is not trusted; and quota refusals answer 429.

The keys come from a real record store in a temporary directory (no Ray): ``RecordKeys``
reads it through the same function a replica's ``RecorderRef`` calls on the recorder's node.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ray.exceptions import RayTaskError

from orchestrator.domain import new_id
from orchestrator.errors import QuotaExceededError, RecordError
from orchestrator.records import SQLiteStore
from orchestrator.tenants import ApiKey, digest, make_key
from serve_app import KeyStore, _auth, build_app
from serve_app._auth import (
    KEYS_MAX_AGE_S,
    KEYS_MISS_REFRESH_S,
    KEYS_REFRESH_S,
    RecordKeys,
)
from serve_app._errors import _runtime_error


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Records:
    """The records' keys as a replica reads them, with a switch to make reads fail."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.reads = 0
        self.down = False

    async def fetch(self) -> list[tuple[str, str]]:
        self.reads += 1
        if self.down:
            raise RecordError("the recorder is not running on this cluster")
        return self.store.active_api_keys()

    def add(self, tenant: str) -> tuple[str, ApiKey]:
        key = make_key()
        return key, self.store.add_api_key(ApiKey(id=new_id("key"), tenant=tenant), digest(key))


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    with SQLiteStore(tmp_path) as store:
        yield Records(store)


def test_a_new_key_works_at_once_and_a_revoked_one_stops_within_the_refresh(
    records: Records,
) -> None:
    clock = Clock()
    keys = RecordKeys(records.fetch, clock)

    async def go() -> None:
        assert await keys.tenant_for("never-issued-key") is None
        clock.now += KEYS_MISS_REFRESH_S  # the copy is just old enough for a miss to re-read
        key, record = records.add("acme")
        assert await keys.tenant_for(key) == "acme"
        records.store.revoke_api_key(record.id)
        clock.now += KEYS_REFRESH_S / 2
        assert await keys.tenant_for(key) == "acme"  # the copy is young: still in it
        # a sign-in asks for a fresh copy: the revoked key opens no session meanwhile
        assert await keys.tenant_for(key, KEYS_MISS_REFRESH_S) is None
        clock.now += KEYS_REFRESH_S / 2
        assert await keys.tenant_for(key) is None  # read again: revoked
        assert KEYS_REFRESH_S + KEYS_MISS_REFRESH_S < 5  # the bound, with room

    asyncio.run(go())


def test_unknown_keys_cannot_make_a_replica_read_the_records_more_often(
    records: Records,
) -> None:
    clock = Clock()
    keys = RecordKeys(records.fetch, clock)

    async def go() -> None:
        for i in range(50):
            assert await keys.tenant_for(f"guess-{i}-xxxxxxxx") is None
        assert records.reads == 1
        clock.now += KEYS_MISS_REFRESH_S
        await asyncio.gather(*(keys.tenant_for(f"guess-{i}") for i in range(20)))
        assert records.reads == 2  # concurrent misses share one read

    asyncio.run(go())


def test_a_copy_that_cannot_be_refreshed_is_not_trusted_for_long(records: Records) -> None:
    clock = Clock()
    keys = RecordKeys(records.fetch, clock)
    key, _ = records.add("acme")

    async def go() -> None:
        assert await keys.tenant_for(key) == "acme"
        records.down = True
        clock.now += KEYS_REFRESH_S + 0.1
        assert await keys.tenant_for(key) == "acme"  # the read failed; the copy is young
        clock.now = 1000.0 + KEYS_MAX_AGE_S + 0.1
        with pytest.raises(RecordError, match="cannot be read"):
            await keys.tenant_for(key)  # revoked meanwhile? nobody can tell: refuse
        records.down = False
        clock.now += KEYS_MISS_REFRESH_S
        assert await keys.tenant_for(key) == "acme"

    asyncio.run(go())


@pytest.fixture
def app_with_records(records: Records) -> Iterator[tuple[TestClient, Records, Clock]]:
    saved = (_auth._keys, _auth._records)
    clock = Clock()
    env_keys = KeyStore.parse("t-env:env-key-12345678")
    app = build_app(env_keys)
    _auth.configure(env_keys, RecordKeys(records.fetch, clock))
    try:
        with TestClient(app) as client:
            yield client, records, clock
    finally:
        _auth._keys, _auth._records = saved


def test_the_api_takes_records_keys_beside_the_environments(
    app_with_records: tuple[TestClient, Records, Clock],
) -> None:
    client, records, clock = app_with_records
    key, record = records.add("t-rec")

    def post(k: str) -> int:
        # a malformed body: 422 for a valid key (the key is checked first), else 401
        r = client.post(
            "/v1/agents",
            content=b'{"name": ',
            headers={"Authorization": f"Bearer {k}", "Content-Type": "application/json"},
        )
        return r.status_code

    assert post(key) == 422
    assert post("env-key-12345678") == 422
    records.store.revoke_api_key(record.id)
    clock.now += KEYS_REFRESH_S
    assert post(key) == 401
    other, _ = records.add("t-rec")
    clock.now += KEYS_MISS_REFRESH_S
    assert post(other) == 422
    records.down = True
    clock.now += KEYS_MAX_AGE_S + 1
    assert post(other) == 503  # the records cannot say whether it still holds
    assert post("env-key-12345678") == 422  # the environment's keys need no records


def _quota() -> QuotaExceededError:
    return QuotaExceededError(
        "quota exceeded: tenant 'acme' has 1 live top-level agents and its quota is 1 "
        "(max_agents); fire one first, or ask the operator for more"
    )


def test_a_quota_refusal_is_429_quota_exceeded_with_the_limit_and_no_retry_after() -> None:
    r = _runtime_error(_quota())
    body = json.loads(r.body)["error"]
    assert r.status_code == 429 and body["code"] == "quota_exceeded"
    assert "has 1 live top-level agents and its quota is 1 (max_agents)" in body["message"]
    assert "Retry-After" not in r.headers  # waiting alone frees nothing


def test_a_refusal_from_the_recorder_passed_on_by_an_agent_keeps_its_message() -> None:
    # The recorder raises it, the agent's hire re-raises it: Ray wraps it twice.
    inner = RayTaskError("Recorder.admit_agent", "Traceback ...", _quota()).as_instanceof_cause()
    outer = RayTaskError("AgentActor.hire", "Traceback ...", inner).as_instanceof_cause()
    r = _runtime_error(outer)
    body = json.loads(r.body)["error"]
    assert r.status_code == 429 and body["message"].startswith("quota exceeded: tenant 'acme'")
