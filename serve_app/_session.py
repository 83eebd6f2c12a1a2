"""Console sign-in (cookie sessions) and tickets for the desktop relay and notebook embeds.

``POST /v1/session`` exchanges an API key for the console cookie (``serve_app._cookie``);
``GET`` says who the caller is; ``DELETE`` signs out (the session ends in the records, so
every replica refuses the cookie within ``SESSION_REFRESH_S``). ``POST
/v1/agents/{id}/tickets`` mints a short-lived ticket for that agent's desktop
(``serve_app._tickets``).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import hashlib
import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from orchestrator.config import api_settings
from orchestrator.records import ConsoleSession

from . import _auth
from ._auth import Unauthorized, key_in_body, key_tenant
from ._cookie import (
    clear_cookie,
    max_age,
    new_token,
    origin_allowed,
    session_id,
    set_cookie,
    token_of,
)
from ._errors import error_body
from ._front import Caller, Rt
from ._tickets import TicketMode, mint

__all__ = ["SessionInfo", "SignIn", "Ticket", "TicketRequest", "router"]

_OTHER_ORIGIN = "sign-in and sign-out must come from the console's own origin (Origin header)"

router = APIRouter(
    prefix="/v1",
    tags=["console"],
    responses={
        403: {
            "description": "a browser's request from another origin",
            "content": {"application/json": {"example": error_body("forbidden", _OTHER_ORIGIN)}},
        }
    },
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class SignIn(BaseModel):
    """An API key to sign in to the console with (without one: 401, like every route)."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    key: Annotated[SecretStr | None, Field(max_length=4096)] = None
    """The API key (exchanged for the cookie; never stored, never echoed)."""


class SignedIn(_Model):
    """The console session just opened (its cookie is in ``Set-Cookie``)."""

    tenant: str
    """The tenant of the key."""
    expires_at: float
    """When the session ends by itself (unix seconds)."""


class SessionInfo(_Model):
    """Who the caller is."""

    tenant: str
    """The caller's tenant."""
    expires_at: float | None
    """When the console session ends by itself (None for a bearer key)."""
    holder: str
    """The caller's name as a lease holder."""


class TicketRequest(_Model):
    """What the ticket is for."""

    mode: TicketMode = "view"
    """``view`` (watch), ``control`` (watch; type and click while holding the lease) or
    ``embed`` (watch from an embed page, e.g. a notebook; lasts 15 minutes)."""


class Ticket(_Model):
    """A short-lived pass to one agent's desktop (send it as the ``ticket`` query
    parameter; it is a secret until it expires)."""

    ticket: str
    """The ticket itself."""
    mode: TicketMode
    """What it allows."""
    expires_at: float
    """When it stops opening relays (unix seconds)."""
    relay_path: str
    """The WebSocket path of the desktop relay, with the ticket."""
    embed_path: str | None = None
    """The embed page's path, with the ticket (``embed`` tickets only)."""


@router.post("/session", dependencies=[Depends(key_in_body)])
async def sign_in(request: Request, response: Response, body: SignIn) -> SignedIn:
    """Sign in to the console with an API key: sets the ``orch_session`` cookie
    (``__Host-orch_session`` over https; HttpOnly, SameSite=Strict, at most 12 h) and ends
    the session of the cookie the browser sent, if any. A browser's request must come from
    the API's origin."""
    if not origin_allowed(request, required=False):
        raise HTTPException(403, _OTHER_ORIGIN)
    key = body.key.get_secret_value() if body.key is not None else ""
    if not key:
        raise Unauthorized('missing API key: send {"key": "<API key>"}')
    tenant = await key_tenant(key, fresh=True)  # a key revoked a moment ago opens nothing
    if tenant is None:
        raise Unauthorized("invalid API key")
    previous = token_of(request)
    if previous is not None:  # signing in again ends the session this browser had
        await _end(session_id(previous))
    now = time.time()
    token = new_token()
    session = ConsoleSession(
        id=session_id(token),
        tenant=tenant,
        key_digest=hashlib.sha256(key.encode("utf-8")).hexdigest(),
        created_at=now,
        expires_at=now + api_settings().session_ttl_s,
    )
    stored = await _auth.sessions.records().add_session(session)
    _auth.sessions.remember(stored)
    set_cookie(response, request, token, max_age(stored.expires_at, now))
    return SignedIn(tenant=stored.tenant, expires_at=stored.expires_at)


@router.get("/session")
async def session_info(caller: Caller) -> SessionInfo:
    """Who the caller is (401 without a valid cookie or key)."""
    expires_at = None
    if caller.session_id is not None:
        session = await _auth.sessions.get(caller.session_id)
        expires_at = session.expires_at if session is not None else None
    return SessionInfo(tenant=caller.tenant, expires_at=expires_at, holder=caller.holder)


@router.delete("/session", status_code=204)
async def sign_out(request: Request) -> Response:
    """Sign out: the session ends in the records (every replica refuses its cookie within a
    second or so) and the browser is told to drop the cookie and its cache of the console
    (``Clear-Site-Data: "cache"``). Again with the same cookie:
    204 too; without a cookie: 401."""
    token = token_of(request)
    if token is None:
        raise Unauthorized("no console session: sign in first")
    if not origin_allowed(request, required=True):
        raise HTTPException(403, _OTHER_ORIGIN)
    await _end(session_id(token))
    # What the browser kept of the console (blobs are cached for a day) goes too.
    response = Response(status_code=204, headers={"Clear-Site-Data": '"cache"'})
    clear_cookie(response, request)
    return response


async def _end(sid: str) -> None:
    """End console session ``sid`` in the records (unknown or ended already: no change)."""
    await _auth.sessions.records().end_session(sid)
    _auth.sessions.forget(sid)


@router.post("/agents/{agent_id}/tickets")
async def mint_ticket(
    rt: Rt, caller: Caller, agent_id: str, body: TicketRequest | None = None
) -> Ticket:
    """A ticket for the agent's live desktop (404 for another tenant's agent)."""
    mode: TicketMode = body.mode if body is not None else "view"
    await rt.agent(agent_id, caller.tenant)  # NotFoundError: 404
    ticket, expires_at = await mint(caller, agent_id, mode)
    quoted = quote(agent_id, safe="")
    return Ticket(
        ticket=ticket,
        mode=mode,
        expires_at=expires_at,
        relay_path=f"/v1/agents/{quoted}/vnc?ticket={ticket}",
        embed_path=f"/console/embed/{quoted}?ticket={ticket}" if mode == "embed" else None,
    )
