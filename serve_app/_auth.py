"""API keys: bearer tokens that map to tenants.

Keys are configured by ``ORCHESTRATOR_API_KEYS`` (comma-separated ``tenant:key`` pairs) and/or
a file named by ``ORCHESTRATOR_API_KEYS_FILE`` (one ``tenant:key`` or ``tenant:sha256:<hex>``
per line; blank lines and ``#`` comments are skipped). Only sha256 digests of the keys are
kept in memory; a presented key is hashed and compared against every digest in constant time.
Keys are never logged and never appear in error messages.

Example:
    >>> keys = KeyStore.parse("acme:s3cret")
    >>> keys.tenant_for("s3cret"), keys.tenant_for("wrong")
    ('acme', None)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import Request

from orchestrator.errors import ConfigError

__all__ = [
    "ENV_KEYS",
    "ENV_KEYS_FILE",
    "KeyStore",
    "Unauthorized",
    "check_key",
    "configure",
    "current_keys",
    "needs_key",
    "tenant_of",
]

log = logging.getLogger(__name__)

ENV_KEYS = "ORCHESTRATOR_API_KEYS"
ENV_KEYS_FILE = "ORCHESTRATOR_API_KEYS_FILE"

_TENANT = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_MIN_KEY_LEN = 8


class Unauthorized(Exception):
    """No valid API key was presented (answered 401 with ``WWW-Authenticate: Bearer``)."""


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
        inline = os.environ.get(ENV_KEYS, "")
        if inline.strip():
            store._merge(cls.parse(inline, separators=",", where=ENV_KEYS))
        path = keys_file or os.environ.get(ENV_KEYS_FILE)
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
        presented = _digest(key)
        found: str | None = None
        for digest, tenant in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = tenant
        return found


_keys: KeyStore | None = None


def configure(keys: KeyStore | None) -> None:
    """Use ``keys`` in this process (None: load from the environment on first use)."""
    global _keys
    _keys = keys


def current_keys() -> KeyStore:
    global _keys
    if _keys is None:
        _keys = KeyStore.from_env()
    return _keys


def check_key(request: Request) -> str:
    """The tenant of the request's bearer key, or ``Unauthorized``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    tenant = current_keys().tenant_for(token)
    if tenant is None:
        raise Unauthorized("invalid API key")
    return tenant


async def tenant_of(request: Request) -> str:
    """FastAPI dependency: the tenant of the request's bearer key, or ``Unauthorized``.

    A coroutine so that FastAPI runs it on the event loop, not in a worker thread (a thread
    hop per request costs more than the check itself)."""
    return check_key(request)


def _depends_on(dependant: Any, call: Any) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def needs_key(request: Request) -> bool:
    """Whether the route the request was routed to takes the ``tenant_of`` dependency.

    FastAPI parses a JSON body before it solves dependencies; the error handlers ask this to
    answer an unauthenticated request 401 rather than telling it what is wrong with its body.
    """
    dependant = getattr(request.scope.get("route"), "dependant", None)
    return dependant is not None and _depends_on(dependant, tenant_of)
