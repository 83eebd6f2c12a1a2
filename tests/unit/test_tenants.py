"""Tenants in the records: API keys kept as digests, quotas, and quota checks that hold
under concurrent admissions (threads, and two stores on one file as two processes would)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.errors import QuotaExceededError, RecordError
from orchestrator.records import SQLiteStore
from orchestrator.tenants import KEY_PREFIX, ApiKey, Quotas, digest, make_key


def agent(tenant: str = "acme", parent: AgentInfo | None = None, name: str = "a") -> AgentInfo:
    return AgentInfo(
        id=new_id("agent"),
        path=f"{parent.path if parent else tenant}/{name}",
        tenant=tenant,
        parent_id=parent.id if parent else None,
        spec=AgentSpec(name=name),
    )


def task(owner: AgentInfo, parent: TaskInfo | None = None) -> TaskInfo:
    return TaskInfo(
        id=new_id("task"),
        agent_id=owner.id,
        parent_task_id=parent.id if parent else None,
        spec=TaskSpec(description="do it"),
    )


# ---------------------------------------------------------------------- keys


def test_keys_are_random_prefixed_and_stored_as_digests_only(
    store: SQLiteStore, tmp_path: Path
) -> None:
    key = make_key()
    assert key.startswith(KEY_PREFIX) and len(key) > 40 and key != make_key()
    record = ApiKey(id=new_id("key"), tenant="acme", name="ci")
    assert store.add_api_key(record, digest(key)) == record
    assert store.active_api_keys() == [("acme", digest(key))]
    assert store.api_keys() == [record]
    assert "digest" not in record.model_dump()
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("records.sqlite3*"))
    assert key.encode() not in raw and digest(key).encode() in raw


def test_adding_a_key_again_is_idempotent_and_a_known_digest_is_refused(
    store: SQLiteStore,
) -> None:
    record = ApiKey(id=new_id("key"), tenant="acme")
    d = digest(make_key())
    store.add_api_key(record, d)
    assert store.add_api_key(record, d) == record  # a retried call
    with pytest.raises(RecordError, match="stored already"):
        store.add_api_key(ApiKey(id=new_id("key"), tenant="other"), d)
    with pytest.raises(RecordError, match="64 lower-case hex"):
        store.add_api_key(ApiKey(id=new_id("key"), tenant="acme"), "not-a-digest")
    assert len(store.api_keys()) == 1


def test_a_revoked_key_leaves_the_active_set_and_stays_listed(store: SQLiteStore) -> None:
    keep, drop = (ApiKey(id=new_id("key"), tenant=t) for t in ("acme", "acme"))
    store.add_api_key(keep, digest("k1-xxxxxxxx"))
    store.add_api_key(drop, digest("k2-xxxxxxxx"))
    revoked = store.revoke_api_key(drop.id)
    assert revoked is not None and revoked.revoked_at is not None
    again = store.revoke_api_key(drop.id)
    assert again is not None and again.revoked_at == revoked.revoked_at  # idempotent
    assert store.revoke_api_key("key-unknown") is None
    assert store.active_api_keys() == [("acme", digest("k1-xxxxxxxx"))]
    assert [k.id for k in store.api_keys()] == [keep.id, drop.id]
    assert [k.id for k in store.api_keys(include_revoked=False)] == [keep.id]
    assert store.api_keys(tenant="other") == []


def test_a_bad_tenant_name_is_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="tenant"):
        ApiKey(id="key-1", tenant="a b/../c")


# ---------------------------------------------------------------------- quotas


def test_quotas_are_unlimited_by_default_and_updated_field_by_field(store: SQLiteStore) -> None:
    assert store.quotas("acme") == Quotas()
    assert store.set_quotas("acme", Quotas(max_agents=2)) == Quotas(max_agents=2)
    both = store.set_quotas("acme", Quotas(max_running_tasks=3))
    assert both == Quotas(max_agents=2, max_running_tasks=3)
    assert store.set_quotas("acme", Quotas(max_agents=None)) == Quotas(max_running_tasks=3)
    assert store.quotas("other") == Quotas()
    with pytest.raises(ValueError):
        Quotas(max_agents=-1)


def test_max_agents_counts_live_top_level_agents_only(store: SQLiteStore) -> None:
    store.set_quotas("acme", Quotas(max_agents=1))
    first = agent(name="first")
    store.admit_agent(first)
    store.admit_agent(first)  # a retried admission is not refused by itself
    store.admit_agent(agent(parent=first, name="helper"))  # hired: not a top-level agent
    second = agent(name="second")
    with pytest.raises(QuotaExceededError) as e:
        store.admit_agent(second)
    assert "'acme' has 1 live top-level agents and its quota is 1 (max_agents)" in str(e.value)
    assert store.get_agent(second.id) is None  # nothing was stored
    store.admit_agent(agent(tenant="other", name="x"))  # another tenant is unaffected
    store.put_agent(first.model_copy(update={"status": AgentStatus.STOPPED}))
    store.admit_agent(second)  # a slot is free again


def test_max_desktops_counts_agents_at_every_level(store: SQLiteStore) -> None:
    store.set_quotas("acme", Quotas(max_desktops=2))
    boss = agent(name="boss")
    store.admit_agent(boss)
    helper = agent(parent=boss, name="helper")
    store.admit_agent(helper)
    with pytest.raises(QuotaExceededError, match=r"has 2 live desktops .* quota is 2"):
        store.admit_agent(agent(parent=boss, name="helper-2"))
    store.put_agent(helper.model_copy(update={"status": AgentStatus.FAILED}))
    store.admit_agent(agent(parent=boss, name="helper-2"))


def test_max_running_tasks_counts_open_tasks_given_from_outside(store: SQLiteStore) -> None:
    boss = agent(name="boss")
    store.put_agent(boss)
    helper = agent(parent=boss, name="helper")
    store.put_agent(helper)
    store.set_quotas("acme", Quotas(max_running_tasks=1))
    ended = task(boss).model_copy(update={"state": TaskState.SUCCEEDED})
    store.put_task(ended)  # a task that ended takes no slot
    first = task(boss)
    store.admit_task(first)
    store.admit_task(first)  # a retry
    store.admit_task(task(helper, parent=first))  # delegated: part of its parent's run
    with pytest.raises(QuotaExceededError, match=r"1 tasks pending or running .*max_running"):
        store.admit_task(task(helper))
    other = agent(tenant="other", name="x")
    store.put_agent(other)
    store.admit_task(task(other))  # another tenant is unaffected


@pytest.mark.parametrize(
    "state", [TaskState.INPUT_REQUIRED, TaskState.APPROVAL_REQUIRED, TaskState.PAUSED]
)
def test_a_task_waiting_for_a_person_keeps_its_slot(store: SQLiteStore, state: TaskState) -> None:
    """It is open (it goes on once the person acts): it counts against max_running_tasks."""
    boss = agent(name="boss")
    store.put_agent(boss)
    store.set_quotas("acme", Quotas(max_running_tasks=1))
    store.put_task(task(boss).model_copy(update={"state": state}))
    with pytest.raises(QuotaExceededError, match=r"has 1 tasks pending or running"):
        store.admit_task(task(boss))


@pytest.mark.parametrize("stores", [1, 2], ids=["one-store", "two-stores-one-file"])
def test_concurrent_admissions_cannot_both_take_the_last_slot(tmp_path: Path, stores: int) -> None:
    opened = [SQLiteStore(tmp_path) for _ in range(stores)]
    try:
        opened[0].set_quotas("acme", Quotas(max_agents=1, max_running_tasks=2))
        _race(opened, lambda s, i: s.admit_agent(agent(name=f"a{i}")), admitted=1)
        boss = opened[0].list_agents(tenant="acme")[0]
        _race(opened, lambda s, i: s.admit_task(task(boss)), admitted=2)
    finally:
        for s in opened:
            s.close()


def _race(
    stores: list[SQLiteStore], admit: Callable[[SQLiteStore, int], None], admitted: int
) -> None:
    """16 threads admit at once (released together by a barrier); count who got in."""
    n = 16
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        barrier.wait()
        try:
            admit(stores[i % len(stores)], i)
            result = "ok"
        except QuotaExceededError:
            result = "quota"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["ok"] * admitted + ["quota"] * (n - admitted), outcomes
