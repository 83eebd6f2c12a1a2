"""The live desktop relay: a WebSocket per agent carrying its VNC stream through its actor.

``GET /v1/agents/{agent_id}/vnc?ticket=T`` (WebSocket; the subprotocol ``binary`` is
accepted when offered). The viewer (the console's noVNC) speaks plain RFB 3.8 with security
type None: this replica answers that handshake (``desktop.ViewerHandshake``) while the
agent's actor opens the desktop's side (it authenticates to the desktop's VNC server itself,
and its ``ServerInit`` is what the viewer gets next); the actor then parses every message
the viewer sends (``actors._vnc``, ``desktop.ViewerFilter``), so input reaches the desktop
only for a ``control`` ticket whose holder holds the agent's lease.

Refusals: a request whose ``Origin`` is not the API's own is refused before the upgrade
(HTTP 403). After the upgrade the WebSocket closes with ``4401`` for a missing, bad or
expired ticket, ``4404`` for an agent that is not running (or another tenant's), ``4403``
once the key or console session behind the ticket is revoked or ended (checked every
``VALID_CHECK_S``), ``4401`` again when its time is up (``RELAY_LIFE_S`` past the ticket's
expiry: one hour for ``embed``, whose page cannot mint a new ticket; the console's live view
reconnects with a fresh ticket), ``4429`` when the agent already has ``MAX_PER_AGENT`` relays
open in this replica or the tenant ``MAX_PER_TENANT``, ``1011`` when the desktop's side
fails or the viewer breaks the handshake (or takes over ``HANDSHAKE_TIMEOUT_S``), ``1000``
when the session ends.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import asyncio
import contextlib
import logging
import time
from collections import Counter

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from orchestrator.desktop import ViewerHandshake
from orchestrator.errors import AgentError, DesktopError, NotFoundError, OrchestratorError
from orchestrator.front import VncRelay

from ._auth import Ended, Unauthorized
from ._cookie import origin_allowed
from ._front import Rt, TicketGrant, redeem, still_valid

__all__ = [
    "CLOSE_BAD_TICKET",
    "CLOSE_ENDED",
    "CLOSE_FAILED",
    "CLOSE_TOO_MANY",
    "CLOSE_UNKNOWN_AGENT",
    "HANDSHAKE_TIMEOUT_S",
    "MAX_PER_AGENT",
    "MAX_PER_TENANT",
    "RELAY_LIFE_S",
    "VALID_CHECK_S",
    "router",
]

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_BAD_TICKET = 4401
"""Close code: no ticket, or one that is bad, expired or for another agent."""
CLOSE_ENDED = 4403
"""Close code: the key or the console session behind the ticket is no longer in force."""
CLOSE_UNKNOWN_AGENT = 4404
"""Close code: the agent is not running (or is another tenant's)."""
CLOSE_FAILED = 1011
"""Close code: the desktop's side failed."""
CLOSE_TOO_MANY = 4429
"""Close code: too many relays open for the agent or the tenant."""
VALID_CHECK_S = 1.0
"""How often an open relay asks whether its credentials still hold."""
MAX_PER_AGENT = 8
"""The most relays one agent has open in one replica."""
MAX_PER_TENANT = 32
"""The most relays one tenant has open in one replica."""
RELAY_LIFE_S = {"view": 600.0, "control": 600.0, "embed": 3600.0}
"""How long past its ticket's expiry a relay stays open, by mode."""
HANDSHAKE_TIMEOUT_S = 10.0
"""How long the viewer's side of the handshake (up to its ``ClientInit``) may take."""

_open_agent: Counter[str] = Counter()
_open_tenant: Counter[str] = Counter()


@router.websocket("/v1/agents/{agent_id}/vnc")
async def vnc(websocket: WebSocket, agent_id: str, rt: Rt, ticket: str = "") -> None:
    """Relay the agent's desktop to a viewer (see the module's docstring)."""
    if not origin_allowed(websocket, required=False):
        await websocket.close(code=1008)  # before the upgrade: the server answers 403
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="binary" if "binary" in offered else None)
    try:
        grant = await redeem(ticket, agent_id)
    except Ended as e:
        await _close(websocket, CLOSE_ENDED, str(e))
        return
    except Unauthorized as e:
        await _close(websocket, CLOSE_BAD_TICKET, str(e))
        return
    if _open_agent[agent_id] >= MAX_PER_AGENT or _open_tenant[grant.tenant] >= MAX_PER_TENANT:
        await _close(websocket, CLOSE_TOO_MANY, "too many live views are open")
        return
    _open_agent[agent_id] += 1
    _open_tenant[grant.tenant] += 1
    try:
        await _relay(websocket, rt, agent_id, grant)
    finally:
        for counts, key in ((_open_agent, agent_id), (_open_tenant, grant.tenant)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]


async def _open(rt: Rt, agent_id: str, grant: TicketGrant) -> VncRelay:
    ref = await rt.agent_ref(agent_id, grant.tenant)
    return await ref.vnc_relay(grant.mode, grant.holder)


