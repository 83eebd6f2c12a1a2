"""Tenants: their API keys (kept as sha256 digests only) and their quotas.

A key is made where it is handed out (``make_key``), shown once, and only its digest is
stored (in the records, beside an id, the tenant, a name and its created/revoked times).
Quotas are per tenant, shared by all its keys, unlimited unless set; the runtime checks them
where agents are recorded and tasks accepted (``orchestrator.records``), answering
``QuotaExceededError`` (HTTP 429 ``quota_exceeded``) with the limit and the current count.

Example:
    >>> key = make_key()
    >>> key.startswith(KEY_PREFIX), len(digest(key))
    (True, 64)
    >>> Quotas(max_agents=2).merged(Quotas(max_running_tasks=5))
    Quotas(max_agents=2, max_desktops=None, max_running_tasks=5)
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .domain import now

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "Quotas",
    "Tenant",
    "digest",
    "make_key",
]

KEY_PREFIX = "orch_"
"""What every key this module makes starts with (recognisable in a leaked file or log)."""

Tenant = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")]
"""A tenant's name (as in API key files and agent paths)."""

Limit = Annotated[int, Field(ge=0, le=1_000_000)] | None


def make_key() -> str:
    """A new API key: 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """The sha256 hex digest of a key: what is stored (the keys are random, so a plain hash
    is enough: there is nothing to guess)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class Quotas(_Model):
    """A tenant's limits; None is unlimited (the default)."""

    max_agents: Limit = None
    """Live top-level agents (the ones it creates; hired specialists are not counted here)."""
    max_desktops: Limit = None
    """Live agents at any level, each with its desktop (hired specialists included)."""
    max_running_tasks: Limit = None
    """Tasks it gave (not subtasks of delegation) that are pending, running or waiting."""

    def merged(self, update: Quotas) -> Quotas:
        """These quotas with the ones ``update`` sets explicitly replacing them."""
        return self.model_copy(update=update.model_dump(exclude_unset=True))

    def __str__(self) -> str:
        def shown(v: int | None) -> str:
            return "unlimited" if v is None else str(v)

        return (
            f"agents {shown(self.max_agents)}, desktops {shown(self.max_desktops)}, "
            f"running tasks {shown(self.max_running_tasks)}"
        )


class ApiKey(_Model):
    """An API key as stored and listed: never the key, never its digest."""

    id: str
    """``key-…``: names the key to revoke it."""
    tenant: Tenant
    """Whose key it is."""
    name: Annotated[str, Field(max_length=200)] = ""
    """A label (who or what uses it)."""
    created_at: float = Field(default_factory=now)
    """When it was made (epoch seconds)."""
    revoked_at: float | None = None
    """When it was revoked; None while it works."""
