"""The records are their owner's only (S7): the database, its WAL and shared-memory files,
and the blobs are 0600 in 0700 directories, also in a data directory that existed already
(the probe found ``records.sqlite3`` and its WAL 0644 there)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.domain import AgentInfo, AgentSpec
from orchestrator.records import SQLiteStore


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common umask (022), which makes new files 0644 unless asked otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def use(store: SQLiteStore) -> str:
    """Write a record and a blob (so that the WAL and a blob directory exist)."""
    store.put_agent(
        AgentInfo(id="agent-1", path="t/a", tenant="t", parent_id=None, spec=AgentSpec(name="a"))
    )
    return store.put_blob(b"a screenshot", "image/png")


def test_records_in_an_existing_data_directory_are_the_owners_only(
    tmp_path: Path, usual_umask: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    store = SQLiteStore(data)
    try:
        address = use(store)
        db = data / "records.sqlite3"
        files = [db, data / "records.sqlite3-wal", data / "records.sqlite3-shm"]
        assert {p.name: oct(mode(p)) for p in files} == {p.name: "0o600" for p in files}
        blob = data / "blobs" / address[:2] / address[2:]
        dirs = [data / "blobs", data / "blobs" / ".tmp", blob.parent]
        assert {str(p): oct(mode(p)) for p in dirs} == {str(p): "0o700" for p in dirs}
        assert oct(mode(blob)) == "0o600"
    finally:
        store.close()
    assert mode(data) == 0o755  # the operator's directory is left as it was


def test_records_an_older_version_left_readable_are_made_the_owners_only(
    tmp_path: Path, usual_umask: None
) -> None:
    data = tmp_path / "data"
    (data / "blobs").mkdir(parents=True, mode=0o755)
    db = sqlite3.connect(data / "records.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")  # leaves records.sqlite3-wal and -shm while open
    assert mode(data / "records.sqlite3") == 0o644 == mode(data / "records.sqlite3-wal")
    try:
        SQLiteStore(data).close()
    finally:
        db.close()
    for name in ("records.sqlite3", "records.sqlite3-wal", "records.sqlite3-shm"):
        if (data / name).exists():
            assert oct(mode(data / name)) == "0o600", name
    assert mode(data / "records.sqlite3") == 0o600
    assert mode(data / "blobs") == 0o700


def test_a_symlinked_database_is_refused(tmp_path: Path) -> None:
    from orchestrator.errors import RecordError

    data = tmp_path / "data"
    data.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours")
    elsewhere.chmod(0o644)
    (data / "records.sqlite3").symlink_to(elsewhere)
    with pytest.raises(RecordError, match="open the records"):
        SQLiteStore(data)
    assert mode(elsewhere) == 0o644