async def _relay(websocket: WebSocket, rt: Rt, agent_id: str, grant: TicketGrant) -> None:
    """Answer the viewer's handshake while the actor opens the desktop's side (the two take
    about as long: the viewer waits for the longer, not for their sum), then splice."""
    opening = asyncio.create_task(_open(rt, agent_id, grant))
    handshake = asyncio.create_task(_viewer_handshake(websocket))
    try:
        await asyncio.wait({opening, handshake}, return_when=asyncio.FIRST_EXCEPTION)
        if opening.done() and opening.exception() is not None:
            handshake.cancel()  # no desktop side: the viewer's handshake is moot
        # An open under way is awaited, not cancelled: the session it makes must be closed.
        await asyncio.gather(opening, handshake, return_exceptions=True)
    except asyncio.CancelledError:
        handshake.cancel()
        await asyncio.shield(_close_once_open(opening))
        raise
    if (refused := opening.exception()) is not None:
        await _refused(websocket, agent_id, refused)
        return
    relay = opening.result()
    try:
        failed = None if handshake.cancelled() else handshake.exception()
        if handshake.cancelled() or failed is not None:
            reason = "no handshake from the viewer"
            if isinstance(failed, DesktopError):
                reason = str(failed)
            elif failed is not None and not isinstance(failed, WebSocketDisconnect | TimeoutError):
                log.info("relay of %s: the viewer's handshake failed: %s", agent_id, failed)
            await _close(websocket, CLOSE_FAILED, reason)
            return
        rest = handshake.result()
        if rest:
            await relay.send(rest)
        code, reason = await _splice(websocket, relay, grant)
    finally:
        await asyncio.shield(relay.close())
    await _close(websocket, code, reason)


async def _close_once_open(opening: asyncio.Task[VncRelay]) -> None:
    with contextlib.suppress(Exception):
        relay = await opening
        await relay.close()


async def _refused(websocket: WebSocket, agent_id: str, e: BaseException | None) -> None:
    """Close the viewer's WebSocket for a desktop side that could not open."""
    if isinstance(e, NotFoundError):
        await _close(websocket, CLOSE_UNKNOWN_AGENT, "no such running agent")
        return
    log.info("relay of %s refused: %s", agent_id, e)  # any failure: 1011, no traceback
    code = CLOSE_UNKNOWN_AGENT if isinstance(e, AgentError) else CLOSE_FAILED
    reason = str(e) if isinstance(e, OrchestratorError) else "the desktop's side failed"
    await _close(websocket, code, reason)


async def _viewer_handshake(websocket: WebSocket) -> bytes:
    """The viewer's handshake up to its ``ClientInit``; returns what it sent after that.
    ``DesktopError`` when it breaks the protocol, ``TimeoutError`` after
    ``HANDSHAKE_TIMEOUT_S``, ``WebSocketDisconnect`` when it goes."""
    viewer = ViewerHandshake()
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
        await websocket.send_bytes(viewer.greeting())
        while not viewer.done:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode()
            answer = viewer.feed(data)
            if answer:
                await websocket.send_bytes(answer)
    return viewer.rest()


async def _splice(websocket: WebSocket, relay: VncRelay, grant: TicketGrant) -> tuple[int, str]:
    """Carry bytes both ways until either side ends or the credentials do; returns the
    close code and reason for the viewer."""
    down = asyncio.create_task(_down(websocket, relay))
    up = asyncio.create_task(_up(websocket, relay))
    valid = asyncio.create_task(_watch(grant))
    life = asyncio.create_task(_life(grant))
    tasks = {down, up, valid, life}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if valid in done:
        return CLOSE_ENDED, "the key or the console session behind the ticket has ended"
    if life in done:
        return CLOSE_BAD_TICKET, "the ticket's time is up: open the view again"
    finished = next(iter(done))
    error = None if finished.cancelled() else finished.exception()
    gone = up in done or websocket.client_state is WebSocketState.DISCONNECTED
    if isinstance(error, RuntimeError) and gone:
        error = None  # sending to a viewer that went: Serve's or Starlette's RuntimeError
    if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
        log.info("relay of %s ended: %s", grant.agent_id, error)
        return CLOSE_FAILED, "the desktop's stream failed"
    return 1000, "the session ended"


async def _down(websocket: WebSocket, relay: VncRelay) -> None:
    async for data in relay:
        await websocket.send_bytes(data)


async def _up(websocket: WebSocket, relay: VncRelay) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            data = (message.get("text") or "").encode()
        await relay.send(data)


async def _watch(grant: TicketGrant) -> None:
    """Return once the ticket's key or session is no longer in force (a check per second:
    the interval is the point)."""
    while True:
        if not await still_valid(grant.principal):
            return
        await asyncio.sleep(VALID_CHECK_S)


async def _life(grant: TicketGrant) -> None:
    """Return once the relay's time is up (``RELAY_LIFE_S`` past the ticket's expiry)."""
    await asyncio.sleep(max(0.0, grant.expires_at + RELAY_LIFE_S[grant.mode] - time.time()))


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the viewer may be gone already
        await websocket.close(code=code, reason=reason[:120])
