"""Durable records: every agent, task, step, message and result, stored as it happens.

A write returns only once it is committed durably, so whatever a caller has seen acknowledged
survives a crash of the writing process (or of the machine). Screenshots and files are
content-addressed blobs, stored before any record refers to them.

Example:
    >>> import tempfile, pathlib
    >>> from orchestrator.domain import Event, EventKind
    >>> with open_store(pathlib.Path(tempfile.mkdtemp())) as store:
    ...     first = store.append_event(Event(kind=EventKind.LOG, data={"msg": "hello"}))
    ...     [e.data["msg"] for e in store.events(after_seq=first.seq - 1)]
    ['hello']
"""

from __future__ import annotations

from pathlib import Path

from ._artifacts import write_artifacts
from ._gc import GcReport
from ._media import media_type
from ._sessions import ConsoleSession
from ._sqlite import DB_NAME, SQLiteStore
from ._store import MAX_LIMIT, RecordStore, StoreStats

__all__ = [
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


def open_store(data_dir: Path | None = None) -> RecordStore:
    """The record store in ``data_dir`` (default: ``ORCHESTRATOR_DATA_DIR``), created if new."""
    if data_dir is None:
        from ..config import settings

        data_dir = settings().data_dir
    return SQLiteStore(data_dir)
