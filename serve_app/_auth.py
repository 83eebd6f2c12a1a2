"""API keys: bearer tokens that map to tenants.

Keys are configured by ``ORCHESTRATOR_API_KEYS`` (comma-separated ``tenant:key`` pairs) and/or
a file named by ``ORCHESTRATOR_API_KEYS_FILE`` (one ``tenant:key`` or ``tenant:sha256:<hex>``
per line; blank lines and ``#`` comments are skipped). Only sha256 digests of the keys are
kept in memory; a presented key is hashed and compared against every digest in constant time.
Keys are never logged and never appear in error messages.

Keys added with ``orchestrator keys add`` live in the records (``RecordKeys``): each replica
keeps a copy, read again when a request finds it older than ``KEYS_REFRESH_S`` (or older than
``KEYS_MISS_REFRESH_S`` when the key presented is not in it), so a key added or revoked is in
force on every replica within a few seconds, whatever node it runs on. A copy that could not
be refreshed for ``KEYS_MAX_AGE_S`` is not trusted: a key only it could vouch for is answered
503 (the environment's and the file's keys still work).

A person signs in to the console with a key (``serve_app._session``) and gets a cookie
(``serve_app._cookie``) that stands for a console session in the records. ``principal_of``
says who a request is (a ``Principal``: bearer key or cookie, never a secret), and
``still_valid`` whether that is still so (the key in force, the session neither ended nor
expired): what long-lived event streams and desktop relays ask every second.

Example:
    >>> keys = KeyStore.parse("acme:s3cret-key")
    >>> keys.tenant_for("s3cret-key"), keys.tenant_for("wrong")
    ('acme', None)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel

from orchestrator.config import ApiSettings, api_settings, env_name
from orchestrator.errors import ConfigError, RecordError
from orchestrator.front import SessionRecords

from ._cookie import STATE_CHANGING, SessionCache, origin_allowed, session_id, token_of

__all__ = [
    "ENV_KEYS",
    "ENV_KEYS_FILE",
    "ENV_TICKET_SECRET",
    "Ended",
    "KEYS_MAX_AGE_S",
    "KEYS_MISS_REFRESH_S",
    "KEYS_REFRESH_S",
    "KeyStore",
    "Principal",
    "RecordKeys",
    "Unauthorized",
    "check_key",
    "cluster_secret",
    "configure",
    "current_keys",
    "key_in_body",
    "key_principal",
    "key_tenant",
    "needs_key",
    "principal_of",
    "records_fetch",
    "request_principal",
    "sessions",
    "still_valid",
    "tenant_of",
]

log = logging.getLogger(__name__)

ENV_KEYS = env_name(ApiSettings, "keys")
ENV_KEYS_FILE = env_name(ApiSettings, "keys_file")
ENV_TICKET_SECRET = env_name(ApiSettings, "ticket_secret")

_TENANT = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_MIN_KEY_LEN = 8


class Unauthorized(Exception):
    """No valid API key was presented (answered 401 with ``WWW-Authenticate: Bearer``)."""


class Ended(Unauthorized):
    """The credentials were valid once: the key was revoked, or the console session ended
    or expired (a relay closes with 4403 for this, 4401 for any other ``Unauthorized``)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyStore:
    """sha256 digests of API keys, each with the tenant it belongs to."""

    def __init__(self, entries: Iterable[tuple[str, bytes]] = ()) -> None:
        self._entries: list[tuple[bytes, str]] = []
        for tenant, digest in entries:
            self._add(tenant, digest)

    def _add(self, tenant: str, digest: bytes) -> None:
        if not _TENANT.match(tenant):
            raise ConfigError(f"bad tenant name in the API key configuration: {tenant!r}")
        if len(digest) != 32:
            raise ConfigError(f"the key digest of tenant {tenant!r} is not sha256")
        for known, owner in self._entries:
            if hmac.compare_digest(known, digest):
                if owner != tenant:  # which tenant would the key be? refuse to guess
                    raise ConfigError(
                        f"the same API key is configured for tenants {owner!r} and {tenant!r}"
                    )
                return
        self._entries.append((digest, tenant))

    def _merge(self, other: KeyStore) -> None:
        for digest, tenant in other._entries:
            self._add(tenant, digest)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tenants(self) -> set[str]:
        return {t for _, t in self._entries}

    @classmethod
    def parse(cls, text: str, *, separators: str = ",\n", where: str = "configuration") -> KeyStore:
        """Parse ``tenant:key`` / ``tenant:sha256:<hex>`` entries split on ``separators``."""
        store = cls()
        items = re.split("|".join(re.escape(s) for s in separators), text)
        for n, raw in enumerate(items, 1):
            item = raw.strip()
            if not item or item.startswith("#"):
                continue
            tenant, sep, secret = item.partition(":")
            tenant = tenant.strip()
            if not sep or not secret:
                # Never echo the entry: it may be a bare key.
                raise ConfigError(f"API key {where}, entry {n}: expected tenant:key")
            if secret.startswith("sha256:"):
                hexd = secret[len("sha256:") :].strip()
                if not _HEX.match(hexd):
                    raise ConfigError(
                        f"API key {where}, entry {n} (tenant {tenant!r}): "
                        "sha256 needs 64 hex digits"
                    )
                store._add(tenant, bytes.fromhex(hexd))
            else:
                if len(secret) < _MIN_KEY_LEN:
                    raise ConfigError(
                        f"API key {where}, entry {n} (tenant {tenant!r}): "
                        f"keys need at least {_MIN_KEY_LEN} characters"
                    )
                store._add(tenant, _digest(secret))
        return store

    @classmethod
    def from_env(cls, keys_file: str | None = None) -> KeyStore:
        """Keys from ``ORCHESTRATOR_API_KEYS`` plus the file ``keys_file`` (default
        ``ORCHESTRATOR_API_KEYS_FILE``)."""
        store = cls()
        env = api_settings()
        inline = env.keys.get_secret_value() if env.keys else ""
        if inline.strip():
            store._merge(cls.parse(inline, separators=",", where=ENV_KEYS))
        path = keys_file or (str(env.keys_file) if env.keys_file else None)
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"cannot read the API key file {path}: {e.strerror}") from None
            store._merge(cls.parse(text, separators="\n", where=f"file {path}"))
        if not store:
            log.warning(
                "no API keys configured (%s, %s): every request is refused", ENV_KEYS, ENV_KEYS_FILE
            )
        return store

    def tenant_for(self, key: str) -> str | None:
        """The tenant of ``key``, or None; compares against every digest (constant time)."""
        return self.tenant_for_digest(_digest(key))

    def tenant_for_digest(self, presented: bytes) -> str | None:
        """The tenant of the key whose sha256 digest is ``presented``, or None."""
        found: str | None = None
        for digest, tenant in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = tenant
        return found


