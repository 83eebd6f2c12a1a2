"""Stepping in: a person's lease on an agent's desktop (take over, hand back).

Taking the lease pauses the agent's running task (its ``paused`` event says who took over);
while it is held only the holder's input reaches the desktop (the relay's control sessions,
``POST .../actions`` and ``.../shell``: 409 for anyone else). Handing back resumes the task
with the person's note in the agent's history; a lease not renewed ends by itself after
``ttl_s`` (default 15 min). The holder is the caller: its console session, or its API key.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.lease import DEFAULT_LEASE_TTL_S, MAX_LEASE_TTL_S, Lease

from . import _auth
from ._auth import Principal
from ._front import Caller, Rt

__all__ = ["HandBack", "TakeOver", "router"]

MAX_NOTE_CHARS = 20_000
"""The longest hand-back note."""

log = logging.getLogger(__name__)

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
    ttl_s = await _capped_ttl(caller, (body or TakeOver()).ttl_s)
    ref = await rt.agent_ref(agent_id, caller.tenant)
    held = await ref.lease()
    if held is not None and held.holder != caller.holder and not await _holder_holds(held):
        log.info("lease %s of %s: its holder's credentials ended; released", held.id, agent_id)
        await ref.release_lease(held.id, "holder signed out")
    auth: dict[str, str | None] = {
        k: v for k, v in caller.model_dump(mode="json").items() if isinstance(v, str | None)
    }
    return await ref.take_lease(caller.holder, ttl_s, auth)


async def _capped_ttl(caller: Principal, ttl_s: float) -> float:
    """``ttl_s``, cut at the caller's console session's remaining life (a lease never
    outlives the session that took it)."""
    if caller.session_id is None:
        return ttl_s
    session = await _auth.sessions.get(caller.session_id)
    if session is None:
        return ttl_s  # the session check of the request itself refused it already
    return max(1.0, min(ttl_s, session.expires_at - time.time()))


async def _holder_holds(lease: Lease) -> bool:
    """Whether the lease's holder's key and console session are still in force (a lease
    taken before holders were kept counts as held)."""
    if lease.holder_auth is None:
        return True
    try:
        holder = Principal.model_validate(lease.holder_auth)
    except ValueError:
        return True
    return await _auth.still_valid(holder)


@router.post("/hand-back")
async def hand_back(
    rt: Rt, caller: Caller, agent_id: str, body: Annotated[HandBack | None, Body()] = None
) -> Lease:
    """Hand the desktop back: the task resumes with the note in the agent's history. 409
    when the caller does not hold the lease."""
    note = (body or HandBack()).note
    return await (await rt.agent_ref(agent_id, caller.tenant)).hand_back(caller.holder, note)
