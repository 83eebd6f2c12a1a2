"""Console sessions and the cluster's secrets in the SQLite records.

A console session is what a person's sign-in cookie stands for. Only the sha256 digest of
the cookie's random token is stored (``ConsoleSession.id``), with the tenant, the digest of
the API key it was opened with, when it was opened, when it expires and when it ended
(signed out, or its key revoked: ``end_sessions_of_key`` runs in the revocation's
transaction). The cluster's secrets (the key that signs desktop tickets) are random bytes
made once, on first use, by whichever process asks first: ``INSERT OR IGNORE`` makes
concurrent first uses agree on one value.

Example:
    >>> import sqlite3
    >>> s = ConsoleSession(id="a" * 64, tenant="acme", key_digest="b" * 64,
    ...                    created_at=0.0, expires_at=60.0)
    >>> s.open_at(30.0), s.open_at(61.0), s.holder
    (True, False, 'session:aaaaaaaaaaaa')
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import RecordError
from ..tenants import Tenant

__all__ = [
    "ConsoleSession",
    "end_session",
    "end_sessions_of_key",
    "get_session",
    "insert_session",
    "secret",
]

_HEX = re.compile(r"^[0-9a-f]{64}$")
_COLUMNS = "id, tenant, key_digest, created_at, expires_at, ended_at"
SECRET_BYTES = 32
"""The size of each cluster secret."""

Digest = Field(pattern=r"^[0-9a-f]{64}$")


class ConsoleSession(BaseModel):
    """A person's console sign-in, as recorded (never the cookie's token itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    id: str = Digest
    """The sha256 hex digest of the cookie's token (the token is never stored)."""
    tenant: Tenant
    """The tenant of the key the person signed in with."""
    key_digest: str = Digest
    """The sha256 hex digest of that API key: the session lasts while the key is in force."""
    created_at: float
    """When it was opened (unix seconds)."""
    expires_at: float
    """When it ends by itself (unix seconds; at most the API's session lifetime later)."""
    ended_at: float | None = None
    """When it was ended: signed out, or its key revoked (None: not ended)."""

    @property
    def holder(self) -> str:
        """Who the session is, for leases and tickets: ``session:<first 12 of its id>``."""
        return f"session:{self.id[:12]}"

    def open_at(self, when: float) -> bool:
        """Whether the session is in force at ``when`` (not ended, not expired)."""
        return self.ended_at is None and when < self.expires_at


def _session(row: Any) -> ConsoleSession:
    return ConsoleSession(
        id=row[0],
        tenant=row[1],
        key_digest=row[2],
        created_at=row[3],
        expires_at=row[4],
        ended_at=row[5],
    )


def _check_digest(value: str, what: str) -> None:
    if not _HEX.match(value):
        raise RecordError(f"{what} is 64 lower-case hex digits (sha256)")


def insert_session(db: sqlite3.Connection, session: ConsoleSession) -> ConsoleSession:
    """Store a new session; the stored one when its id is known already (a retry). Sessions
    that ended or expired a day ago are removed on the way (they are never read again)."""
    found = db.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session.id,)).fetchone()
    if found is not None:
        return _session(found)
    cutoff = time.time() - 86_400.0
    db.execute(
        "DELETE FROM sessions WHERE expires_at < ? OR (ended_at IS NOT NULL AND ended_at < ?)",
        (cutoff, cutoff),
    )
    db.execute(
        f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (
            session.id,
            session.tenant,
            session.key_digest,
            session.created_at,
            session.expires_at,
            session.ended_at,
        ),
    )
    return session


def get_session(db: sqlite3.Connection, session_id: str) -> ConsoleSession | None:
    """The session whose id (token digest) is ``session_id``, or None."""
    if not _HEX.match(session_id):
        return None
    row = db.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return _session(row) if row is not None else None


def end_session(db: sqlite3.Connection, session_id: str) -> ConsoleSession | None:
    """End the session (again: no change); it as it is then, or None when unknown."""
    if not _HEX.match(session_id):
        return None
    db.execute(
        "UPDATE sessions SET ended_at = COALESCE(ended_at, ?) WHERE id = ?",
        (time.time(), session_id),
    )
    return get_session(db, session_id)


def end_sessions_of_key(db: sqlite3.Connection, key_digest: str) -> int:
    """End every open session opened with the key ``key_digest``; how many were ended."""
    _check_digest(key_digest, "an API key digest")
    cursor = db.execute(
        "UPDATE sessions SET ended_at = ? WHERE key_digest = ? AND ended_at IS NULL",
        (time.time(), key_digest),
    )
    return int(cursor.rowcount)


def secret(db: sqlite3.Connection, name: str) -> bytes:
    """The cluster secret ``name``, made (random) by the first caller."""
    db.execute(
        "INSERT OR IGNORE INTO secrets (name, value, created_at) VALUES (?, ?, ?)",
        (name, secrets.token_bytes(SECRET_BYTES), time.time()),
    )
    row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
    return bytes(row[0])
