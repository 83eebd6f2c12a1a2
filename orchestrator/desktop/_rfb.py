"""The RFB (VNC) protocol as the API's relay speaks it: pure logic, no sockets.

Three parts, driven by whoever owns the connections:

- ``upstream_handshake`` (the agent's actor): the relay as a *client* of the desktop's VNC
  server (x11vnc): version 3.8, VNC authentication with the desktop's password (the DES
  challenge-response), a shared ``ClientInit``; returns the server's ``ServerInit``.
- ``ViewerHandshake`` (the API's replica, while the actor opens the desktop's side): the
  relay as a *server* to a viewer (a browser running noVNC), up to its ``ClientInit``: it
  offers RFB 3.8 (3.7 and 3.3 too) with security type None only (the viewer never learns the
  password); the ``ServerInit`` it is then owed is the upstream's.
- ``ViewerFilter`` (the agent's actor): every client-to-server message after that is parsed
  and only what the session may send passes: the framebuffer messages always, input (keys,
  pointer, clipboard, resizes, power) only while ``may_input()`` says so. Server-to-client
  bytes are not parsed (they are spliced as they come: the bulk of the traffic never meets
  a Python loop per message).

Example:
    >>> viewer = ViewerHandshake()
    >>> viewer.greeting()
    b'RFB 003.008\\n'
    >>> viewer.feed(b"RFB 003.008\\n")
    b'\\x01\\x01'
    >>> viewer.feed(b"\\x01")
    b'\\x00\\x00\\x00\\x00'
    >>> viewer.feed(b"\\x01"), viewer.done
    (b'', True)
    >>> messages = ViewerFilter(may_input=lambda: False)
    >>> messages.feed(bytes([5, 1, 0, 10, 0, 20]) + bytes([3, 1, 0, 0, 0, 0, 4, 0, 3, 0]))
    b'\\x03\\x01\\x00\\x00\\x00\\x00\\x04\\x00\\x03\\x00'
    >>> messages.dropped
    1
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Awaitable, Callable
from enum import Enum

from ..errors import DesktopError

__all__ = [
    "INPUT_TYPES",
    "MAX_CUT_TEXT",
    "MAX_HANDSHAKE_REST",
    "RFB_38",
    "ViewerFilter",
    "ViewerHandshake",
    "upstream_handshake",
    "vnc_auth_response",
]

RFB_38 = b"RFB 003.008\n"
"""The protocol version the relay speaks on both sides."""

SEC_NONE = 1
SEC_VNC = 2

MAX_CUT_TEXT = 1 << 20
"""The longest clipboard text a viewer may send (1 MiB); a longer one ends the session."""

MAX_SERVER_NAME = 4096
"""The longest desktop name a ``ServerInit`` may carry."""

# Client-to-server message types (RFC 6143 section 7.5 and the community extensions noVNC
# sends when a server announces them).
SET_PIXEL_FORMAT = 0
SET_ENCODINGS = 2
FRAMEBUFFER_UPDATE_REQUEST = 3
KEY_EVENT = 4
POINTER_EVENT = 5
CLIENT_CUT_TEXT = 6
ENABLE_CONTINUOUS_UPDATES = 150
CLIENT_FENCE = 248
XVP = 250
SET_DESKTOP_SIZE = 251
GII = 253
QEMU = 255

INPUT_TYPES = frozenset(
    {KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT, XVP, SET_DESKTOP_SIZE, GII, QEMU}
)
"""Messages that change the desktop (input, the clipboard, its size, its power): they pass
only while the session may steer the desktop."""

_U16 = struct.Struct(">H")
_S32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_FIXED = {
    SET_PIXEL_FORMAT: 20,
    FRAMEBUFFER_UPDATE_REQUEST: 10,
    KEY_EVENT: 8,
    POINTER_EVENT: 6,
    ENABLE_CONTINUOUS_UPDATES: 10,
    XVP: 4,
}


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(challenge: bytes, password: str) -> bytes:
    """The answer to a VNC authentication challenge: the 16 bytes DES-encrypted (ECB) with
    the password's first 8 bytes (padded with zeros), each byte's bits reversed (RFB's
    historical quirk)."""
    if len(challenge) != 16:
        raise DesktopError("the VNC server's challenge is not 16 bytes")
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # cryptography < 43
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

    key = bytes(_reverse_bits(b) for b in password.encode("latin-1")[:8].ljust(8, b"\0"))
    # TripleDES with K1 = K2 = K3 is single DES (cryptography deprecates 8-byte keys).
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


ReadExactly = Callable[[int], Awaitable[bytes]]
"""Reads exactly n bytes from the VNC server (raises when the connection ends first)."""
Write = Callable[[bytes], Awaitable[None]]
"""Sends bytes to the VNC server."""


async def upstream_handshake(read: ReadExactly, write: Write, password: str) -> bytes:
    """Open an RFB 3.8 session with the VNC server as a shared client authenticated with
    ``password``; returns the server's ``ServerInit`` (header and name), after which
    framebuffer messages follow. ``DesktopError`` when the server refuses or misbehaves."""
    version = await read(12)
    if not version.startswith(b"RFB ") or version[-1:] != b"\n":
        raise DesktopError("the desktop's VNC server did not greet with an RFB version")
    match = re.fullmatch(rb"RFB (\d{3})\.(\d{3})\n", version)
    if match is None:
        raise DesktopError("the desktop's VNC server did not greet with an RFB version")
    major, minor = int(match[1]), int(match[2])
    if (major, minor) < (3, 8):
        raise DesktopError(f"the desktop's VNC server speaks RFB {major}.{minor}, not 3.8")
    await write(RFB_38)
    (count,) = await read(1)
    if count == 0:
        raise DesktopError(f"the desktop's VNC server refused: {await _reason(read)}")
    types = await read(count)
    if SEC_VNC in types:
        await write(bytes([SEC_VNC]))
        await write(vnc_auth_response(await read(16), password))
    elif SEC_NONE in types:
        await write(bytes([SEC_NONE]))
    else:
        raise DesktopError(f"the desktop's VNC server offers no usable security: {list(types)}")
    (result,) = _U32.unpack(await read(4))
    if result != 0:
        raise DesktopError(f"the desktop's VNC server refused the password: {await _reason(read)}")
    await write(b"\x01")  # ClientInit, shared: other viewers stay connected
    head = await read(24)
    (name_length,) = _U32.unpack_from(head, 20)
    if name_length > MAX_SERVER_NAME:
        raise DesktopError("the desktop's VNC server sent an oversized ServerInit")
    return head + await read(name_length)


async def _reason(read: ReadExactly) -> str:
    (length,) = _U32.unpack(await read(4))
    return (await read(min(length, 1024))).decode("utf-8", "replace")


class _Phase(Enum):
    VERSION = "version"
    SECURITY = "security"
    INIT = "init"
    DONE = "done"


MAX_HANDSHAKE_REST = 64 * 1024
"""The most bytes a viewer may send after its ``ClientInit`` before it got the ``ServerInit``
(noVNC sends none: it waits for the ``ServerInit``)."""


class ViewerHandshake:
    """The relay's server side of one viewer's handshake, up to its ``ClientInit``.

    ``feed(data)`` takes whatever bytes the viewer sent and returns the answers to send back
    (RFB 3.8, 3.7 or 3.3, security type None); once ``done``, the relay sends the desktop's
    ``ServerInit`` and then the viewer's messages go through a ``ViewerFilter`` (``rest()``
    first: what came after the ``ClientInit``). ``DesktopError`` when the viewer breaks the
    protocol. Needs nothing of the desktop, so it can run while the desktop's side opens.
    """

    def __init__(self) -> None:
        self._phase = _Phase.VERSION
        self._minor = 8
        self._buf = bytearray()

    @property
    def done(self) -> bool:
        """Whether the viewer's ``ClientInit`` came (the ``ServerInit`` is due)."""
        return self._phase is _Phase.DONE

    def greeting(self) -> bytes:
        """What the viewer gets first: the protocol version."""
        return RFB_38

    def rest(self) -> bytes:
        """The viewer's bytes after its ``ClientInit`` (its first messages, if any)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def feed(self, data: bytes) -> bytes:
        """Take the viewer's bytes; returns what to send back."""
        self._buf += data
        if len(self._buf) > MAX_HANDSHAKE_REST:
            raise DesktopError("the viewer sent too much before the ServerInit")
        to_viewer = bytearray()
        while self._phase is not _Phase.DONE:
            answer = self._step()
            if answer is None:
                break
            to_viewer += answer
        return bytes(to_viewer)

    def _step(self) -> bytes | None:
        """One handshake step, if its bytes have come (None: wait for more)."""
        buf = self._buf
        if self._phase is _Phase.VERSION:
            if len(buf) < 12:
                return None
            version = bytes(buf[:12])
            del buf[:12]
            if version not in (b"RFB 003.003\n", b"RFB 003.007\n", RFB_38, b"RFB 003.889\n"):
                raise DesktopError(f"the viewer asked for an unknown RFB version {version!r}")
            self._minor = int(version[8:11])
            if self._minor == 3:  # 3.3: the server picks; no choice, no result
                self._phase = _Phase.INIT
                return _U32.pack(SEC_NONE)
            self._phase = _Phase.SECURITY
            return bytes([1, SEC_NONE])
        if self._phase is _Phase.SECURITY:
            if not buf:
                return None
            choice = buf[0]
            del buf[:1]
            if choice != SEC_NONE:
                raise DesktopError(f"the viewer chose security type {choice}, not None")
            self._phase = _Phase.INIT
            return _U32.pack(0) if self._minor >= 8 else b""
        if not buf:  # INIT: the viewer's shared flag (the upstream session is always shared)
            return None
        del buf[:1]
        self._phase = _Phase.DONE
        return b""


