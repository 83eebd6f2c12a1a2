"""Desktop tickets: short-lived, tamper-proof passes to one agent's live desktop.

A ticket is what a page (or a notebook's iframe) presents to the desktop relay
(``/v1/agents/{id}/vnc?ticket=...``) and the embed page, where no cookie or bearer header can
be sent. It is bound to the tenant, the agent, the mode (``view``, ``control``, ``embed``:
embed is view-only), the key digest and console session of whoever minted it, and their
lease holder name; ``view``/``control`` tickets must be used within ``TICKET_TTL_S`` (60 s)
to open a relay, ``embed`` ones within 15 minutes (a notebook cell shown later).

Any replica accepts a ticket another minted: it is sealed with a key every replica derives
from one cluster secret: ``ORCHESTRATOR_API_TICKET_SECRET`` when set, else one kept in the
records (``SessionRecords.cluster_secret``), read once per process (``_auth.cluster_secret``).
Sealing is encrypt-then-MAC with HMAC-SHA256 only: the body is XORed with an
HMAC-SHA256 keystream (counter mode over a random 16-byte nonce) and the version, nonce and
ciphertext are authenticated with HMAC-SHA256 under a second derived key. So a ticket can
neither be forged nor altered, and it does not show the key digest it carries (a short API
key cannot be guessed offline from a ticket that leaked). Tickets are never logged.

``redeem`` checks all of it, and that the credentials behind the ticket are still in force
(``still_valid``): a revoked key or an ended session makes its tickets worthless at once.

Example:
    >>> seal = Seal(b"k" * 32)
    >>> seal.open(seal.close(b"hello"))
    b'hello'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import _auth
from ._auth import Ended, Principal, Unauthorized, still_valid

__all__ = [
    "MAX_TICKET_CHARS",
    "TICKET_TTL_S",
    "Seal",
    "TicketGrant",
    "TicketMode",
    "mint",
    "redeem",
]

TicketMode = Literal["view", "control", "embed"]
"""What a ticket allows: watch, watch and (with the lease) type and click, or watch from an
embed page (a notebook)."""

TICKET_TTL_S: dict[TicketMode, float] = {"view": 60.0, "control": 60.0, "embed": 900.0}
"""How long after minting a ticket opens a relay (an open relay then lives while its
credentials do)."""

MAX_TICKET_CHARS = 2048
"""Longer strings are not tickets (refused before any work)."""

_VERSION = b"\x01"
_NONCE = 16
_TAG = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Seal:
    """Encrypt-then-MAC with HMAC-SHA256 under keys derived from one secret (see the
    module's docstring). ``open`` raises ``ValueError`` for anything it did not seal."""

    def __init__(self, secret: bytes) -> None:
        self._enc = hmac.new(secret, b"orchestrator ticket encryption v1", hashlib.sha256).digest()
        self._mac = hmac.new(secret, b"orchestrator ticket integrity v1", hashlib.sha256).digest()

    def _stream(self, nonce: bytes, size: int) -> bytes:
        blocks = (size + 31) // 32
        return b"".join(
            hmac.new(self._enc, nonce + i.to_bytes(4, "big"), hashlib.sha256).digest()
            for i in range(blocks)
        )[:size]

    def close(self, plain: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        cipher = bytes(a ^ b for a, b in zip(plain, self._stream(nonce, len(plain)), strict=True))
        head = _VERSION + nonce + cipher
        return head + hmac.new(self._mac, head, hashlib.sha256).digest()

    def open(self, sealed: bytes) -> bytes:
        if len(sealed) < 1 + _NONCE + _TAG or sealed[:1] != _VERSION:
            raise ValueError("not a ticket")
        head, tag = sealed[:-_TAG], sealed[-_TAG:]
        if not hmac.compare_digest(tag, hmac.new(self._mac, head, hashlib.sha256).digest()):
            raise ValueError("not a ticket")
        nonce, cipher = head[1 : 1 + _NONCE], head[1 + _NONCE :]
        return bytes(a ^ b for a, b in zip(cipher, self._stream(nonce, len(cipher)), strict=True))


class _Body(BaseModel):
    """What a ticket says (sealed; short names keep URLs short)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t: str
    a: str
    m: TicketMode
    k: str = Field(pattern=r"^[0-9a-f]{64}$")
    s: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    h: str
    e: float


class TicketGrant(BaseModel):
    """What a redeemed ticket allows: the desktop of ``agent_id`` in ``mode``, on behalf of
    ``principal`` (``via="ticket"``; ask ``still_valid(principal)`` while it is used)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    tenant: str
    """The tenant the agent belongs to."""
    agent_id: str
    """The agent whose desktop it opens."""
    mode: TicketMode
    """``view``, ``control`` (input only while ``holder`` holds the lease) or ``embed``
    (view-only)."""
    holder: str
    """The lease holder name of whoever minted it."""
    principal: Principal
    """Whoever minted it, as a ticket principal."""
    expires_at: float
    """When it stops opening relays (unix seconds)."""


_seal: tuple[bytes, Seal] | None = None
"""The seal of this process, with the secret it was made from."""


async def _current_seal() -> Seal:
    """The seal made from the cluster's secret (``_auth.cluster_secret``:
    ``ORCHESTRATOR_API_TICKET_SECRET`` when set, else the records')."""
    global _seal
    secret = await _auth.cluster_secret()
    if _seal is None or not hmac.compare_digest(_seal[0], secret):
        _seal = (secret, Seal(secret))
    return _seal[1]


async def mint(
    principal: Principal,
    agent_id: str,
    mode: TicketMode,
    clock: Callable[[], float] = time.time,
) -> tuple[str, float]:
    """A ticket for ``agent_id``'s desktop in ``mode`` for ``principal`` (whose tenant's
    agent it must be: the caller checks), and when it expires."""
    expires_at = clock() + TICKET_TTL_S[mode]
    body = _Body(
        t=principal.tenant,
        a=agent_id,
        m=mode,
        k=principal.key_digest,
        s=principal.session_id,
        h=principal.holder,
        e=expires_at,
    )
    plain = json.dumps(body.model_dump(), separators=(",", ":")).encode("utf-8")
    return _b64((await _current_seal()).close(plain)), expires_at


async def redeem(ticket: str, agent_id: str, clock: Callable[[], float] = time.time) -> TicketGrant:
    """What ``ticket`` grants on ``agent_id``'s desktop. ``Unauthorized`` when it is not a
    ticket, was altered, has expired or is for another agent; ``Ended`` (a subclass) when the
    key behind it was revoked or the console session behind it ended."""
    if not ticket or len(ticket) > MAX_TICKET_CHARS:
        raise Unauthorized("invalid ticket")
    try:
        body = _Body.model_validate_json((await _current_seal()).open(_unb64(ticket)))
    except (ValueError, ValidationError):  # binascii.Error is a ValueError
        raise Unauthorized("invalid ticket") from None
    if clock() >= body.e:
        raise Unauthorized("the ticket has expired: ask for a new one")
    if not hmac.compare_digest(body.a.encode(), agent_id.encode()):
        raise Unauthorized("the ticket is for another agent")
    principal = Principal(
        tenant=body.t, key_digest=body.k, via="ticket", session_id=body.s, holder=body.h
    )
    if not await still_valid(principal):
        raise Ended("the key or the console session behind the ticket is no longer in force")
    return TicketGrant(
        tenant=body.t,
        agent_id=body.a,
        mode=body.m,
        holder=body.h,
        principal=principal,
        expires_at=body.e,
    )
