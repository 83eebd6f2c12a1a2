"""The relay's RFB logic (``orchestrator.desktop._rfb``): the upstream handshake against a
scripted VNC server, the viewer's handshake (``ViewerHandshake``), and the filter of every
client message type (``ViewerFilter``), whole, split byte by byte and merged."""

from __future__ import annotations

import asyncio
import struct

import pytest

from orchestrator.desktop._rfb import (
    INPUT_TYPES,
    MAX_CUT_TEXT,
    MAX_HANDSHAKE_REST,
    RFB_38,
    ViewerFilter,
    ViewerHandshake,
    upstream_handshake,
    vnc_auth_response,
)
from orchestrator.errors import DesktopError

SERVER_INIT = struct.pack(">HH16sI", 1024, 768, b"\x20\x18\x00\x01" + bytes(12), 9) + b"desktop:0"


def _ready(may_input: bool = False) -> ViewerFilter:
    handshake = ViewerHandshake()
    assert handshake.feed(RFB_38 + b"\x01\x01") == b"\x01\x01" + bytes(4)
    assert handshake.done and handshake.rest() == b""
    return ViewerFilter(may_input=lambda: may_input)


# Every client message type the relay knows, with whether it is input.
MESSAGES: list[tuple[str, bytes, bool]] = [
    ("SetPixelFormat", bytes([0, 0, 0, 0]) + bytes(16), False),
    ("SetEncodings", bytes([2, 0]) + struct.pack(">H", 3) + struct.pack(">iii", 7, 0, -223), False),
    ("FramebufferUpdateRequest", bytes([3, 1]) + struct.pack(">HHHH", 0, 0, 1024, 768), False),
    ("KeyEvent", bytes([4, 1, 0, 0]) + struct.pack(">I", 0x61), True),
    ("PointerEvent", bytes([5, 1]) + struct.pack(">HH", 10, 20), True),
    ("ClientCutText", bytes([6, 0, 0, 0]) + struct.pack(">i", 5) + b"hello", True),
    ("ExtendedClipboard", bytes([6, 0, 0, 0]) + struct.pack(">i", -4) + b"\x01\x00\x00\x01", True),
    ("EnableContinuousUpdates", bytes([150, 1]) + struct.pack(">HHHH", 0, 0, 10, 10), False),
    ("ClientFence", bytes([248, 0, 0, 0]) + struct.pack(">I", 1) + bytes([3]) + b"abc", False),
    ("xvp", bytes([250, 0, 1, 2]), True),
    (
        "SetDesktopSize",
        bytes([251, 0]) + struct.pack(">HH", 800, 600) + bytes([1, 0]) + bytes(16),
        True,
    ),
    ("gii (little-endian)", bytes([253, 0x01]) + struct.pack("<H", 4) + b"abcd", True),
    ("gii (big-endian)", bytes([253, 0x81]) + struct.pack(">H", 2) + b"ab", True),
    ("QEMU extended key", bytes([255, 0]) + struct.pack(">HII", 1, 0x61, 30), True),
]


def test_every_input_type_is_listed() -> None:
    assert {m[1][0] for m in MESSAGES if m[2]} == INPUT_TYPES