KEYS_REFRESH_S = 2.0
"""How old a replica's copy of the records' keys may be when a request is checked against it
(a revocation is in force on every replica within this, plus one read)."""
KEYS_MISS_REFRESH_S = 0.25
"""A key not in the copy makes a copy older than this be read again (a key just added works
at once; unknown keys cannot make a replica read the records more often than this)."""
KEYS_MAX_AGE_S = 4.0
"""A copy that could not be refreshed for this long is not used (503 for its keys)."""
KEYS_READ_TIMEOUT_S = 2.0
"""How long one read of the records' keys may take."""

Fetch = Callable[[], Awaitable[list[tuple[str, str]]]]
"""Reads ``(tenant, sha256 hex digest)`` of every key in force."""


class RecordKeys:
    """The API keys kept in the records, as this process last read them.

    Example:
        >>> async def fetch() -> list[tuple[str, str]]:
        ...     return [("acme", hashlib.sha256(b"s3cret-key").hexdigest())]
        >>> asyncio.run(RecordKeys(fetch).tenant_for("s3cret-key"))
        'acme'
    """

    def __init__(self, fetch: Fetch, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._keys = KeyStore()
        self._read_at = -math.inf
        """When the read behind ``_keys`` started (clock time)."""
        self._tried_at = -math.inf
        """When the last read (failed or not) started: reads are at least
        ``KEYS_MISS_REFRESH_S`` apart, so that requests during an outage do not queue one
        read each behind the lock."""
        self._lock: asyncio.Lock | None = None

    def age(self) -> float:
        """Seconds since the copy was read."""
        return self._clock() - self._read_at

    async def refresh(self, older_than_s: float = 0.0) -> None:
        """Read the keys again if the copy is older than ``older_than_s`` (one read at a time:
        concurrent callers wait for it). A failed read keeps the old copy (and is logged)."""
        if self.age() < older_than_s:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            started = self._clock()
            if self.age() < older_than_s or started - self._tried_at < KEYS_MISS_REFRESH_S:
                return  # read meanwhile, or just tried
            self._tried_at = started
            try:
                rows = await asyncio.wait_for(self._fetch(), KEYS_READ_TIMEOUT_S)
                keys = KeyStore((tenant, bytes.fromhex(d)) for tenant, d in rows)
            except Exception as e:  # noqa: BLE001 - any failure: keep the copy, say so
                log.warning("cannot read the API keys in the records: %s", _one_line(e))
                return
            self._keys, self._read_at = keys, started

    async def tenant_for(self, key: str) -> str | None:
        """The tenant of ``key`` among the records' keys in force, or None.

        ``RecordError`` when the copy is older than ``KEYS_MAX_AGE_S`` and cannot be read
        again (whether the key was revoked meanwhile is unknown)."""
        return await self.tenant_for_digest(_digest(key))

    async def tenant_for_digest(self, digest: bytes) -> str | None:
        """``tenant_for`` the key whose sha256 digest is ``digest``."""
        await self.refresh(KEYS_REFRESH_S)
        tenant = self._keys.tenant_for_digest(digest) if self.age() <= KEYS_MAX_AGE_S else None
        if tenant is None:
            await self.refresh(KEYS_MISS_REFRESH_S)
            if self.age() > KEYS_MAX_AGE_S:
                raise RecordError("the API keys in the records cannot be read")
            tenant = self._keys.tenant_for_digest(digest)
        return tenant


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


async def records_fetch() -> list[tuple[str, str]]:
    """The keys in force in the cluster's records (from the records' file when this process
    is on the recorder's node, else from the recorder)."""
    from actors import Runtime

    return await Runtime.shared().records.active_api_keys()


_keys: KeyStore | None = None
_records: RecordKeys | None = None
_sessions: SessionRecords | None = None
_secret: tuple[object, bytes] | None = None
"""The cluster secret as this process read it, with where from (the records, or "env")."""

SECRET_NAME = "console-tickets"
"""The records' cluster secret that tickets are sealed with and holder names derived from."""
MIN_ENV_SECRET_CHARS = 32
"""``ORCHESTRATOR_API_TICKET_SECRET`` must be at least this long."""

request_principal: ContextVar[Principal | None] = ContextVar("request_principal", default=None)
"""Who the request being served is, once ``principal_of`` said so (the event streams' slots
count per tenant with it)."""


def _session_records() -> SessionRecords | None:
    """The records sessions are kept in: the configured ones, else the cluster's."""
    global _sessions
    if _sessions is None:
        from actors import Runtime

        _sessions = Runtime.shared().records
    return _sessions


sessions = SessionCache(_session_records)
"""This process's copies of the console sessions it has read."""


def configure(
    keys: KeyStore | None,
    records: RecordKeys | None = None,
    session_records: SessionRecords | None = None,
) -> None:
    """Use ``keys`` in this process (None: load from the environment on first use), the
    records' keys when ``records`` is given (a Serve replica: ``RecordKeys(records_fetch)``),
    and keep console sessions in ``session_records`` (None: the cluster's recorder)."""
    global _keys, _records, _sessions, sessions, _secret
    _keys = keys
    _records = records
    _sessions = session_records
    _secret = None
    sessions = SessionCache(_session_records)


async def cluster_secret() -> bytes:
    """The secret every replica seals tickets with and derives lease holder names from:
    ``ORCHESTRATOR_API_TICKET_SECRET`` when set (e.g. a Kubernetes Secret, so that a copy of
    the records file is not enough to forge tickets; at least 32 characters), else the one
    kept in the records (made on first use). Read once per process; never logged."""
    global _secret
    if _secret is not None and (_secret[0] == "env" or _secret[0] is sessions.records()):
        return _secret[1]
    env = api_settings().ticket_secret
    if env is not None:
        value = env.get_secret_value()
        if len(value) < MIN_ENV_SECRET_CHARS:
            raise ConfigError(
                f"{ENV_TICKET_SECRET} needs at least {MIN_ENV_SECRET_CHARS} characters"
            )
        derived = hashlib.sha256(b"orchestrator api secret v1\0" + value.encode()).digest()
        _secret = ("env", derived)
        return derived
    records = sessions.records()
    _secret = (records, await records.cluster_secret(SECRET_NAME))
    return _secret[1]
    records = sessions.records()
    if _secret is None or _secret[0] is not records:
        _secret = (records, await records.cluster_secret(SECRET_NAME))
    return _secret[1]


async def _key_holder(key_digest: str) -> str:
    """A bearer key's lease holder name: ``key:`` and 12 hex of an HMAC of its digest under
    the cluster secret (the same on every replica, and no prefix of the key's sha256: a
    short key cannot be confirmed offline from a holder name shown to the tenant)."""
    try:
        secret = await cluster_secret()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - records down, or none (no cluster): see below
        # A bearer key from the environment still works while the records cannot be read;
        # its holder name is then this process's (never a lease holder elsewhere: refused
        # input, not granted input). Read again on the next request.
        log.warning("no cluster secret for holder names, using this process's: %s", _one_line(e))
        secret = _PROCESS_SECRET
    mac = hmac.new(secret, b"orchestrator lease holder v1\0" + key_digest.encode(), "sha256")
    return "key:" + mac.hexdigest()[:12]


_PROCESS_SECRET = secrets.token_bytes(32)
"""This process's own secret, for holder names where no cluster secret can be read (an app
without a cluster: one process, so its names are still stable)."""


async def key_principal(tenant: str, key_digest: str) -> Principal:
    """A bearer key's principal (its holder name from ``_key_holder``)."""
    return Principal.of_key(tenant, key_digest, await _key_holder(key_digest))


def current_keys() -> KeyStore:
    global _keys
    if _keys is None:
        _keys = KeyStore.from_env()
    return _keys


async def key_tenant(key: str) -> str | None:
    """The tenant of the API key ``key`` in force (environment, file or records), or None
    (``RecordError`` when only the records could tell and they cannot be read)."""
    tenant = current_keys().tenant_for(key)
    if tenant is None and _records is not None:
        tenant = await _records.tenant_for(key)
    return tenant


async def check_key(request: Request) -> str:
    """The tenant of the request's bearer key, or ``Unauthorized`` (``RecordError`` when
    only the records could tell and they cannot be read)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    tenant = await key_tenant(token)
    if tenant is None:
        raise Unauthorized("invalid API key")
    return tenant


class Principal(BaseModel, frozen=True):
    """Who a request is: a tenant's API key, a console session or a desktop ticket. It holds
    no secret (digests only), so it may be passed around and kept.

    Example:
        >>> p = Principal.of_key("acme", "ab" * 32, "key:0123456789ab")
        >>> p.holder, p.via
        ('key:0123456789ab', 'key')
    """

    tenant: str
    """The tenant it acts for."""
    key_digest: str
    """The sha256 hex digest of the API key behind it (a session's: the one signed in with)."""
    via: Literal["key", "cookie", "ticket"]
    """How the request proved it: a bearer key, the console cookie, a ticket."""
    session_id: str | None = None
    """The console session behind it (its id, the token's digest), if any."""
    holder: str
    """Who it is for leases: ``session:<12 hex>`` for a console session (and its tickets),
    ``key:<12 hex>`` for a bearer key (and its tickets: an HMAC under the cluster secret, see
    ``key_principal``)."""

    @classmethod
    def of_key(cls, tenant: str, key_digest: str, holder: str) -> Principal:
        """A bearer key's principal named ``holder`` (``key_principal`` derives it)."""
        return cls(tenant=tenant, key_digest=key_digest, via="key", holder=holder)


async def _key_in_force(key_digest: str, tenant: str) -> bool:
    """Whether the key with this digest is still one of ``tenant``'s (``RecordError``: the
    records cannot say)."""
    try:
        digest = bytes.fromhex(key_digest)
    except ValueError:
        return False
    found = current_keys().tenant_for_digest(digest)
    if found is None and _records is not None:
        found = await _records.tenant_for_digest(digest)
    return found == tenant


async def _from_cookie(request: Request, token: str) -> Principal:
    if request.method.upper() in STATE_CHANGING and not origin_allowed(request, required=True):
        raise HTTPException(
            403,
            "a console request that changes something must come from the console's own "
            "origin (its Origin header)",
        )
    sid = session_id(token)
    session = await sessions.get(sid)
    if session is None:
        raise Unauthorized("no such console session: sign in again")
    p = Principal(
        tenant=session.tenant,
        key_digest=session.key_digest,
        via="cookie",
        session_id=sid,
        holder=session.holder,
    )
    if not session.open_at(time.time()) or not await _key_in_force(p.key_digest, p.tenant):
        raise Ended("the console session has ended: sign in again")
    return p


async def principal_of(request: Request) -> Principal:
    """FastAPI dependency: who the request is. A bearer key when the request sends one
    (exactly as before), else the console cookie; ``Unauthorized`` without either (or with
    one that is not in force), 403 for a cookie on a state-changing request whose ``Origin``
    is not the API's own."""
    cookie = None if "authorization" in request.headers else token_of(request)
    if cookie is not None:
        p = await _from_cookie(request, cookie)
    else:
        tenant = await check_key(request)
        key = request.headers["authorization"].partition(" ")[2].strip()
        p = await key_principal(tenant, hashlib.sha256(key.encode("utf-8")).hexdigest())
    request_principal.set(p)
    return p


async def still_valid(p: Principal) -> bool:
    """Whether ``p`` still holds: its key in force and its console session (if any) neither
    ended nor expired. Cheap (each replica's copies of keys and sessions are at most a second
    or two old), so long-lived streams and relays ask it every second; a revocation or a
    sign-out anywhere is seen within ~3 s. False when the records cannot be read for long
    (whether it was revoked is then unknown)."""
    try:
        if not await _key_in_force(p.key_digest, p.tenant):
            return False
        if p.session_id is None:
            return True
        session = await sessions.get(p.session_id)
    except RecordError as e:
        log.warning("cannot tell whether a caller still holds: %s", _one_line(e))
        return False
    return (
        session is not None
        and session.tenant == p.tenant
        and session.key_digest == p.key_digest
        and session.open_at(time.time())
    )


async def tenant_of(principal: Principal = Depends(principal_of)) -> str:  # noqa: B008
    """FastAPI dependency: the tenant of the request's bearer key or console cookie
    (``Unauthorized`` without a valid one).

    A coroutine so that FastAPI runs it on the event loop, not in a worker thread (a thread
    hop per request costs more than the check itself)."""
    return principal.tenant


async def key_in_body() -> None:
    """FastAPI dependency that marks a route taking its key in the body (the console's
    sign-in): a body it cannot parse is still 401 without credentials, as on every route."""


def _depends_on(dependant: Any, call: Any) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def needs_key(request: Request) -> bool:
    """Whether the route the request was routed to takes the ``principal_of`` dependency
    (``tenant_of`` takes it too).

    FastAPI parses a JSON body before it solves dependencies; the error handlers ask this to
    answer an unauthenticated request 401 rather than telling it what is wrong with its body.
    """
    dependant = getattr(request.scope.get("route"), "dependant", None)
    return dependant is not None and (
        _depends_on(dependant, principal_of) or _depends_on(dependant, key_in_body)
    )
