"""Stepping in: a person's lease on an agent's desktop (take over, hand back).

Taking the lease pauses the agent's running task (its ``paused`` event says who took over);
while it is held only the holder's input reaches the desktop (the relay's control sessions,
``POST .../actions`` and ``.../shell``: 409 for anyone else). Handing back resumes the task
with the person's note in the agent's history; a lease not renewed ends by itself after
``ttl_s`` (default 15 min). The holder is the caller: its console session, or its API key.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.lease import DEFAULT_LEASE_TTL_S, MAX_LEASE_TTL_S, Lease

from ._front import Caller, Rt

__all__ = ["HandBack", "TakeOver", "router"]

MAX_NOTE_CHARS = 20_000
"""The longest hand-back note."""

router = APIRouter(prefix="/v1/agents/{agent_id}/lease", tags=["stepping in"])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class TakeOver(_Model):
    """How long the lease lasts unless renewed (taking it again renews it)."""

    ttl_s: Annotated[float, Field(gt=0, le=MAX_LEASE_TTL_S)] = DEFAULT_LEASE_TTL_S
    """Seconds until it hands back by itself (no note)."""


class HandBack(_Model):
    """The person's note for the agent, put into its history."""

    note: Annotated[str | None, Field(max_length=MAX_NOTE_CHARS)] = None
    """What the person did (the agent reads it before its next step)."""


@router.get("")
async def get_lease(rt: Rt, caller: Caller, agent_id: str) -> Lease | None:
    """The lease in force on the agent's desktop, or null."""
    return await (await rt.agent_ref(agent_id, caller.tenant)).lease()


@router.post("")
async def take_over(
    rt: Rt, caller: Caller, agent_id: str, body: Annotated[TakeOver | None, Body()] = None
) -> Lease:
    """Take the desktop over (or renew the lease): the agent's running task pauses. 409
    while someone else holds it."""
    ttl_s = (body or TakeOver()).ttl_s
    return await (await rt.agent_ref(agent_id, caller.tenant)).take_lease(caller.holder, ttl_s)


@router.post("/hand-back")
async def hand_back(
    rt: Rt, caller: Caller, agent_id: str, body: Annotated[HandBack | None, Body()] = None
) -> Lease:
    """Hand the desktop back: the task resumes with the note in the agent's history. 409
    when the caller does not hold the lease."""
    note = (body or HandBack()).note
    return await (await rt.agent_ref(agent_id, caller.tenant)).hand_back(caller.holder, note)
