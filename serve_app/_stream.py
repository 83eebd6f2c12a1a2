"""A task's events as Server-Sent Events, live, in one of the replica's stream slots."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import HTTPException
from fastapi.responses import StreamingResponse

from orchestrator.config import api_settings
from orchestrator.domain import Event, EventKind, TaskState
from orchestrator.errors import RecordError, UnavailableError
from orchestrator.front import Runtime

from ._auth import Principal, request_principal, still_valid
from ._errors import RETRY_AFTER_S
from ._limit import DEFAULT_MAX_STREAMS, ENV_MAX_STREAMS, TenantSlots

__all__ = [
    "EVENTS_MAX_LIMIT",
    "STREAM_POLL_S",
    "VALID_CHECK_S",
    "open_stream",
    "slot_stream",
    "sse",
]

log = logging.getLogger(__name__)

EVENTS_MAX_LIMIT = 1000
"""The most events one page (or one read of a stream) holds."""
STREAM_POLL_S = 0.25
"""How often an event stream looks for new events."""
STREAM_FINAL_GRACE_S = 5.0
"""How long a stream waits for a finished task's final event before it ends anyway."""
STREAM_MAX_ERRORS = 20
"""Consecutive failed polls (records or cluster unavailable) after which a stream ends."""
VALID_CHECK_S = 1.0
"""How often a stream checks that its caller's key or session is still in force."""
END_REVOKED = 'event: end\ndata: {"reason": "signed out or key revoked"}\n\n'
"""What a stream sends last when its caller's credentials ended."""

_FINAL = frozenset(s.value for s in TaskState if s.done)

_streams = TenantSlots(ENV_MAX_STREAMS, DEFAULT_MAX_STREAMS)
"""The replica's stream slots (one process, one event loop: the module's own counter), with
a sub-limit per tenant."""


def sse(event: Event) -> str:
    """One event as a Server-Sent Event (``id:`` its seq)."""
    return f"id: {event.seq}\ndata: {event.model_dump_json()}\n\n"


def _is_final(event: Event) -> bool:
    state = event.data.get("state")
    return event.kind == EventKind.TASK and isinstance(state, str) and state in _FINAL


async def _event_stream(
    rt: Runtime, caller: Principal, task_id: str, after_seq: int
) -> AsyncIterator[str]:
    """The task's events after ``after_seq`` as SSE, live, until it is done and all are sent.

    Ends once the task is in a final state and its final ``task`` event was sent (or
    ``STREAM_FINAL_GRACE_S`` after it was seen finished without one), or, with an ``event:
    end``, within ``VALID_CHECK_S`` (plus a poll) of the caller's key being revoked or its
    console session ended (``still_valid``); a comment is sent every
    ``ORCHESTRATOR_API_SSE_KEEPALIVE_S`` seconds while nothing happens.
    """
    keepalive_s = api_settings().sse_keepalive_s
    cursor = after_seq
    final_sent = False
    done_since: float | None = None
    last_sent = checked = time.monotonic()
    errors = 0
    yield ": stream of task " + task_id + "\n\n"
    while True:
        if time.monotonic() - checked >= VALID_CHECK_S:
            if not await still_valid(caller):
                yield END_REVOKED
                return
            checked = time.monotonic()
        try:
            # The state is read before the events: when it is final, every event written
            # before it is in the reads that follow.
            task = await rt.task(task_id)
            batch = await rt.events(task_id=task_id, after_seq=cursor, limit=EVENTS_MAX_LIMIT)
            errors = 0
        except (RecordError, UnavailableError) as e:
            errors += 1
            if errors >= STREAM_MAX_ERRORS:
                log.warning("event stream of %s ends: %s", task_id, e)
                return
            await asyncio.sleep(STREAM_POLL_S * 2)  # the runtime finds a replaced recorder
            continue
        for event in batch:
            yield sse(event)
            cursor = max(cursor, event.seq or cursor)
            final_sent = final_sent or _is_final(event)
        if batch:
            last_sent = time.monotonic()
        if len(batch) >= EVENTS_MAX_LIMIT:
            continue  # more are waiting
        if task.state.done:
            if final_sent:
                return
            done_since = done_since or time.monotonic()
            if time.monotonic() - done_since >= STREAM_FINAL_GRACE_S:
                return
        if time.monotonic() - last_sent >= keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(STREAM_POLL_S)


class _SlotStream(StreamingResponse):
    """An event stream that gives its slot back when the response ends, however it ends
    (also when the client is gone before the first byte and the body never starts)."""

    tenant: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            _streams.give_back_for(self.tenant)


def open_stream(rt: Runtime, caller: Principal, task_id: str, after_seq: int) -> StreamingResponse:
    """The event stream of a task for ``caller``, in one of the replica's stream slots (429
    when none is free, or when the caller's tenant holds its share of them)."""
    return slot_stream(_event_stream(rt, caller, task_id, after_seq), caller.tenant)


def slot_stream(body: AsyncIterator[str], tenant: str | None = None) -> StreamingResponse:
    """``body`` as a Server-Sent Events response in one of the replica's stream slots (429
    when none is free, or when ``tenant`` holds ``1/TENANT_SHARE`` of them; the slot is given
    back however the response ends). ``tenant`` defaults to the tenant of the request's
    caller (``principal_of`` of the route being served), if any."""
    if tenant is None:
        caller = request_principal.get()
        tenant = caller.tenant if caller is not None else None
    if not _streams.try_take_for(tenant):
        over_share = _streams.busy < _streams.limit
        limit = _streams.tenant_limit if over_share else _streams.limit
        whose = "of this tenant " if over_share else ""
        raise HTTPException(
            429,
            f"too many open event streams {whose}(limit {limit}); retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    response = _SlotStream(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.tenant = tenant
    return response
