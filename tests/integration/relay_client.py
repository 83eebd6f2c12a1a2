"""A minimal RFB viewer over the API's relay WebSocket, for the relay tests (and a script of
``bench/``): the handshake as noVNC does it, raw encoding, whole framebuffer updates."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from websockets.sync.client import ClientConnection, connect

RFB_38 = b"RFB 003.008\n"


@dataclass
class ServerInit:
    width: int
    height: int
    bytes_per_pixel: int
    name: bytes


class Viewer:
    """One RFB session through the relay (blocking)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._buf = bytearray()

    @classmethod
    def open(cls, url: str, origin: str | None = None) -> Viewer:
        headers = {"Origin": origin} if origin else None
        ws = connect(
            url,
            subprotocols=["binary"],  # type: ignore[list-item]
            additional_headers=headers,
            max_size=None,
            compression=None,
            open_timeout=30,
            proxy=None,
        ).__enter__()  # websockets 17 wants a context manager; ``close`` ends it
        return cls(ws)

    def read(self, n: int, timeout_s: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while len(self._buf) < n:
            message = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            self._buf += message if isinstance(message, bytes) else message.encode()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def handshake(self, encodings: tuple[int, ...] = (0,)) -> ServerInit:
        """The RFB handshake through the relay, then ``SetEncodings`` (default: raw only;
        ``(1, 16, 0)``: CopyRect and ZRLE as a browser would, compressed)."""
        assert self.read(12) == RFB_38
        self.ws.send(RFB_38)
        count = self.read(1)[0]
        types = self.read(count)
        assert types == b"\x01", types  # security None only: the password stays in the actor
        self.ws.send(b"\x01")
        assert self.read(4) == bytes(4)
        self.ws.send(b"\x01")
        head = self.read(24)
        width, height, bpp = struct.unpack_from(">HHB", head)
        (name_length,) = struct.unpack_from(">I", head, 20)
        name = self.read(name_length)
        count = len(encodings)
        self.ws.send(bytes([2, 0]) + struct.pack(f">H{count}i", count, *encodings))
        return ServerInit(width, height, bpp // 8, name)

    def request(self, init: ServerInit, incremental: bool = False) -> None:
        self.ws.send(
            bytes([3, int(incremental)]) + struct.pack(">HHHH", 0, 0, init.width, init.height)
        )

    def update(self, init: ServerInit, timeout_s: float = 30.0) -> int:
        """Read one FramebufferUpdate (skipping other server messages); returns the pixels
        its raw rectangles cover."""
        deadline = time.monotonic() + timeout_s
        while True:
            kind = self.read(1, deadline - time.monotonic())[0]
            if kind == 0:
                break
            if kind == 2:  # Bell
                continue
            if kind == 3:  # ServerCutText
                (length,) = struct.unpack(">3xI", self.read(7))
                self.read(length)
                continue
            raise AssertionError(f"unexpected server message {kind}")
        (rects,) = struct.unpack(">xH", self.read(3))
        pixels = 0
        for _ in range(rects):
            _x, _y, w, h, encoding = struct.unpack(">HHHHi", self.read(12))
            if encoding == 0:
                self.read(w * h * init.bytes_per_pixel, deadline - time.monotonic())
                pixels += w * h
            elif encoding == 1:  # CopyRect: the source's position
                self.read(4)
                pixels += w * h
            elif encoding == 16:  # ZRLE: a zlib stream's next chunk (not decoded here)
                (length,) = struct.unpack(">I", self.read(4))
                self.read(length, deadline - time.monotonic())
                pixels += w * h
            elif encoding == -239:  # cursor pseudo-encoding: pixels and a bitmask
                self.read(w * h * init.bytes_per_pixel + ((w + 7) // 8) * h)
            elif encoding < 0:
                continue  # other pseudo-encodings carry no data we asked for
            else:
                raise AssertionError(f"unexpected encoding {encoding}")
        return pixels

    def full_frame(self, init: ServerInit, timeout_s: float = 30.0) -> None:
        """Ask for the whole screen and read updates until all of it has come."""
        self.request(init)
        covered = 0
        deadline = time.monotonic() + timeout_s
        while covered < init.width * init.height:
            covered += self.update(init, deadline - time.monotonic())

    def click(self, x: int, y: int) -> None:
        self.ws.send(bytes([5, 1]) + struct.pack(">HH", x, y))
        self.ws.send(bytes([5, 0]) + struct.pack(">HH", x, y))

    def close(self) -> None:
        self.ws.close()
