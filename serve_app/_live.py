"""The tenant-wide live update stream, the tenant's events by page, the replay of a moment,
the tenant's blobs, and capacity per node: what the console's one page is fed with.

- ``GET /v1/events/stream``: every event of the caller's tenant as Server-Sent Events (one
  stream per page, not one per task), from ``after_seq`` or ``Last-Event-ID`` (default: from
  now on); keep-alive comments; it ends within ``VALID_CHECK_S`` + a poll of the caller's key
  being revoked or its session ended (``still_valid``), with an ``event: end``.
- ``GET /v1/events``: a page of the tenant's events (``before_at``: the latest before then).
- ``GET /v1/replay?at=``: per agent of the tenant, its latest screenshot at or before ``at``
  and its status then, with the tenant's events of ``[at - 30 s, at]``.
- ``GET /v1/blobs/{address}``: a blob one of the tenant's events refers to (else 404).
- ``GET /v1/capacity``: desktops total, used, free and starting per node of the cluster.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import StreamingResponse

from orchestrator.config import api_settings
from orchestrator.domain import AgentInfo, EventKind
from orchestrator.errors import NotFoundError, RecordError, UnavailableError
from orchestrator.front import Capacity, Runtime

from ._front import Caller, Principal, Rt, still_valid
from ._models import EventPage, ReplayAgent, ReplayMoment
from ._stream import EVENTS_MAX_LIMIT, STREAM_POLL_S, slot_stream, sse

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["console"])

VALID_CHECK_S = 1.0
"""How often a stream checks that its caller's key or session is still in force."""
REPLAY_WINDOW_S = 30.0
"""A replay shows the events of this long before the moment."""
REPLAY_MAX_AGENTS = 200
"""The most agents a replay shows (the tenant's oldest first)."""
SHOT_LOOKBACK = 50
"""How many of an agent's latest step and model events a replay looks through for a shot."""
REPLAY_CONCURRENCY = 16
"""The most per-agent reads one replay runs at once (each is two records queries)."""
STREAM_MAX_ERRORS = 20
"""Consecutive failed polls after which a stream ends (the page reconnects)."""

SEQ = Annotated[int, Query(ge=0, le=2**63 - 1)]
MOMENT = Annotated[float, Query(ge=0, le=1e11, allow_inf_nan=False)]

_SHOT_KINDS = [EventKind.STEP, EventKind.MODEL]
"""Events that carry the screen the agent saw (a JPEG)."""


async def _latest_seq(rt: Runtime, tenant: str) -> int:
    """The tenant's newest event's seq (0 when it has none)."""
    newest = await rt.events(tenant=tenant, before_at=time.time() + 3600, limit=1)
    return (newest[-1].seq or 0) if newest else 0


async def _tenant_stream(rt: Runtime, caller: Principal, after_seq: int) -> AsyncIterator[str]:
    """The tenant's events after ``after_seq`` as SSE, live, until the caller's credentials
    end (or the records stay unavailable)."""
    keepalive_s = api_settings().sse_keepalive_s
    cursor = after_seq
    last_sent = checked = time.monotonic()
    errors = 0
    yield ": stream of the tenant's events\n\n"
    while True:
        if time.monotonic() - checked >= VALID_CHECK_S:
            if not await still_valid(caller):
                yield 'event: end\ndata: {"reason": "signed out or key revoked"}\n\n'
                return
            checked = time.monotonic()
        try:
            batch = await rt.events(tenant=caller.tenant, after_seq=cursor, limit=EVENTS_MAX_LIMIT)
            errors = 0
        except (RecordError, UnavailableError) as e:
            errors += 1
            if errors >= STREAM_MAX_ERRORS:
                log.warning("the tenant's event stream ends: %s", e)
                return
            await asyncio.sleep(STREAM_POLL_S * 2)  # the runtime finds a replaced recorder
            continue
        for event in batch:
            yield sse(event)
            cursor = max(cursor, event.seq or cursor)
        if batch:
            last_sent = time.monotonic()
            if len(batch) >= EVENTS_MAX_LIMIT:
                continue  # more are waiting
        if time.monotonic() - last_sent >= keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(STREAM_POLL_S)  # a poll of the records: the interval is the point


