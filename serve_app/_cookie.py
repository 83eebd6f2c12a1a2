"""The console's sign-in cookie: its token, its attributes, the Origin rule, and each
replica's short-lived copy of the sessions it has been shown.

The cookie ``orch_session`` holds a random 32-byte token (base64url); the records keep only
its sha256 digest (``ConsoleSession.id``). It is ``HttpOnly`` (page scripts cannot read it),
``SameSite=Strict`` (a page of another site cannot make the browser send it), ``Path=/``,
``Max-Age`` the session's lifetime (at most 12 h), and ``Secure`` when the request came
over https (its scheme, or ``X-Forwarded-Proto`` from a proxy in front). Over https it is
named ``__Host-orch_session``: browsers take a ``__Host-`` cookie only when it is ``Secure``,
``Path=/`` and without ``Domain``, so a sibling subdomain cannot plant one of its own (both
names are read; the ``__Host-`` one wins).

A request that carries the cookie and changes state (POST, PUT, PATCH, DELETE) must say
where it comes from: its ``Origin`` must be the API's own (``same_origin``), else 403.

Example:
    >>> token = new_token()
    >>> len(token), session_id(token) == session_id(token)
    (43, True)
    >>> same_origin("http://127.0.0.1:8000", "http", "127.0.0.1:8000")
    True
    >>> same_origin("http://evil.example", "http", "127.0.0.1:8000")
    False
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response

from orchestrator.front import SessionRecords
from orchestrator.records import ConsoleSession

__all__ = [
    "COOKIE",
    "HOST_COOKIE",
    "SESSION_REFRESH_S",
    "STATE_CHANGING",
    "SessionCache",
    "clear_cookie",
    "new_token",
    "origin_allowed",
    "request_origin",
    "same_origin",
    "session_id",
    "set_cookie",
    "token_of",
]

COOKIE = "orch_session"
"""The cookie's name over http."""
HOST_COOKIE = "__Host-" + COOKIE
"""The cookie's name over https (a ``__Host-`` cookie cannot be set by another host)."""
TOKEN_BYTES = 32
"""Random bytes in a session token."""
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods whose cookie-authenticated requests must carry the API's own ``Origin``."""
SESSION_REFRESH_S = 1.0
"""How old a replica's copy of a session may be (a sign-out on another replica, or a
revocation, is seen within this plus one read)."""
CACHE_SIZE = 4096
"""Sessions one replica keeps a copy of (the least recently read go first)."""
MISS_CACHE_SIZE = 4096
"""Unknown session ids one replica remembers as unknown (apart from the sessions: a flood of
made-up cookies does not push real sessions out)."""
MISS_READS_PER_S = 8.0
"""Reads of session ids this replica has never seen, per second on average: a flood of
made-up cookies costs the records at most this many reads a second (past it such a cookie is
401 without a read, as if unknown; known sessions are read again as usual)."""
MISS_READS_BURST = 16.0
"""How many reads of unseen ids may come at once before ``MISS_READS_PER_S`` applies."""
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def new_token() -> str:
    """A new session token (43 URL-safe characters, 256 random bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def session_id(token: str) -> str:
    """The session's id: the sha256 hex digest of its token (what the records keep)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_of(conn: HTTPConnection) -> str | None:
    """The session token the request's cookie carries (``__Host-orch_session`` before
    ``orch_session``), or None."""
    token = (conn.cookies.get(HOST_COOKIE) or conn.cookies.get(COOKIE) or "").strip()
    # A token is base64url: anything else (or absurdly long) is no token at all.
    if not token or len(token) > 128 or not token.replace("-", "").replace("_", "").isalnum():
        return None
    return token


def _scheme(conn: HTTPConnection) -> str:
    """The scheme the client used: a proxy's ``X-Forwarded-Proto`` (its first value), else
    the request's own."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https"):
        return forwarded
    scheme = conn.url.scheme.lower()
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


def is_https(conn: HTTPConnection) -> bool:
    """Whether the client reached the API over https (the cookie is then ``Secure``)."""
    return _scheme(conn) == "https"


def _normal(scheme: str, host: str) -> str | None:
    """``scheme://host[:port]`` in lower case without the scheme's default port."""
    parts = urlsplit(f"{scheme}://{host}")
    try:
        hostname, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not hostname or parts.path or parts.query or parts.username is not None:
        return None
    shown = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and str(port) != _DEFAULT_PORTS.get(scheme):
        shown = f"{shown}:{port}"
    return f"{scheme}://{shown}"


def same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether ``origin`` (an ``Origin`` header) is ``scheme://host`` (``host`` as in the
    ``Host`` header), default ports and case aside."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
        return False
    theirs = _normal(parts.scheme, parts.netloc)
    ours = _normal(scheme, host)
    return theirs is not None and theirs == ours


def request_origin(conn: HTTPConnection) -> str | None:
    """The API's own origin as this request reached it (``scheme://Host``), or None."""
    host = conn.headers.get("host", "")
    return _normal(_scheme(conn), host) if host else None


