"""The record store: round trips, ordering and paging, filters, blobs, reopening, threads."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from pydantic import SecretStr

import orchestrator.records
from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    BrainConfig,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.errors import RecordError
from orchestrator.records import MAX_LIMIT, RecordStore, SQLiteStore, open_store
from orchestrator.records._schema import MIGRATIONS, SCHEMA_VERSION, migrate


def agent(tenant: str = "acme", parent: AgentInfo | None = None, name: str = "a") -> AgentInfo:
    path = f"{parent.path if parent else tenant}/{name}"
    return AgentInfo(
        id=new_id("agent"),
        path=path,
        tenant=tenant,
        parent_id=parent.id if parent else None,
        spec=AgentSpec(name=name, role="tester"),
    )


def task(owner: AgentInfo, created_at: float, **kw: object) -> TaskInfo:
    return TaskInfo(
        id=new_id("task"),
        agent_id=owner.id,
        spec=TaskSpec(description="do it"),
        created_at=created_at,
        **kw,
    )


def ids(records: Iterable[AgentInfo | TaskInfo]) -> list[str]:
    return [r.id for r in records]


def test_public_api_is_pinned() -> None:
    assert orchestrator.records.__all__ == [
        "DB_NAME",
        "MAX_LIMIT",
        "ConsoleSession",
        "GcReport",
        "RecordStore",
        "SQLiteStore",
        "StoreStats",
        "media_type",
        "open_store",
        "write_artifacts",
    ]
    for name in orchestrator.records.__all__:
        assert getattr(orchestrator.records, name) is not None


def test_database_is_wal_with_full_sync(store: SQLiteStore) -> None:
    assert store._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.path == store.data_dir / "records.sqlite3"


# ---------------------------------------------------------------------- agents


def test_agent_round_trip_and_replace(store: SQLiteStore) -> None:
    a = agent()
    store.put_agent(a)
    assert store.get_agent(a.id) == a
    busy = a.model_copy(update={"status": AgentStatus.BUSY})
    store.put_agent(busy)
    assert store.get_agent(a.id) == busy
    assert store.list_agents() == [busy]
    assert store.get_agent("agent-unknown") is None


def test_the_api_key_is_never_stored(store: SQLiteStore) -> None:
    brain = BrainConfig(kind="openai", model="m", api_key=SecretStr("sk-very-secret"))
    a = agent().model_copy(update={"spec": AgentSpec(name="a", brain=brain)})
    store.put_agent(a)
    back = store.get_agent(a.id)
    assert back is not None and back.spec.brain.api_key is None
    assert back.spec.brain.model == "m"
    store.close()
    raw = b"".join(p.read_bytes() for p in store.data_dir.glob("records.sqlite3*"))
    assert b"sk-very-secret" not in raw


def test_list_agents_filters(store: SQLiteStore) -> None:
    boss = agent("acme", name="boss")
    helper = agent("acme", boss, "helper").model_copy(update={"status": AgentStatus.IDLE})
    other = agent("globex", name="boss")
    for i, a in enumerate((boss, helper, other)):
        store.put_agent(a.model_copy(update={"created_at": 1000.0 + i}))
    assert ids(store.list_agents()) == [boss.id, helper.id, other.id]
    assert ids(store.list_agents(tenant="acme")) == [boss.id, helper.id]
    assert ids(store.list_agents(tenant="acme", top_level=True)) == [boss.id]
    assert ids(store.list_agents(parent_id=boss.id)) == [helper.id]
    assert ids(store.list_agents(status=AgentStatus.IDLE)) == [helper.id]
    both = [AgentStatus.IDLE, AgentStatus.STARTING]
    assert ids(store.list_agents(tenant="acme", status=both)) == [boss.id, helper.id]
    assert ids(store.list_agents(limit=1)) == [boss.id]
    assert ids(store.list_agents(limit=1, offset=1)) == [helper.id]
    assert ids(store.list_agents(limit=5, offset=2)) == [other.id]
    assert store.list_agents(offset=3) == []
    assert store.list_agents(tenant="initech") == []
    with pytest.raises(RecordError, match="offset"):
        store.list_agents(offset=-1)


# ---------------------------------------------------------------------- tasks


def test_task_round_trip_and_replace(store: SQLiteStore) -> None:
    a = agent()
    t = task(a, 1.0)
    store.put_task(t)
    assert store.get_task(t.id) == t
    done = t.model_copy(
        update={"state": TaskState.SUCCEEDED, "result": "ok", "subtask_ids": ["task-x"]}
    )
    said = Event(kind=EventKind.TASK, task_id=t.id, data={"state": "succeeded"})
    store.put_task(done, said)  # a new state comes with its event (test_records_task_state)
    assert store.get_task(t.id) == done
    assert store.get_task("task-unknown") is None


def test_list_tasks_filters_and_pages_newest_first(store: SQLiteStore) -> None:
    acme, globex = agent("acme"), agent("globex")
    store.put_agent(acme)
    store.put_agent(globex)
    t1 = task(acme, 1.0, state=TaskState.SUCCEEDED)
    t2 = task(acme, 2.0, state=TaskState.RUNNING)
    t3 = task(globex, 3.0, state=TaskState.RUNNING)
    sub = task(globex, 4.0, parent_task_id=t3.id)
    orphan = task(agent("acme"), 5.0)  # its agent was never stored: no known tenant
    for t in (t1, t2, t3, sub, orphan):
        store.put_task(t)
    assert ids(store.list_tasks()) == [orphan.id, sub.id, t3.id, t2.id, t1.id]
    assert ids(store.list_tasks(agent_id=acme.id)) == [t2.id, t1.id]
    assert ids(store.list_tasks(tenant="acme")) == [t2.id, t1.id]
    assert ids(store.list_tasks(tenant="globex")) == [sub.id, t3.id]
    assert ids(store.list_tasks(tenant="acme", agent_id=globex.id)) == []
    assert ids(store.list_tasks(state=TaskState.RUNNING)) == [t3.id, t2.id]
    unfinished = [s for s in TaskState if not s.done]
    assert ids(store.list_tasks(tenant="globex", state=unfinished)) == [sub.id, t3.id]
    assert ids(store.list_tasks(parent_task_id=t3.id)) == [sub.id]
    assert ids(store.list_tasks(limit=2)) == [orphan.id, sub.id]
    assert ids(store.list_tasks(limit=2, offset=2)) == [t3.id, t2.id]
    assert ids(store.list_tasks(limit=2, offset=4)) == [t1.id]
    # by the status of the task's agent (the janitor's "open tasks of ended agents")
    store.put_agent(globex.model_copy(update={"status": AgentStatus.STOPPED}))
    assert ids(store.list_tasks(agent_status=AgentStatus.STOPPED)) == [sub.id, t3.id]
    ended = [AgentStatus.STOPPED, AgentStatus.FAILED]
    assert ids(store.list_tasks(agent_status=ended, state=TaskState.RUNNING)) == [t3.id]
    assert ids(store.list_tasks(agent_status=AgentStatus.STARTING)) == [t2.id, t1.id]
    assert ids(store.list_tasks(tenant="acme", agent_status=AgentStatus.STOPPED)) == []


# ---------------------------------------------------------------------- events


def test_event_round_trip_assigns_growing_seqs(store: SQLiteStore) -> None:
    addr = store.put_blob(b"png", "image/png")
    sent = [
        Event(kind=EventKind.STEP, agent_id="agent-1", task_id="task-1", blobs=[addr],
              data={"action": {"type": "click", "x": 3}, "result": {"ok": True}}),
        Event(kind=EventKind.MESSAGE, agent_id="agent-1", data={"to": "agent-2", "text": "hi"}),
        Event(kind=EventKind.TASK, task_id="task-1", data={"state": "succeeded", "result": "x"}),
    ]  # fmt: skip
    stored = [store.append_event(e) for e in sent]
    seqs = [e.seq for e in stored]
    assert all(isinstance(s, int) for s in seqs) and seqs == sorted(set(seqs))  # type: ignore[type-var]
    for s, e in zip(stored, sent, strict=True):
        assert s == e.model_copy(update={"seq": s.seq})
    assert store.events() == stored


def test_events_page_and_filter(store: SQLiteStore) -> None:
    kinds = [EventKind.STEP, EventKind.MODEL, EventKind.LOG]
    stored = [
        store.append_event(
            Event(kind=kinds[i % 3], agent_id=f"agent-{i % 2}", task_id=f"task-{i % 4}",
                  data={"i": i})
        )
        for i in range(40)
    ]  # fmt: skip
    # Page through everything, 7 at a time, by the last seq seen.
    seen: list[Event] = []
    after = 0
    while page := store.events(after_seq=after, limit=7):
        assert len(page) <= 7
        seen += page
        after = page[-1].seq or 0
    assert seen == stored
    assert store.events(after_seq=stored[-1].seq or 0) == []

    def got(**filters: object) -> list[int]:
        filters.setdefault("limit", MAX_LIMIT)
        return [e.data["i"] for e in store.events(**filters)]  # type: ignore[arg-type]

    every = range(40)
    assert got(task_id="task-1") == [i for i in every if i % 4 == 1]
    assert got(agent_id="agent-0") == [i for i in every if i % 2 == 0]
    assert got(kinds=[EventKind.LOG]) == [i for i in every if i % 3 == 2]
    both = [EventKind.STEP, EventKind.MODEL]
    assert got(task_id="task-2", kinds=both) == [i for i in every if i % 4 == 2 and i % 3 < 2]
    assert got(agent_id="agent-1", task_id="task-2") == []  # odd i with i % 4 == 2: none
    assert got(task_id="task-1", after_seq=stored[20].seq, limit=2) == [21, 25]
    assert got(kinds=[]) == []


def test_events_refuse_restored_events_unknown_blobs_and_bad_data(store: SQLiteStore) -> None:
    stored = store.append_event(Event(kind=EventKind.LOG))
    with pytest.raises(RecordError, match="stored already"):
        store.append_event(stored)
    with pytest.raises(RecordError, match="does not hold"):
        store.append_event(Event(kind=EventKind.STEP, blobs=["a" * 64]))
    with pytest.raises(RecordError, match="malformed"):
        store.append_event(Event(kind=EventKind.STEP, blobs=["../../etc/passwd"]))
    with pytest.raises(RecordError):
        store.append_event(Event(kind=EventKind.LOG, data={"x": object()}))
    assert store.events() == [stored]  # nothing half-stored


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.events(limit=0),
        lambda s: s.events(limit=MAX_LIMIT + 1),
        lambda s: s.events(after_seq=-1),
        lambda s: s.list_tasks(offset=-1),
        lambda s: s.list_agents(limit=0),
        lambda s: s.list_tasks(state="no-such-state"),
        lambda s: s.get_blob("xyz"),
        lambda s: s.put_blob("text", "text/plain"),
        lambda s: s.put_blob(b"x", ""),
    ],
)
def test_bad_arguments_are_record_errors(store: SQLiteStore, call: object) -> None:
    with pytest.raises(RecordError):
        call(store)  # type: ignore[operator]


# ---------------------------------------------------------------------- blobs


def test_blobs_are_content_addressed_and_idempotent(store: SQLiteStore) -> None:
    data = os.urandom(100_000)
    address = store.put_blob(data, "image/jpeg")
    assert address == hashlib.sha256(data).hexdigest()
    assert store.put_blob(data, "image/png") == address  # the first media type stays
    assert store.blob_media_type(address) == "image/jpeg"
    assert store.get_blob(address) == data
    path = store.blob_path(address)
    assert path == store.data_dir / "blobs" / address[:2] / address[2:]
    assert path.read_bytes() == data
    files = [p for p in (store.data_dir / "blobs").rglob("*") if p.is_file()]
    assert files == [path]  # one file, no temporary files left
    assert store.put_blob(b"", "text/plain") == hashlib.sha256(b"").hexdigest()
    assert store.get_blob(hashlib.sha256(b"").hexdigest()) == b""


def test_unknown_malformed_and_corrupt_blobs(store: SQLiteStore) -> None:
    unknown = "0" * 64
    for bad in (unknown, "../" + unknown[3:], "A" * 64, ""):
        assert store.blob_path(bad) is None
        assert store.blob_media_type(bad) is None
        with pytest.raises(RecordError):
            store.get_blob(bad)
    address = store.put_blob(b"original", "text/plain")
    path = store.blob_path(address)
    assert path is not None
    path.write_bytes(b"tampered")
    with pytest.raises(RecordError, match="corrupt"):
        store.get_blob(address)
    path.unlink()
    assert store.blob_path(address) is None
    assert store.put_blob(b"original", "text/plain") == address  # heals the missing file
    assert store.get_blob(address) == b"original"


def test_stale_temporary_blob_files_are_removed_on_open(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
    tmp_dir = tmp_path / "blobs" / ".tmp"
    stale, fresh, held = (tmp_dir / n for n in ("stale", "fresh", "held"))
    for p in (stale, fresh, held):
        p.write_bytes(b"half a blob")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(held, (old, old))
    with open(held, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # a live writer is still writing it
        SQLiteStore(tmp_path).close()
    assert not stale.exists()
    assert fresh.exists() and held.exists()


# ---------------------------------------------------------------------- lifetime


def test_a_reopened_store_sees_everything(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path) as first:
        a = agent()
        t = task(a, 1.0)
        first.put_agent(a)
        first.put_task(t)
        blob = first.put_blob(b"screenshot", "image/jpeg")
        events = [first.append_event(Event(kind=EventKind.STEP, blobs=[blob])) for _ in range(3)]
    with pytest.raises(RecordError, match="closed"):
        first.events()
    with pytest.raises(RecordError, match="closed"):
        first.put_agent(a)
    second = open_store(tmp_path)
    assert isinstance(second, RecordStore)
    with second:
        assert second.get_agent(a.id) == a
        assert second.get_task(t.id) == t
        assert second.list_tasks(tenant=a.tenant) == [t]
        assert second.events() == events
        assert second.get_blob(blob) == b"screenshot"
        later = second.append_event(Event(kind=EventKind.LOG))
        assert (later.seq or 0) > (events[-1].seq or 0)


def test_open_store_defaults_to_the_configured_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.config import settings

    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path / "data"))
    settings.cache_clear()
    try:
        with open_store() as s:
            assert isinstance(s, SQLiteStore) and s.data_dir == tmp_path / "data"
    finally:
        settings.cache_clear()
    assert (tmp_path / "data" / "records.sqlite3").is_file()


def test_migrations_run_once_and_newer_databases_are_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "records.sqlite3", isolation_level=None)
    try:
        assert migrate(db) == SCHEMA_VERSION  # nothing to do
        added = lambda c: c.execute("ALTER TABLE events ADD COLUMN extra TEXT")  # noqa: E731
        assert migrate(db, (*MIGRATIONS, added)) == SCHEMA_VERSION
        assert "extra" in {row[1] for row in db.execute("PRAGMA table_info(events)")}
        assert migrate(db, (*MIGRATIONS, added)) == SCHEMA_VERSION + 1
    finally:
        db.close()
    with pytest.raises(RecordError, match="newer"):
        SQLiteStore(tmp_path)


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "records.sqlite3", isolation_level=None)

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError):
            migrate(db, (*MIGRATIONS, broken))
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchall() == []
        version = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        assert version == len(MIGRATIONS)
    finally:
        db.close()


# ---------------------------------------------------------------------- concurrency


def test_threads_appending_lose_no_event_and_a_tail_sees_each_once(store: SQLiteStore) -> None:
    threads, per_thread = 8, 200
    acked: list[list[int]] = [[] for _ in range(threads)]
    tailed: list[Event] = []
    writing = threading.Event()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(per_thread):
                ev = store.append_event(Event(kind=EventKind.LOG, agent_id=f"w{n}", data={"i": i}))
                acked[n].append(ev.seq or 0)
        except BaseException as e:
            errors.append(e)

    def tail() -> None:
        after = 0
        try:
            while True:
                finished = not writing.is_set()  # read before the query: then it sees all
                page = store.events(after_seq=after, limit=50)
                tailed.extend(page)
                if page:
                    after = page[-1].seq or 0
                elif finished:
                    return
        except BaseException as e:
            errors.append(e)

    writing.set()
    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    tailer = threading.Thread(target=tail)
    for w in [*workers, tailer]:
        w.start()
    for w in workers:
        w.join()
    writing.clear()
    tailer.join()
    assert errors == []
    seqs = [s for per in acked for s in per]
    assert len(set(seqs)) == threads * per_thread
    for per in acked:
        assert per == sorted(per)  # one thread's events keep its order
    stored = store.events(limit=MAX_LIMIT)
    assert sorted(seqs) == [e.seq for e in stored]
    for n in range(threads):
        assert [e.data["i"] for e in stored if e.agent_id == f"w{n}"] == list(range(per_thread))
    # A reader tailing by after_seq while writers commit sees every event exactly once.
    assert [e.seq for e in tailed] == [e.seq for e in stored]


def test_stores_opened_at_once_on_a_new_directory_all_work(tmp_path: Path) -> None:
    # Switching a new database to WAL races with other openers ("database is locked").
    def open_and_write(data_dir: Path, start: threading.Barrier, errors: list[Exception]) -> None:
        start.wait()
        try:
            with SQLiteStore(data_dir) as s:
                s.append_event(Event(kind=EventKind.LOG))
        except Exception as e:
            errors.append(e)

    for attempt in range(5):
        data_dir = tmp_path / str(attempt)
        start = threading.Barrier(6)
        errors: list[Exception] = []
        openers = [
            threading.Thread(target=open_and_write, args=(data_dir, start, errors))
            for _ in range(6)
        ]
        for t in openers:
            t.start()
        for t in openers:
            t.join()
        assert errors == []
        with SQLiteStore(data_dir) as s:
            assert len(s.events()) == 6


def test_a_blob_write_that_fails_midway_leaves_nothing(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("orchestrator.records._blobs.os.rename", crash)
    with pytest.raises(RecordError, match="Input/output error"):
        store.put_blob(b"never whole", "text/plain")
    address = hashlib.sha256(b"never whole").hexdigest()
    assert store.blob_path(address) is None
    assert [p for p in (store.data_dir / "blobs").rglob("*") if p.is_file()] == []
    with pytest.raises(RecordError, match="does not hold"):
        store.append_event(Event(kind=EventKind.STEP, blobs=[address]))


def test_a_retried_append_stores_the_event_once(tmp_path: Path) -> None:
    from orchestrator.domain import Event, EventKind
    from orchestrator.records import SQLiteStore

    with SQLiteStore(tmp_path) as store:
        event = Event(kind=EventKind.LOG, task_id="task-1", data={"n": 1})
        first = store.append_event(event)
        again = store.append_event(event)
        assert first.seq == again.seq
        assert [e.id for e in store.events(task_id="task-1")] == [event.id]


def test_a_read_only_store_sees_the_writers_commits_and_cannot_write(tmp_path: Path) -> None:
    from orchestrator.domain import AgentInfo, AgentSpec
    from orchestrator.errors import RecordError
    from orchestrator.records import SQLiteStore

    with pytest.raises(RecordError, match="no records"):
        SQLiteStore(tmp_path / "none", readonly=True)
    writer = SQLiteStore(tmp_path)
    reader = SQLiteStore(tmp_path, readonly=True)
    try:
        info = AgentInfo(
            id="agent-ro", path="t/a", tenant="t", parent_id=None, spec=AgentSpec(name="a")
        )
        assert reader.get_agent("agent-ro") is None
        writer.put_agent(info)
        got = reader.get_agent("agent-ro")
        assert got is not None and got.path == "t/a"
        with pytest.raises((RecordError, AttributeError)):
            reader.put_agent(info)
    finally:
        reader.close()
        writer.close()
