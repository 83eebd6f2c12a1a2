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

import hashlib
import hmac
import logging
import secrets
import time
from contextvars import ContextVar
from typing import Any, Literal

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel

from orchestrator.config import ApiSettings, api_settings, env_name
from orchestrator.errors import ConfigError, RecordError
from orchestrator.front import SessionRecords

from ._cookie import STATE_CHANGING, SessionCache, origin_allowed, session_id, token_of
from ._keys import (
    ENV_KEYS,
    ENV_KEYS_FILE,
    KEYS_MAX_AGE_S,
    KEYS_MISS_REFRESH_S,
    KEYS_REFRESH_S,
    KeyStore,
    RecordKeys,
)
from ._keys import one_line as _one_line

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

ENV_TICKET_SECRET = env_name(ApiSettings, "ticket_secret")


class Unauthorized(Exception):
    """No valid API key was presented (answered 401 with ``WWW-Authenticate: Bearer``)."""


class Ended(Unauthorized):
    """The credentials were valid once: the key was revoked, or the console session ended
    or expired (a relay closes with 4403 for this, 4401 for any other ``Unauthorized``)."""


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
        import ray

        if not ray.is_initialized():  # never start or join a cluster for a lookup
            raise RecordError("no records: this process is not connected to a cluster")
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


async def key_tenant(key: str, fresh: bool = False) -> str | None:
    """The tenant of the API key ``key`` in force (environment, file or records), or None
    (``RecordError`` when only the records could tell and they cannot be read). ``fresh``:
    the records' keys as read at most ``KEYS_MISS_REFRESH_S`` ago, not ``KEYS_REFRESH_S``
    (a sign-in: a key revoked a moment ago must not open a session on any replica)."""
    tenant = current_keys().tenant_for(key)
    if tenant is None and _records is not None:
        max_age_s = KEYS_MISS_REFRESH_S if fresh else KEYS_REFRESH_S
        tenant = await _records.tenant_for(key, max_age_s)
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
