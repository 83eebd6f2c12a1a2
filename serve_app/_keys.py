"""API keys: their digests, each with its tenant (``KeyStore``), and the keys kept in the
records as this process last read them (``RecordKeys``).

Keys are configured by ``ORCHESTRATOR_API_KEYS`` (comma-separated ``tenant:key`` pairs) and/or
a file named by ``ORCHESTRATOR_API_KEYS_FILE`` (one ``tenant:key`` or ``tenant:sha256:<hex>``
per line); only sha256 digests are kept, compared in constant time, never logged. Keys added
with ``orchestrator keys add`` live in the records and are read again every few seconds
(``KEYS_REFRESH_S``). ``serve_app._auth`` re-exports every name here.

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
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from orchestrator.config import ApiSettings, api_settings, env_name
from orchestrator.errors import ConfigError, RecordError

__all__ = [
    "ENV_KEYS",
    "ENV_KEYS_FILE",
    "KEYS_MAX_AGE_S",
    "KEYS_MISS_REFRESH_S",
    "KEYS_READ_TIMEOUT_S",
    "KEYS_REFRESH_S",
    "KeyStore",
    "RecordKeys",
    "sha256_of",
    "one_line",
]

log = logging.getLogger(__name__)

ENV_KEYS = env_name(ApiSettings, "keys")
ENV_KEYS_FILE = env_name(ApiSettings, "keys_file")

_TENANT = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_MIN_KEY_LEN = 8


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
                log.warning("cannot read the API keys in the records: %s", one_line(e))
                return
            self._keys, self._read_at = keys, started

    async def tenant_for(self, key: str, max_age_s: float = KEYS_REFRESH_S) -> str | None:
        """The tenant of ``key`` among the records' keys in force, or None, from a copy at
        most ``max_age_s`` old (``KEYS_MISS_REFRESH_S``: as fresh as reads may come, for a
        sign-in, which makes something that lasts).

        ``RecordError`` when the copy is older than ``KEYS_MAX_AGE_S`` and cannot be read
        again (whether the key was revoked meanwhile is unknown)."""
        return await self.tenant_for_digest(_digest(key), max_age_s)

    async def tenant_for_digest(
        self, digest: bytes, max_age_s: float = KEYS_REFRESH_S
    ) -> str | None:
        """``tenant_for`` the key whose sha256 digest is ``digest``."""
        await self.refresh(max(max_age_s, KEYS_MISS_REFRESH_S))
        tenant = self._keys.tenant_for_digest(digest) if self.age() <= KEYS_MAX_AGE_S else None
        if tenant is None:
            await self.refresh(KEYS_MISS_REFRESH_S)
            if self.age() > KEYS_MAX_AGE_S:
                raise RecordError("the API keys in the records cannot be read")
            tenant = self._keys.tenant_for_digest(digest)
        return tenant


def one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


sha256_of = _digest
"""The sha256 digest of an API key (what is kept and compared)."""