def origin_allowed(conn: HTTPConnection, *, required: bool) -> bool:
    """Whether the request's ``Origin`` is the API's own; a request without one passes
    unless ``required``."""
    origin = conn.headers.get("origin")
    if origin is None:
        return not required
    host = conn.headers.get("host", "")
    return bool(host) and same_origin(origin, _scheme(conn), host)


def cookie_name(conn: HTTPConnection) -> str:
    """The cookie's name for this request: ``__Host-orch_session`` over https."""
    return HOST_COOKIE if is_https(conn) else COOKIE


def set_cookie(response: Response, conn: HTTPConnection, token: str, max_age_s: int) -> None:
    """Give the browser the session cookie (see the module's docstring for why each
    attribute and the name)."""
    response.set_cookie(
        cookie_name(conn),
        token,
        max_age=max_age_s,
        path="/",
        secure=is_https(conn),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, conn: HTTPConnection) -> None:
    """Tell the browser to drop the session cookie (both names over https)."""
    secure = is_https(conn)
    for name in (HOST_COOKIE, COOKIE) if secure else (COOKIE,):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")


class SessionCache:
    """This replica's copies of the sessions it has read, each used for at most
    ``SESSION_REFRESH_S``; unknown ids are remembered as unknown for as long, in a bounded set
    of their own, and ids never seen cost at most ``MISS_READS_PER_S`` reads a second.

    Example:
        >>> cache = SessionCache(lambda: None)  # records given later, when first read
        >>> cache.forget("a" * 64)
    """

    def __init__(
        self,
        records: Callable[[], SessionRecords | None],
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = SESSION_REFRESH_S,
    ) -> None:
        self._records = records
        self._clock = clock
        self.refresh_s = refresh_s
        self._copies: OrderedDict[str, tuple[ConsoleSession, float]] = OrderedDict()
        self._misses: OrderedDict[str, float] = OrderedDict()
        """Ids the records did not know, with when that was read."""
        self._reads: dict[str, asyncio.Future[ConsoleSession | None]] = {}
        self._budget = MISS_READS_BURST
        self._budget_at = clock()
        self.reads = 0
        """Reads of the records so far (for tests and metrics)."""

    def records(self) -> SessionRecords:
        """The records sessions are kept in (``RecordError`` when none are configured)."""
        found = self._records()
        if found is None:
            from orchestrator.errors import RecordError

            raise RecordError("no records for console sessions are configured")
        return found

    def forget(self, sid: str) -> None:
        """Drop the copy of session ``sid`` (after this replica changed it)."""
        self._copies.pop(sid, None)
        self._misses.pop(sid, None)

    def remember(self, session: ConsoleSession) -> None:
        """Keep ``session`` as just read (after this replica wrote it)."""
        self._keep(session.id, session, self._clock())

    def _keep(self, sid: str, session: ConsoleSession | None, at: float) -> None:
        if session is None:
            self._copies.pop(sid, None)
            self._misses[sid] = at
            self._misses.move_to_end(sid)
            while len(self._misses) > MISS_CACHE_SIZE:
                self._misses.popitem(last=False)
            return
        self._misses.pop(sid, None)
        self._copies[sid] = (session, at)
        self._copies.move_to_end(sid)
        while len(self._copies) > CACHE_SIZE:
            self._copies.popitem(last=False)

    def _may_read_unseen(self) -> bool:
        """Whether an id never seen may be read now (a token bucket of
        ``MISS_READS_PER_S``, ``MISS_READS_BURST`` deep)."""
        now = self._clock()
        self._budget = min(
            MISS_READS_BURST, self._budget + (now - self._budget_at) * MISS_READS_PER_S
        )
        self._budget_at = now
        if self._budget < 1.0:
            return False
        self._budget -= 1.0
        return True

    async def get(self, sid: str) -> ConsoleSession | None:
        """Session ``sid`` as the records had it at most ``refresh_s`` ago (one read at a
        time per id: concurrent requests with the same cookie share it). ``RecordError``
        when the records cannot be read."""
        now = self._clock()
        copy = self._copies.get(sid)
        if copy is not None and now - copy[1] < self.refresh_s:
            return copy[0]
        missed = self._misses.get(sid)
        if missed is not None and now - missed < self.refresh_s:
            return None
        pending = self._reads.get(sid)
        if pending is not None:
            return await asyncio.shield(pending)
        if copy is None and missed is None and not self._may_read_unseen():
            return None  # a flood of made-up cookies: answered unknown without a read
        future: asyncio.Future[ConsoleSession | None] = asyncio.get_running_loop().create_future()
        self._reads[sid] = future
        started = self._clock()
        try:
            self.reads += 1
            session = await self.records().session(sid)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning when none waits
            raise
        else:
            future.set_result(session)
            self._keep(sid, session, started)
            return session
        finally:
            self._reads.pop(sid, None)


def wall_clock() -> float:
    """Unix time now (a function, so that tests can pass another)."""
    return time.time()


def max_age(expires_at: float, now: float) -> int:
    """Whole seconds from ``now`` to ``expires_at`` (at least 0)."""
    return max(0, math.floor(expires_at - now))
