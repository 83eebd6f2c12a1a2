"""What the routes are handed: the runtime (a FastAPI dependency), the caller (``Caller``:
who, from a bearer key or the console cookie) and the caller's tenant.

``runtime`` is the dependency every route takes (``Rt``): on a Serve replica the cluster's
``actors.Runtime``; a test overrides it (``app.dependency_overrides[runtime]``) with an
in-process implementation of ``orchestrator.front.Runtime``.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from typing import Annotated

from fastapi import Depends

from orchestrator.front import Runtime

from ._auth import Principal, principal_of, still_valid, tenant_of
from ._tickets import TicketGrant, redeem

__all__ = [
    "Caller",
    "Principal",
    "Rt",
    "Tenant",
    "TicketGrant",
    "principal_of",
    "redeem",
    "runtime",
    "still_valid",
]


def runtime() -> Runtime:
    """The runtime of the cluster this process is connected to (``actors.Runtime`` on this
    process's recorder reference: no lookup per request, a replaced recorder is found)."""
    from actors import Runtime as RayRuntime

    return RayRuntime.shared()


Rt = Annotated[Runtime, Depends(runtime)]
"""The runtime a route calls (overridable in tests)."""

Tenant = Annotated[str, Depends(tenant_of)]
"""The tenant of the request's API key (401 without a valid one)."""

Caller = Annotated[Principal, Depends(principal_of)]
"""Who the request is: a bearer key or a console session (401 without either; 403 for a
cookie on a state-changing request from another origin)."""
