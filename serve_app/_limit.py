"""Overload protection: a cap on the requests one replica works on at once.

Over the cap a request is refused at once with 429, ``Retry-After`` and the one error shape,
instead of queueing without bound. The cap is ``ORCHESTRATOR_API_MAX_CONCURRENT`` (default
64), read by each replica on its first request. ``/healthz`` and the event streams are not
counted here (streams are long-lived and have their own cap, ``ORCHESTRATOR_API_MAX_STREAMS``).
"""

from __future__ import annotations

import logging
import re

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.config import ApiSettings, api_settings, env_name

from ._errors import RETRY_AFTER_S, error_body

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_STREAMS",
    "ENV_MAX_CONCURRENT",
    "ENV_MAX_STREAMS",
    "RETRY_AFTER_S",
    "STREAM_PATH",
    "ConcurrencyLimit",
    "Slots",
    "TenantSlots",
    "counted",
    "env_limit",
    "overloaded",
]

log = logging.getLogger(__name__)

ENV_MAX_CONCURRENT = env_name(ApiSettings, "max_concurrent")
ENV_MAX_STREAMS = env_name(ApiSettings, "max_streams")
DEFAULT_MAX_CONCURRENT: int = ApiSettings.model_fields["max_concurrent"].default
DEFAULT_MAX_STREAMS: int = ApiSettings.model_fields["max_streams"].default
_FIELDS = {ENV_MAX_CONCURRENT: "max_concurrent", ENV_MAX_STREAMS: "max_streams"}

STREAM_PATH = re.compile(r"/v1/(?:tasks/[^/]+/)?events/stream")
"""The event streams (a task's, the tenant's): they hold a stream slot, not a request slot."""
_EXEMPT = frozenset({"/healthz"})


def env_limit(name: str, default: int) -> int:
    """The cap ``name`` (``ENV_MAX_CONCURRENT`` or ``ENV_MAX_STREAMS``) as the environment sets
    it (``orchestrator.config.ApiSettings``), else ``default``; ``ConfigError`` naming the
    variable when it is not a positive integer."""
    field = _FIELDS[name]
    found = api_settings()
    return int(getattr(found, field)) if field in found.model_fields_set else default


def overloaded(message: str) -> JSONResponse:
    """429 in the one error shape, with ``Retry-After``."""
    return JSONResponse(
        error_body("too_many_requests", message),
        status_code=429,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class Slots:
    """A non-blocking counter of busy slots (one event loop per replica: no lock needed)."""

    def __init__(self, env: str, default: int) -> None:
        self.env = env
        self.default = default
        self.busy = 0
        self._limit: int | None = None

    @property
    def limit(self) -> int:
        if self._limit is None:  # read in the replica, not where the app was built
            self._limit = env_limit(self.env, self.default)
        return self._limit

    def try_take(self) -> bool:
        if self.busy >= self.limit:
            return False
        self.busy += 1
        return True

    def give_back(self) -> None:
        self.busy -= 1


TENANT_SHARE = 4
"""A tenant may hold at most ``1/TENANT_SHARE`` of a replica's stream slots (at least one),
so that one tenant's streams cannot leave every other tenant 429."""


class TenantSlots(Slots):
    """``Slots`` with a sub-limit per tenant: ``limit // TENANT_SHARE`` each, so that one
    tenant cannot take every slot; a replica with fewer than ``2 * TENANT_SHARE`` slots is
    too small to share out (a tenant may take them all)."""

    def __init__(self, env: str, default: int) -> None:
        super().__init__(env, default)
        self.per_tenant: dict[str, int] = {}

    @property
    def tenant_limit(self) -> int:
        if self.limit < 2 * TENANT_SHARE:
            return self.limit
        return self.limit // TENANT_SHARE

    def try_take_for(self, tenant: str | None) -> bool:
        """Take a slot for ``tenant`` (None: counted against the replica's limit only)."""
        if tenant is not None and self.per_tenant.get(tenant, 0) >= self.tenant_limit:
            return False
        if not self.try_take():
            return False
        if tenant is not None:
            self.per_tenant[tenant] = self.per_tenant.get(tenant, 0) + 1
        return True

    def give_back_for(self, tenant: str | None) -> None:
        """Give back a slot ``try_take_for(tenant)`` took."""
        self.give_back()
        if tenant is not None:
            left = self.per_tenant.get(tenant, 0) - 1
            if left > 0:
                self.per_tenant[tenant] = left
            else:
                self.per_tenant.pop(tenant, None)


REQUESTS = Slots(ENV_MAX_CONCURRENT, DEFAULT_MAX_CONCURRENT)
"""The requests this process works on (one replica per process)."""


def counted(path: str) -> bool:
    """Whether a request to ``path`` takes one of the replica's request slots (all but
    exactly ``/healthz`` and the event streams, which have slots of their own)."""
    return path not in _EXEMPT and STREAM_PATH.fullmatch(path) is None


class ConcurrencyLimit:
    """ASGI middleware: at most ``ORCHESTRATOR_API_MAX_CONCURRENT`` requests at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The process's counter, not one per instance: Serve may build the app's middleware
        # stack more than once in a replica (seen with its gRPC proxy path), and every
        # instance must count the same requests.
        self.slots = REQUESTS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # an app under a route prefix: its own path
            path = path[len(root) :]
        if scope["type"] != "http" or not counted(path):
            await self.app(scope, receive, send)
            return
        if not self.slots.try_take():
            log.warning("over %d concurrent requests: refusing %s", self.slots.limit, path)
            msg = f"too many concurrent requests (limit {self.slots.limit}); retry later"
            await overloaded(msg)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.give_back()
