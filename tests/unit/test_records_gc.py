"""Garbage collection of records on a real store: what ended before the cutoff goes with its
blobs; shared blobs, pinned runs, open tasks and live agents' records stay."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.errors import RecordError
from orchestrator.records import SQLiteStore
from orchestrator.records._gc import BLOB_GRACE_S
from orchestrator.records._schema import MIGRATIONS, migrate

DAY = 86_400.0
NOW = time.time()
OLD = NOW - 40 * DAY
"""Older than the 30-day cutoff the tests use."""
FRESH = NOW - DAY


def _agent(
    store: SQLiteStore,
    status: AgentStatus = AgentStatus.STOPPED,
    at: float = OLD,
    parent: AgentInfo | None = None,
) -> AgentInfo:
    info = AgentInfo(
        id=new_id("agent"),
        path=f"{parent.path if parent else 'acme'}/{new_id('a')}",
        tenant="acme",
        parent_id=parent.id if parent else None,
        spec=AgentSpec(name="a", role="tester"),
        status=status,
        created_at=at,
    )
    store.put_agent(info)
    store.append_event(Event(kind=EventKind.AGENT, agent_id=info.id, at=at))
    return info


def _task(
    store: SQLiteStore,
    owner: AgentInfo,
    ended: float = OLD,
    state: TaskState = TaskState.SUCCEEDED,
    parent: TaskInfo | None = None,
    shot: bytes | None = None,
) -> TaskInfo:
    info = TaskInfo(
        id=new_id("task"),
        agent_id=owner.id,
        parent_task_id=parent.id if parent else None,
        spec=TaskSpec(description="do it"),
        state=state,
        created_at=ended - 10,
        updated_at=ended,
    )
    store.put_task(info)
    blobs = [store.put_blob(shot, "image/jpeg")] if shot is not None else []
    for kind in (EventKind.TASK, EventKind.STEP, EventKind.MODEL):
        store.append_event(
            Event(kind=kind, agent_id=owner.id, task_id=info.id, at=ended, blobs=blobs)
        )
    return info


def _age_blobs(store: SQLiteStore) -> None:
    """Blobs stored by the test are as old as their records (past the grace period)."""
    then = NOW - 2 * BLOB_GRACE_S
    for path in (store.data_dir / "blobs").glob("??/*"):
        os.utime(path, (then, then))
    db = sqlite3.connect(store.path)
    db.execute("UPDATE blobs SET created_at = ?", (then,))
    db.commit()
    db.close()


def _gc(store: SQLiteStore, **kw: bool):  # type: ignore[no-untyped-def]
    _age_blobs(store)
    return store.collect_garbage(30 * DAY, now=NOW, **kw)


def test_an_old_ended_run_goes_with_its_events_agents_and_blobs(store: SQLiteStore) -> None:
    user = _agent(store)
    child = _agent(store, parent=user)
    root = _task(store, user, shot=b"root screenshot")
    sub = _task(store, child, parent=root, shot=b"sub screenshot")
    paths = [store.blob_path(a) for e in store.events(limit=100) for a in e.blobs]
    assert all(p is not None and p.is_file() for p in paths)

    dry = _gc(store, dry_run=True)
    assert (dry.dry_run, dry.tasks, dry.agents, dry.blobs) == (True, 2, 2, 2)
    assert store.get_task(root.id) is not None and all(p and p.is_file() for p in paths)

    report = _gc(store)
    assert (report.tasks, report.agents, report.blobs) == (2, 2, 2)
    assert report.events == {"agent": 2, "model": 2, "step": 2, "task": 2}
    assert report.blob_bytes == len(b"root screenshot") + len(b"sub screenshot")
    assert report.bytes == report.blob_bytes + report.db_bytes  # a few rows free no page
    assert "removed 2 task(s), 2 agent(s), 8 event(s)" in report.summary()
    assert store.get_task(root.id) is None and store.get_task(sub.id) is None
    assert store.get_agent(user.id) is None and store.get_agent(child.id) is None
    assert store.events(limit=100) == []
    assert not any(p and p.exists() for p in paths)
    assert list((store.data_dir / "blobs" / ".gc").iterdir()) == []
    again = _gc(store)
    assert (again.tasks, again.agents, again.blobs, again.events) == (0, 0, 0, {})


def test_a_blob_shared_with_a_newer_run_stays(store: SQLiteStore) -> None:
    owner = _agent(store)
    old = _task(store, owner, shot=b"the same screen")
    new = _task(store, owner, ended=FRESH, shot=b"the same screen")
    (address,) = store.events(task_id=new.id, limit=1)[0].blobs
    report = _gc(store)
    assert (report.tasks, report.blobs, report.agents) == (1, 0, 0)  # the owner has a task
    assert store.get_task(old.id) is None and store.get_task(new.id) is not None
    assert store.get_blob(address) == b"the same screen"


def test_a_blob_stored_again_just_now_stays_until_its_event_is_written(
    store: SQLiteStore,
) -> None:
    owner = _agent(store)
    _task(store, owner, shot=b"screen")
    _age_blobs(store)
    address = store.put_blob(b"screen", "image/jpeg")  # a new step, its event not yet stored
    report = store.collect_garbage(30 * DAY, now=NOW)
    assert (report.tasks, report.blobs) == (1, 0)
    store.append_event(Event(kind=EventKind.STEP, agent_id=owner.id, blobs=[address]))
    assert store.get_blob(address) == b"screen"


def test_a_pinned_run_stays_whole_until_unpinned(store: SQLiteStore) -> None:
    owner = _agent(store)
    root = _task(store, owner, shot=b"keep me")
    sub = _task(store, owner, parent=root)
    assert store.pin_task(sub.id) and store.is_pinned(sub.id)
    assert not store.pin_task("task-missing")
    report = _gc(store)
    assert (report.tasks, report.agents, report.blobs) == (0, 0, 0)
    assert store.get_task(root.id) is not None and store.get_task(sub.id) is not None
    assert store.pin_task(sub.id, pinned=False) and not store.is_pinned(sub.id)
    assert _gc(store).tasks == 2


def test_an_open_task_keeps_its_run_however_old(store: SQLiteStore) -> None:
    owner = _agent(store)
    root = _task(store, owner, state=TaskState.WAITING)
    _task(store, owner, parent=root)  # ended long ago, but its parent is still open
    alone = _task(store, owner, state=TaskState.RUNNING)
    report = _gc(store)
    assert (report.tasks, report.agents, report.events) == (0, 0, {})
    assert store.get_task(root.id) is not None and store.get_task(alone.id) is not None


def test_a_live_agents_records_stay(store: SQLiteStore) -> None:
    manager = _agent(store, status=AgentStatus.IDLE)
    root = _task(store, manager, shot=b"manager")
    worker = _agent(store, status=AgentStatus.BUSY)
    other = _agent(store)  # fired long ago
    _task(store, other, parent=root)  # a run touching a live agent stays whole
    report = _gc(store)
    assert (report.tasks, report.agents, report.blobs) == (0, 0, 0)
    for a in (manager, worker, other):
        assert store.get_agent(a.id) is not None


def test_a_recent_run_and_a_recently_fired_agent_stay(store: SQLiteStore) -> None:
    owner = _agent(store)
    _task(store, owner, ended=FRESH)
    fired = _agent(store)
    store.append_event(Event(kind=EventKind.AGENT, agent_id=fired.id, at=FRESH))  # fired now
    report = _gc(store)
    assert (report.tasks, report.agents) == (0, 0)


def test_a_dead_agent_that_hired_a_live_one_stays(store: SQLiteStore) -> None:
    parent = _agent(store, status=AgentStatus.FAILED)
    child = _agent(store, status=AgentStatus.IDLE, parent=parent)
    assert _gc(store).agents == 0
    child = child.model_copy(update={"status": AgentStatus.STOPPED})
    store.put_agent(child)
    assert _gc(store).agents == 2


def test_blob_references_of_existing_events_are_found_by_the_migration(tmp_path: Path) -> None:
    """A store from before garbage collection: its events' blobs are registered on upgrade,
    so none of them is taken for unreferenced."""
    db = sqlite3.connect(tmp_path / "records.sqlite3", isolation_level=None)
    migrate(db, MIGRATIONS[:2])
    address = "ab" * 32
    db.execute("INSERT INTO blobs VALUES (?, 1, 'image/png', 0)", (address,))
    event = Event(kind=EventKind.STEP, blobs=[address])
    db.execute(
        "INSERT INTO events (event_id, kind, at, payload) VALUES (?, 'step', ?, ?)",
        (event.id, NOW, event.model_dump_json(exclude={"seq"})),
    )
    db.close()
    with SQLiteStore(tmp_path) as store:
        rows = sqlite3.connect(store.path).execute("SELECT address FROM event_blobs").fetchall()
        assert rows == [(address,)]
        assert _gc(store).blobs == 0


def test_an_interrupted_collection_is_finished_or_undone_by_the_next(store: SQLiteStore) -> None:
    owner = _agent(store)
    task = _task(store, owner, ended=FRESH, shot=b"alive")
    (kept,) = store.events(task_id=task.id, limit=1)[0].blobs
    trash = store.data_dir / "blobs" / ".gc"
    trash.mkdir(exist_ok=True)
    kept_path = store.blob_path(kept)
    assert kept_path is not None
    os.rename(kept_path, trash / kept)  # moved, then the collection died before its commit
    (trash / ("cd" * 32)).write_bytes(b"committed, then died before deleting")
    _gc(store)
    assert store.get_blob(kept) == b"alive"
    assert list(trash.iterdir()) == []


def test_vacuum_shrinks_the_file_and_arguments_are_checked(store: SQLiteStore) -> None:
    owner = _agent(store)
    for i in range(200):
        _task(store, owner, shot=f"screen {i}".encode() * 100)
    report = _gc(store, vacuum=True)
    assert report.tasks == 200 and report.db_bytes > 0 and report.vacuumed_bytes > 0
    with pytest.raises(RecordError):
        store.collect_garbage(-1)


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [str(Path(sys.executable).with_name("orchestrator")), "gc", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_reports_rows_per_kind_and_bytes(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path) as store:
        owner = _agent(store)
        old = _task(store, owner, shot=b"old screen")
        new = _task(store, owner, ended=FRESH, shot=b"new screen")
        _age_blobs(store)
    dry = _cli(tmp_path, "--older-than", "7d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stdout and "tasks     1" in dry.stdout
    done = _cli(tmp_path, "--older-than", "7d")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines()[1:])
    assert lines["tasks"] == "1" and lines["agents"] == "0"
    assert lines["events"] == "3 (model 1, step 1, task 1)"
    assert lines["blobs"] == f"1 ({len(b'old screen')} bytes)"
    assert lines["reclaimed"].endswith(" bytes")
    with SQLiteStore(tmp_path) as store:
        assert store.get_task(old.id) is None and store.get_task(new.id) is not None
    bad = _cli(tmp_path, "--older-than", "7 weeks")
    assert bad.returncode == 2 and "want a number and a unit" in bad.stderr
    assert "nothing to do" in _cli(tmp_path / "none", "--older-than", "1d").stdout
