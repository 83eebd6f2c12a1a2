"""The route of a tenant's counts: agents by status, tasks by state (counted by the records,
with no page cap and without reading the tasks)."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from fastapi import APIRouter

from ._front import Rt, Tenant
from ._models import Stats

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["stats"])


@router.get("/stats")
async def stats(rt: Rt, tenant: Tenant) -> Stats:
    """The tenant's agents by status and tasks by state."""
    counted = await rt.stats(tenant)
    return Stats(agents=counted.agents, tasks=counted.tasks)