@pytest.mark.parametrize(("name", "message", "is_input"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_each_message_passes_or_is_dropped(name: str, message: bytes, is_input: bool) -> None:
    viewer = _ready(may_input=False)
    assert viewer.feed(message) == (b"" if is_input else message)
    assert (viewer.dropped, viewer.passed) == ((1, 0) if is_input else (0, 1))
    steering = _ready(may_input=True)
    assert steering.feed(message) == message
    assert (steering.dropped, steering.passed) == (0, 1)


@pytest.mark.parametrize("may_input", [False, True])
def test_split_byte_by_byte_and_merged(may_input: bool) -> None:
    stream = b"".join(m[1] for m in MESSAGES)
    allowed = b"".join(m[1] for m in MESSAGES if may_input or not m[2])
    merged = _ready(may_input)
    assert merged.feed(stream) == allowed
    split = _ready(may_input)
    passed = b"".join(split.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert passed == allowed
    assert (split.passed, split.dropped) == (merged.passed, merged.dropped)
    # A stream cut mid-message keeps the rest for the next feed.
    cut = _ready(may_input)
    first = cut.feed(stream[: len(stream) // 2])
    assert first + cut.feed(stream[len(stream) // 2 :]) == allowed


def test_may_input_is_asked_as_the_messages_come() -> None:
    allowed = [False]
    viewer = ViewerFilter(may_input=lambda: allowed[0])
    click = bytes([5, 1, 0, 1, 0, 1])
    assert viewer.feed(click) == b""
    allowed[0] = True  # the holder took the lease
    assert viewer.feed(click) == click
    allowed[0] = False  # and handed it back
    assert viewer.feed(click) == b""
    assert (viewer.passed, viewer.dropped) == (1, 2)


def test_handshake_split_and_messages_in_the_same_feed() -> None:
    viewer = ViewerHandshake()
    assert viewer.greeting() == RFB_38
    assert viewer.feed(RFB_38[:5]) == b""
    assert viewer.feed(RFB_38[5:]) == b"\x01\x01"
    assert not viewer.done
    request = MESSAGES[2][1]
    assert viewer.feed(b"\x01\x00" + request) == bytes(4)
    assert viewer.done
    assert viewer.rest() == request  # for the filter, after the ServerInit
    assert viewer.rest() == b""


def test_older_viewers() -> None:
    v37 = ViewerHandshake()
    assert v37.feed(b"RFB 003.007\n") == b"\x01\x01"
    assert v37.feed(b"\x01") == b""  # 3.7: no SecurityResult for None
    assert not v37.done
    assert v37.feed(b"\x01") == b""
    assert v37.done
    v33 = ViewerHandshake()
    assert v33.feed(b"RFB 003.003\n") == struct.pack(">I", 1)
    assert v33.feed(b"\x00") == b""
    assert v33.done


def test_a_viewer_that_floods_the_handshake_is_refused() -> None:
    viewer = ViewerHandshake()
    viewer.feed(RFB_38 + b"\x01\x01")
    with pytest.raises(DesktopError, match="too much"):
        viewer.feed(bytes(MAX_HANDSHAKE_REST + 1))


@pytest.mark.parametrize(
    ("handshake", "why"),
    [
        (b"HTTP/1.1 200", "version"),
        (RFB_38 + b"\x02", "security type 2"),
    ],
)
def test_bad_viewer_handshakes(handshake: bytes, why: str) -> None:
    viewer = ViewerHandshake()
    with pytest.raises(DesktopError, match=why):
        viewer.feed(handshake)


@pytest.mark.parametrize(
    "message",
    [
        bytes([7, 0, 0, 0]),  # no such type
        bytes([255, 1, 0, 0]),  # QEMU audio: not relayed
        bytes([6, 0, 0, 0]) + struct.pack(">i", MAX_CUT_TEXT + 1),
        bytes([6, 0, 0, 0]) + struct.pack(">i", -(MAX_CUT_TEXT + 1)),
    ],
)
def test_unknown_or_oversized_messages_end_the_session(message: bytes) -> None:
    viewer = _ready(may_input=True)
    with pytest.raises(DesktopError):
        viewer.feed(message)


def test_vnc_auth_matches_a_known_answer() -> None:
    """RFB's DES with bit-reversed key bytes, against a vector computed by OpenSSL."""
    challenge = bytes(range(16))
    answer = vnc_auth_response(challenge, "password")
    assert len(answer) == 16
    assert answer != vnc_auth_response(challenge, "passwore")
    assert vnc_auth_response(challenge, "password-longer") == answer  # 8 bytes count
    assert answer.hex() == KNOWN_ANSWER


KNOWN_ANSWER = "b866924125c8eebb9debc1db61c538e2"
"""From OpenSSL: ``openssl enc -des-ecb -nopad -K 0e86ceceeef64e26`` (the bit-reversed
"password") of the bytes 0..15."""


class _ScriptedServer:
    """A VNC server's side of the handshake, from a script of what it sends."""

    def __init__(self, password: str, result: int = 0, types: bytes = b"\x02") -> None:
        self.password = password
        self.result = result
        self.types = types
        self.received = bytearray()
        self._out = bytearray(RFB_38)
        self.challenge = bytes(range(100, 116))

    async def read(self, n: int) -> bytes:
        if len(self._out) < n:
            raise ConnectionError("the scripted server has nothing more to say")
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    async def write(self, data: bytes) -> None:
        self.received += data
        got = bytes(self.received)
        if got == RFB_38:
            self._out += bytes([len(self.types)]) + self.types
        elif got == RFB_38 + b"\x02":
            self._out += self.challenge
        elif len(got) == 12 + 1 + 16:
            expected = vnc_auth_response(self.challenge, self.password)
            ok = self.result == 0 and got[13:] == expected
            self._out += struct.pack(">I", 0 if ok else 1)
            if not ok:
                self._out += struct.pack(">I", 14) + b"wrong password"
        elif got.endswith(b"\x01") and len(got) == 12 + 1 + 16 + 1:
            self._out += SERVER_INIT


def test_upstream_handshake_against_a_scripted_server() -> None:
    server = _ScriptedServer("s3cret!!")
    init = asyncio.run(upstream_handshake(server.read, server.write, "s3cret!!"))
    assert init == SERVER_INIT
    assert server.received[-1:] == b"\x01"  # shared


def test_upstream_handshake_wrong_password() -> None:
    server = _ScriptedServer("s3cret!!")
    with pytest.raises(DesktopError, match="wrong password"):
        asyncio.run(upstream_handshake(server.read, server.write, "guess123"))


def test_upstream_handshake_without_vnc_auth() -> None:
    server = _ScriptedServer("x", types=b"\x10\x13")
    with pytest.raises(DesktopError, match="no usable security"):
        asyncio.run(upstream_handshake(server.read, server.write, "x"))


def test_non_numeric_greeting_is_a_desktop_error() -> None:
    async def read(n: int) -> bytes:
        return b"RFB xxx.yyy\n"[:n]

    async def write(_data: bytes) -> None:
        return None

    with pytest.raises(DesktopError, match="did not greet"):
        asyncio.run(upstream_handshake(read, write, "x"))


def test_whole_frame_requests_are_limited() -> None:
    """5 non-incremental requests within 1 s: 1 passes as is, 4 become incremental; one
    2 s later is whole again."""
    now = [100.0]
    viewer = ViewerFilter(lambda: False, full_every_s=2.0, clock=lambda: now[0])
    full = bytes([3, 0]) + struct.pack(">HHHH", 0, 0, 1024, 768)
    passed = []
    for _ in range(5):
        passed.append(viewer.feed(full))
        now[0] += 0.2
    assert [p[1] for p in passed] == [0, 1, 1, 1, 1]
    assert all(p[2:] == full[2:] for p in passed)
    now[0] += 2.0
    assert viewer.feed(full) == full
    unlimited = _ready()
    assert unlimited.feed(full + full) == full + full  # control: not limited