class ViewerFilter:
    """The relay's filter of one viewer's messages, after the handshake.

    ``feed(data)`` takes whatever bytes the viewer sent (any split or merge of its messages)
    and returns the whole messages the desktop's VNC server may see: the framebuffer
    messages always, input only while ``may_input()`` says so. ``DesktopError`` when the
    viewer breaks the protocol (an unknown message type, a clipboard over ``MAX_CUT_TEXT``):
    end the session then.
    """

    def __init__(
        self,
        may_input: Callable[[], bool],
        full_every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``full_every_s``: at most one whole-frame request (a non-incremental
        FramebufferUpdateRequest) passes per that many seconds; others become incremental,
        so a viewer that asks in a loop and never reads gets only changes."""
        self._may_input = may_input
        self._full_every_s = full_every_s
        self._clock = clock
        self._full_at = -1e18
        self._buf = bytearray()
        self.passed = 0
        """Client messages passed on to the VNC server."""
        self.dropped = 0
        """Input messages dropped (the session may not steer the desktop)."""
        self.steered = 0
        """Input messages passed (the viewer steered the desktop)."""

    def feed(self, data: bytes) -> bytes:
        """Cut the viewer's bytes into whole messages; returns those allowed, in order."""
        self._buf += data
        buf = self._buf
        out = bytearray()
        start = 0
        allowed_input: bool | None = None  # asked once per feed, at the first input message
        while start < len(buf):
            size = _size(buf, start)
            if size is None or start + size > len(buf):
                break
            kind = buf[start]
            if kind in INPUT_TYPES:
                if allowed_input is None:
                    allowed_input = bool(self._may_input())
                if not allowed_input:
                    self.dropped += 1
                    start += size
                    continue
                self.steered += 1
            elif kind == FRAMEBUFFER_UPDATE_REQUEST and buf[start + 1] == 0 and self._full_every_s:
                now = self._clock()
                if now - self._full_at < self._full_every_s:
                    buf[start + 1] = 1  # incremental: only what changed
                else:
                    self._full_at = now
            out += buf[start : start + size]
            self.passed += 1
            start += size
        del buf[:start]
        return bytes(out)


def _size(buf: bytearray, at: int) -> int | None:
    """The length of the client message starting at ``at`` (None: its header is not all
    here yet); ``DesktopError`` for a message the relay does not know."""
    kind = buf[at]
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return fixed
    have = len(buf) - at
    if kind == SET_ENCODINGS:
        return None if have < 4 else 4 + 4 * int(_U16.unpack_from(buf, at + 2)[0])
    if kind == CLIENT_CUT_TEXT:
        if have < 8:
            return None
        length = abs(_S32.unpack_from(buf, at + 4)[0])  # negative: extended clipboard
        if length > MAX_CUT_TEXT:
            raise DesktopError(f"the viewer sent {length} bytes of clipboard, over the limit")
        return 8 + int(length)
    if kind == CLIENT_FENCE:
        return None if have < 9 else 9 + buf[at + 8]
    if kind == SET_DESKTOP_SIZE:
        return None if have < 8 else 8 + 16 * buf[at + 6]
    if kind == GII:
        if have < 4:
            return None
        big = buf[at + 1] & 0x80
        (length,) = struct.unpack_from(">H" if big else "<H", buf, at + 2)
        return 4 + int(length)
    if kind == QEMU:
        if have < 2:
            return None
        if buf[at + 1] == 0:  # extended key event
            return 12
        raise DesktopError(f"the viewer sent an unknown QEMU message (subtype {buf[at + 1]})")
    raise DesktopError(f"the viewer sent an unknown RFB message type {kind}")
