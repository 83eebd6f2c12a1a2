"""The X11 layer: screenshots with mss, every GUI action with XTest, on one X connection.

Synchronous and not thread-safe: the ``Desktop`` handle runs every call on one dedicated
thread. Each action is a burst of XTest requests ended by one round trip, so the X server
has processed the whole action when ``perform`` returns (about 0.2-0.5 ms over a unix
socket). Screenshots use MIT-SHM through a file descriptor passed over the X socket, which
works across a container boundary (no shared IPC namespace needed); mss falls back to
``GetImage`` on its own when the server refuses shared memory. The keyboard (keymap,
keycodes lent to missing characters, typing) is ``_xkeyboard.Keyboard``.

A key hold is split for the ``Desktop``: ``press`` and ``release`` are two short calls, and
the time in between is awaited off the X thread, so screenshots go on while a key is down.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Self

import mss
import mss.exception
import Xlib.display
import Xlib.error
import Xlib.protocol.display
import Xlib.protocol.event
from Xlib import X
from Xlib.ext import xtest

from .. import actions as a
from ..errors import DisplayError
from ._keys import UnknownKeyError, parse_combo, parse_keys
from ._screen import Frame, Scaling
from ._xkeyboard import Keyboard, Refused

__all__ = ["X11Session"]

log = logging.getLogger(__name__)

_BUTTONS: dict[str, int] = {"left": 1, "middle": 2, "right": 3, "back": 8, "forward": 9}
_WHEEL_UP, _WHEEL_DOWN, _WHEEL_LEFT, _WHEEL_RIGHT = 4, 5, 6, 7

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    Xlib.error.ConnectionClosedError,
    Xlib.error.DisplayError,
    Xlib.error.XError,
    mss.exception.ScreenShotError,
    OSError,
)


_OPEN_LOCK = threading.Lock()


def _open_display(name: str) -> Xlib.display.Display:
    """Open a python-xlib connection with its own table of extension events.

    python-xlib keeps that table on a class, shared by every connection of the process, so
    a connection to a server whose extensions number their events differently (another Xvfb
    build) breaks or misreads the others. The table is swapped in for the constructor only.
    """
    base = Xlib.protocol.display.Display
    with _OPEN_LOCK:
        shared = base.__dict__["event_classes"]
        base.event_classes = dict(Xlib.protocol.event.event_class)
        try:
            display = Xlib.display.Display(name)
        finally:
            own, base.event_classes = base.event_classes, shared
    display.display.event_classes = own
    return display


@dataclass(frozen=True, slots=True)
class _Space:
    """The caller's coordinate space: the screen, or a scaled screenshot of it."""

    scaling: Scaling | None
    width: int
    height: int

    def to_screen(self, x: int, y: int, where: str = "") -> tuple[int, int]:
        for name, value, limit in (("x", x, self.width), ("y", y, self.height)):
            if not 0 <= value < limit:
                raise Refused(f"{where}{name}={value} is outside the screen (0..{limit - 1})")
        return self.scaling.to_screen(x, y) if self.scaling else (x, y)

    def to_caller(self, x: int, y: int) -> tuple[int, int]:
        return self.scaling.to_model(x, y) if self.scaling else (x, y)