@router.get(
    "/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def tenant_event_stream(
    rt: Rt,
    caller: Caller,
    after_seq: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**63 - 1)] = None,
) -> StreamingResponse:
    """Every event of the caller's tenant, live, as Server-Sent Events (``id:`` the seq,
    ``data:`` the event): after ``Last-Event-ID`` or ``after_seq``, else from now on. Ends
    (``event: end``) within seconds of the caller's key being revoked or its session
    ending."""
    start = last_event_id if last_event_id is not None else after_seq
    if start is None:
        start = await _latest_seq(rt, caller.tenant)
    return slot_stream(_tenant_stream(rt, caller, start))


@router.get("/events")
async def tenant_events(
    rt: Rt,
    caller: Caller,
    after_seq: SEQ = 0,
    before_at: Annotated[float | None, Query(ge=0, le=1e11, allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=EVENTS_MAX_LIMIT)] = 100,
) -> EventPage:
    """The tenant's events with ``seq > after_seq``, oldest first; with ``before_at`` (unix
    seconds) the latest ``limit`` of those at or before then."""
    events = await rt.events(
        tenant=caller.tenant, after_seq=after_seq, before_at=before_at, limit=limit
    )
    last = max((e.seq or 0 for e in events), default=after_seq)
    return EventPage(events=events, next_after_seq=last, has_more=len(events) >= limit)


async def _agent_then(rt: Runtime, agent: AgentInfo, at: float) -> ReplayAgent:
    """The agent at ``at``: its latest screenshot and status then."""
    shots, said = await asyncio.gather(
        rt.events(agent_id=agent.id, before_at=at, kinds=_SHOT_KINDS, limit=SHOT_LOOKBACK),
        rt.events(agent_id=agent.id, before_at=at, kinds=[EventKind.AGENT], limit=SHOT_LOOKBACK),
    )
    shot = next((e for e in reversed(shots) if e.blobs), None)
    status = next(
        (str(e.data["status"]) for e in reversed(said) if isinstance(e.data.get("status"), str)),
        None,
    )
    return ReplayAgent(
        agent_id=agent.id,
        path=agent.path,
        status=status,
        screenshot=shot.blobs[0] if shot is not None else None,
        shot_at=shot.at if shot is not None else None,
    )


@router.get("/replay")
async def replay(rt: Rt, caller: Caller, at: MOMENT) -> ReplayMoment:
    """The moment ``at`` (unix seconds): per agent of the tenant, its latest screenshot at or
    before then (``GET /v1/blobs/{screenshot}``) and its status then, and the tenant's
    events of the 30 s before it."""
    agents = (await rt.list_agents(caller.tenant))[:REPLAY_MAX_AGENTS]
    agents = [x for x in agents if x.created_at <= at]
    gate = asyncio.Semaphore(REPLAY_CONCURRENCY)

    async def then(agent: AgentInfo) -> ReplayAgent:
        async with gate:
            return await _agent_then(rt, agent, at)

    shown = await asyncio.gather(*(then(x) for x in agents))
    recent = await rt.events(tenant=caller.tenant, before_at=at, limit=EVENTS_MAX_LIMIT)
    events = [e for e in recent if e.at >= at - REPLAY_WINDOW_S]
    return ReplayMoment(at=at, agents=list(shown), events=events)


def _media_type(data: bytes) -> str:
    """What a stored blob is, from its first bytes (screenshots are JPEG or PNG)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return "application/octet-stream"


@router.get(
    "/blobs/{address}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
async def tenant_blob(
    rt: Rt, caller: Caller, address: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
) -> Response:
    """A screenshot or file one of the tenant's events refers to (404 otherwise, also for
    another tenant's), with its media type; cached by the browser (content-addressed)."""
    if not await rt.events(tenant=caller.tenant, blob=address, limit=1):
        raise NotFoundError(f"no blob {address}")
    data = await rt.blob(address)
    media_type = _media_type(data)
    headers = {"Cache-Control": "private, max-age=86400, immutable"}
    if media_type == "application/octet-stream":
        headers["Content-Disposition"] = f'attachment; filename="{address[:16]}"'
    return Response(content=data, media_type=media_type, headers=headers)


@router.get("/capacity")
async def capacity(rt: Rt, caller: Caller) -> Capacity:
    """Desktops per node of the cluster: total, used, free and starting (the caller's agents
    waiting for their desktop), and whether the node is alive; ``starting_unplaced``: the
    caller's agents waiting for a node with a free desktop. Nodes are named by opaque labels
    (no network address, no Ray id); other tenants' starting agents are not counted."""
    return await rt.capacity(caller.tenant)