class X11Session:
    """One X connection to a desktop's display: grabs the screen and performs GUI actions.

    Synchronous and not thread-safe: call it from one thread only.

    Example:
        >>> from orchestrator import actions
        >>> with X11Session(":55") as x:  # doctest: +SKIP
        ...     frame = x.grab()
        ...     x.perform(actions.Click(x=10, y=10))
        ActionResult(ok=True, error=None, cursor=Point(x=10, y=10), ...)
    """

    def __init__(
        self, display: str, *, peer_check: Callable[[socket.socket], None] | None = None
    ) -> None:
        """Open ``display``; ``peer_check`` vets the connection's socket (raising to refuse
        it) before the first request past the X handshake."""
        self.display_name = display
        try:
            self._d = _open_display(display)
        except (Xlib.error.DisplayError, Xlib.error.ConnectionClosedError, OSError) as e:
            raise DisplayError(f"cannot open X display {display!r}: {e}") from e
        self._closed = False
        self._errors: list[str] = []
        self._mss: Any = None
        try:
            if peer_check is not None:
                peer_check(self._d.display.socket)
            if not self._d.has_extension("XTEST"):
                raise DisplayError(f"X display {display!r} has no XTEST extension")
            self._d.set_error_handler(self._on_error)
            screen = self._d.screen()
            self._root = screen.root
            self._size = (int(screen.width_in_pixels), int(screen.height_in_pixels))
            self._monitor = {"left": 0, "top": 0, "width": self._size[0], "height": self._size[1]}
            self._mss = mss.MSS(display=display)
            self._keyboard = Keyboard(self._d, self._snapshot)
        except BaseException as e:
            self.close()
            if isinstance(e, _CONNECTION_ERRORS):
                raise DisplayError(f"cannot use X display {display!r}: {e}") from e
            raise

    # ------------------------------------------------------------------ basics

    @property
    def size(self) -> tuple[int, int]:
        """The screen size in pixels, ``(width, height)``."""
        return self._size

    @property
    def grab_method(self) -> str:
        """How screenshots are taken: ``MIT-SHM`` or ``GetImage`` (after a fallback)."""
        status = getattr(getattr(self._mss, "_impl", None), "shm_status", None)
        return "GetImage" if status is None or status.name == "UNAVAILABLE" else "MIT-SHM"

    @property
    def spare_keycodes(self) -> int:
        """Keycodes available to type characters the keymap lacks."""
        return self._keyboard.spare_keycodes

    def close(self) -> None:
        """Close the connection (unmapping the keycodes lent to characters); idempotent."""
        if self._closed:
            return
        self._closed = True
        keyboard = getattr(self, "_keyboard", None)
        with suppress(*_CONNECTION_ERRORS):
            if keyboard is not None:
                keyboard.restore()
            self._d.sync()
        if self._mss is not None:
            with suppress(Exception):
                self._mss.close()
        with suppress(*_CONNECTION_ERRORS):
            self._d.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_error(self, err: Any, request: Any = None) -> None:
        self._errors.append(str(err))
        log.warning("X error on %s: %s", self.display_name, err)

    def _check_open(self) -> None:
        if self._closed:
            raise DisplayError(f"the X connection to {self.display_name} is closed")

    # ------------------------------------------------------------------ screen

    def grab(self) -> Frame:
        """The whole screen, as raw BGRA pixels."""
        self._check_open()
        t = time.monotonic()
        try:
            shot = self._mss.grab(self._monitor)
        except Exception as e:  # mss asserts on a dead XCB connection
            raise DisplayError(f"cannot grab the screen of {self.display_name}: {e!r}") from e
        return Frame(int(shot.width), int(shot.height), shot.raw, t)

    def _snapshot(self) -> bytes | bytearray:
        raw: bytearray = self._mss.grab(self._monitor).raw
        return raw

    def cursor(self) -> tuple[int, int]:
        """Where the pointer is, in screen pixels (one round trip)."""
        self._check_open()
        try:
            p = self._root.query_pointer()
        except _CONNECTION_ERRORS as e:
            raise DisplayError(f"lost the X connection to {self.display_name}: {e}") from e
        return int(p.root_x), int(p.root_y)

    # ------------------------------------------------------------------ actions

    def perform(self, action: a.Action, scaling: Scaling | None = None) -> a.ActionResult:
        """Carry out one GUI action; coordinates are in ``scaling``'s space when given.

        Tool failures (a point off the screen, an unknown key) come back as a failed result;
        a lost X connection raises ``DisplayError``. A ``HoldKey`` holds this thread for its
        duration (the ``Desktop`` uses ``press`` and ``release`` instead).
        """
        return self._attempt(lambda space: self._do(action, space), scaling)

    def press(self, key: str) -> tuple[a.ActionResult, tuple[int, ...]]:
        """Press ``key`` (a key or a ``+``-joined combo) and leave it down: the start of a
        hold. Returns the result and the keycodes now down, for ``release`` (none when
        nothing was pressed)."""
        down: list[int] = []
        result = self._attempt(lambda _: down.extend(self._keyboard.press(parse_combo(key))))
        return result, tuple(down)

    def release(self, keycodes: Sequence[int]) -> a.ActionResult:
        """Release keycodes that ``press`` left down, in reverse order: the end of a hold."""
        return self._attempt(lambda _: self._keyboard.release(keycodes))

    def _attempt(
        self, act: Callable[[_Space], object], scaling: Scaling | None = None
    ) -> a.ActionResult:
        """Run ``act`` as one action: a tool failure is a failed result, a lost connection a
        ``DisplayError``; the result holds the cursor after the server processed it all."""
        self._check_open()
        t0 = time.perf_counter()
        try:
            space = self._space(scaling)
            self._errors.clear()
            act(space)
            x, y = self.cursor()  # a round trip: the server has processed the whole action
        except (Refused, UnknownKeyError) as e:
            return a.ActionResult(ok=False, error=str(e), duration_ms=_ms_since(t0))
        except _CONNECTION_ERRORS as e:
            raise DisplayError(f"lost the X connection to {self.display_name}: {e}") from e
        if self._errors:
            return a.ActionResult(
                ok=False,
                error="the X server rejected part of the action: " + "; ".join(self._errors),
                duration_ms=_ms_since(t0),
            )
        cx, cy = space.to_caller(x, y)
        return a.ActionResult(ok=True, cursor=a.Point(x=cx, y=cy), duration_ms=_ms_since(t0))

    def _space(self, scaling: Scaling | None) -> _Space:
        w, h = self._size
        if scaling is None:
            return _Space(None, w, h)
        if (scaling.screen_width, scaling.screen_height) != self._size:
            raise Refused(
                f"the scaling is for a {scaling.screen_width}x{scaling.screen_height} screen "
                f"but the screen is {w}x{h}; take a new screenshot"
            )
        if scaling.is_identity:
            return _Space(None, w, h)
        return _Space(scaling, scaling.width, scaling.height)

    def _do(self, action: a.Action, space: _Space) -> None:
        match action:
            case a.Click() | a.DoubleClick() | a.TripleClick():
                count = {"click": 1, "double_click": 2, "triple_click": 3}[action.type]
                pos = space.to_screen(action.x, action.y)
                with self._keys_held(action.keys):
                    self._move(*pos)
                    for _ in range(count):
                        self._click(_BUTTONS[action.button])
            case a.MouseDown() | a.MouseUp():
                where = self._optional_point(action.x, action.y, space)
                if where is not None:
                    self._move(*where)
                event = X.ButtonPress if isinstance(action, a.MouseDown) else X.ButtonRelease
                xtest.fake_input(self._d, event, _BUTTONS[action.button])
            case a.Move():
                pos = space.to_screen(action.x, action.y)
                with self._keys_held(action.keys):
                    self._move(*pos)
            case a.Drag():
                path = [
                    space.to_screen(p.x, p.y, f"path[{i}]: ") for i, p in enumerate(action.path)
                ]
                button = _BUTTONS[action.button]
                with self._keys_held(action.keys):
                    self._move(*path[0])
                    xtest.fake_input(self._d, X.ButtonPress, button)
                    try:
                        for pos in path[1:]:
                            self._move(*pos)
                    finally:
                        xtest.fake_input(self._d, X.ButtonRelease, button)
            case a.Scroll():
                pos = space.to_screen(action.x, action.y)
                with self._keys_held(action.keys):
                    self._move(*pos)
                    vertical = _WHEEL_DOWN if action.scroll_y > 0 else _WHEEL_UP
                    for _ in range(abs(action.scroll_y)):
                        self._click(vertical)
                    horizontal = _WHEEL_RIGHT if action.scroll_x > 0 else _WHEEL_LEFT
                    for _ in range(abs(action.scroll_x)):
                        self._click(horizontal)
            case a.TypeText():
                self._keyboard.type_text(action.text)
            case a.KeyPress():
                with self._keys_held(action.keys):
                    pass
            case a.HoldKey():  # the Desktop holds with press and release, off this thread
                with self._keyboard.held(parse_combo(action.key)):
                    self._d.sync()
                    time.sleep(action.duration_s)  # holding the key is the action
            case a.Wait():
                time.sleep(action.duration_s)  # waiting is the action
            case a.TakeScreenshot() | a.CursorPosition():
                pass
            case a.Shell():
                raise Refused("shell commands are run by the desktop over SSH, not by the X layer")
            case _:  # pragma: no cover - the Action union is exhaustive
                raise Refused(f"unsupported action {getattr(action, 'type', action)!r}")

    @contextmanager
    def _keys_held(self, keys: Sequence[str]) -> Iterator[None]:
        if not keys:
            yield
            return
        with self._keyboard.held(parse_keys(keys)):
            yield

    @staticmethod
    def _optional_point(x: int | None, y: int | None, space: _Space) -> tuple[int, int] | None:
        if x is None and y is None:
            return None
        if x is None or y is None:
            raise Refused("give both x and y, or neither to act at the current position")
        return space.to_screen(x, y)

    def _move(self, x: int, y: int) -> None:
        xtest.fake_input(self._d, X.MotionNotify, x=x, y=y)

    def _click(self, button: int) -> None:
        xtest.fake_input(self._d, X.ButtonPress, button)
        xtest.fake_input(self._d, X.ButtonRelease, button)


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000
