"""The X11 layer: screenshots with mss, every GUI action with XTest, on one X connection.

Synchronous and not thread-safe: the ``Desktop`` handle runs every call on one dedicated
thread. Each action is a burst of XTest requests ended by one round trip, so the X server
has processed the whole action when ``perform`` returns (about 0.2-0.5 ms over a unix
socket). Screenshots use MIT-SHM through a file descriptor passed over the X socket, which
works across a container boundary (no shared IPC namespace needed); mss falls back to
``GetImage`` on its own when the server refuses shared memory.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
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
from ._keys import KeycodePool, UnknownKeyError, parse_combo, parse_keys, text_keysyms
from ._screen import Frame, Scaling

__all__ = ["X11Session"]

log = logging.getLogger(__name__)

_BUTTONS: dict[str, int] = {"left": 1, "middle": 2, "right": 3, "back": 8, "forward": 9}
_WHEEL_UP, _WHEEL_DOWN, _WHEEL_LEFT, _WHEEL_RIGHT = 4, 5, 6, 7

REMAP_GUARD_S = 0.05
"""A spare keycode is remapped to another character only this long after the last press of
its previous character, at the least."""
REMAP_QUIET_S = 0.08
"""... and once the screen has changed since those presses and then stayed still this long:
the application has read them (it drew them) before it can see the new mapping."""
REMAP_MAX_WAIT_S = 1.5
"""The longest wait for that (an application that draws nothing, or never stops drawing).

Remapping only happens when one text needs more distinct characters missing from the keymap
than there are spare keycodes (about 19 on a stock Xvfb keymap), so most typing never waits.
It guards against the race where an application reads a key press after its keycode was
remapped again (libX11 fetches a changed keymap lazily, when it next looks a key up)."""

Snapshot = Callable[[], bytes | bytearray]

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


class _Refused(Exception):
    """The action cannot be done as asked; the message is for the model."""


@dataclass(frozen=True, slots=True)
class _Space:
    """The caller's coordinate space: the screen, or a scaled screenshot of it."""

    scaling: Scaling | None
    width: int
    height: int

    def to_screen(self, x: int, y: int, where: str = "") -> tuple[int, int]:
        for name, value, limit in (("x", x, self.width), ("y", y, self.height)):
            if not 0 <= value < limit:
                raise _Refused(f"{where}{name}={value} is outside the screen (0..{limit - 1})")
        return self.scaling.to_screen(x, y) if self.scaling else (x, y)

    def to_caller(self, x: int, y: int) -> tuple[int, int]:
        return self.scaling.to_model(x, y) if self.scaling else (x, y)


class _Keyboard:
    """The keymap as XTest needs it: keysym -> keycode, plus spare keycodes for the rest."""

    def __init__(self, display: Xlib.display.Display, snapshot: Snapshot) -> None:
        self._d = display
        self._snapshot = snapshot
        info = display.display.info
        self._first, self._last = int(info.min_keycode), int(info.max_keycode)
        self._pool = KeycodePool(())
        self._lookup: dict[int, tuple[int, int]] = {}  # keysym -> (keycode, level 0|1)
        self._modifiers: set[int] = set()
        self._shift: int | None = None
        self._lock: int | None = None
        self._expected: deque[tuple[int, int]] = deque(maxlen=256)  # our own MappingNotify
        self._last_lent_press = 0.0
        self._load()

    # ------------------------------------------------------------------ keymap view

    def _load(self) -> None:
        rows = [
            tuple(r)
            for r in self._d.get_keyboard_mapping(self._first, self._last - self._first + 1)
        ]
        mods = self._d.get_modifier_mapping()
        self._modifiers = {int(kc) for row in mods for kc in row if kc}
        self._shift = next((int(kc) for kc in mods[X.ShiftMapIndex] if kc), None)
        self._lock = next((int(kc) for kc in mods[X.LockMapIndex] if kc), None)

        def row(kc: int) -> tuple[int, ...]:
            return rows[kc - self._first]

        empty = {self._first + i for i, r in enumerate(rows) if not any(r)}
        lent = self._pool.lent()
        stale = [kc for ks, kc in lent.items() if row(kc)[:2] != (ks, ks)]
        taken = [kc for kc in self._pool.keycodes - set(lent.values()) if kc not in empty]
        self._pool.forget([*stale, *taken])
        self._pool.add_free(empty)

        pool_codes = self._pool.keycodes
        levels = (0, 1) if self._shift is not None else (0,)
        lookup: dict[int, tuple[int, int]] = {}
        for kc in range(self._first, self._last + 1):
            if kc in pool_codes:
                continue
            r = row(kc)
            for level in levels:
                if level < len(r) and r[level] and r[level] not in lookup:
                    lookup[r[level]] = (kc, level)
        self._lookup = lookup

    def refresh(self) -> None:
        """Catch up with keymap changes made by other clients (MappingNotify)."""
        stale = False
        while self._d.pending_events():
            ev = self._d.next_event()
            if ev.type != X.MappingNotify:
                continue
            key = (int(ev.first_keycode), int(ev.count))
            if ev.request == X.MappingKeyboard and key in self._expected:
                self._expected.remove(key)
            else:
                stale = True
        if stale:
            self._load()

    @property
    def spare_keycodes(self) -> int:
        """How many keycodes can be lent to characters missing from the keymap."""
        return self._pool.capacity

    # ------------------------------------------------------------------ keysyms -> keycodes

    def _map_missing(
        self, keysyms: Sequence[int], start: int, reference: bytes | bytearray | None = None
    ) -> int:
        """Lend keycodes to the missing keysyms of the longest run from ``start`` the pool
        holds; return the end of that run. ``reference`` is the screen before the keys that
        may be evicted were typed."""
        missing: list[int] = []
        lent_used: set[int] = set()
        end = start
        capacity = self._pool.capacity
        while end < len(keysyms):
            ks = keysyms[end]
            if ks not in self._lookup:
                if ks in self._pool:
                    lent_used.add(ks)
                elif ks not in missing:
                    if len(missing) + len(lent_used) >= capacity:
                        break
                    missing.append(ks)
            end += 1
        if end == start:
            raise _Refused(
                f"cannot press keysym {keysyms[start]:#x}: it is not in the keymap and the "
                "keymap has no spare keycode to map it to"
            )
        if missing:
            loans = self._pool.assign(missing, time.monotonic(), keep=lent_used)
            last_uses = [t for _, _, t in loans if t is not None]
            if last_uses:
                self._d.sync()  # the presses of the evicted characters reached the server
                self._wait_until_read(max(last_uses), reference)
            self._remap(sorted((kc, ks) for kc, ks, _ in loans))
        return end

    def _wait_until_read(self, last_use: float, reference: bytes | bytearray | None) -> None:
        """Wait until the application has most likely read presses made up to ``last_use``:
        the screen changed since ``reference`` (when given) and then stayed still."""
        start = time.monotonic()
        earliest, latest = last_use + REMAP_GUARD_S, start + REMAP_MAX_WAIT_S
        previous = self._snapshot()
        changed = reference is None or previous != reference
        still_since = start
        while True:
            now = time.monotonic()
            if now >= latest:
                log.debug("remapping after %.2f s without the screen settling", now - start)
                return
            if changed and now >= earliest and now - still_since >= REMAP_QUIET_S:
                return
            time.sleep(0.01)
            current = self._snapshot()
            if current != previous:
                previous, still_since = current, time.monotonic()
                changed = changed or current != reference

    def _remap(self, pairs: list[tuple[int, int]]) -> None:
        """Map each keycode to its keysym at both shift levels, in one request.

        Every ChangeKeyboardMapping makes each client reload its keymap (openbox spends about
        50 ms of CPU on it), so the request covers the whole range from the first keycode to
        the last and re-sends the keycodes in between as they are, read under a server grab
        so that no other client's change can slip in between and be undone.
        """
        if not pairs:
            return
        wanted = dict(pairs)
        first, last = min(wanted), max(wanted)
        count = last - first + 1
        self._d.grab_server()
        try:
            current = [tuple(r) for r in self._d.get_keyboard_mapping(first, count)]
            width = max(2, *(len(r) for r in current))
            rows: list[tuple[int, ...]] = []
            for kc, row in enumerate(current, start=first):
                row = (wanted[kc], wanted[kc]) if kc in wanted else row
                rows.append(row + (X.NoSymbol,) * (width - len(row)))
            self._d.change_keyboard_mapping(first, rows)
        finally:
            self._d.ungrab_server()
            self._d.flush()  # release the grab now: screenshots use another connection
        self._expected.append((first, count))

    def _code(self, keysym: int) -> tuple[int, bool]:
        """(keycode, needs shift) of a keysym already in the keymap or lent a keycode."""
        hit = self._lookup.get(keysym)
        if hit is not None:
            kc, level = hit
            return kc, level == 1 and kc not in self._modifiers
        now = time.monotonic()
        lent = self._pool.keycode(keysym, now)
        if lent is None:  # pragma: no cover - _map_missing runs first
            raise RuntimeError(f"keysym {keysym:#x} has no keycode")
        self._last_lent_press = now
        return lent, False

    def chord_codes(self, keysyms: Sequence[int]) -> list[int]:
        """The keycodes to press, in order, for a chord (shift added where a key needs it)."""
        self.refresh()
        if keysyms and self._map_missing(keysyms, 0) < len(keysyms):
            raise _Refused("too many keys of this chord are missing from the keymap")
        codes: list[int] = []
        for ks in keysyms:
            kc, shift = self._code(ks)
            if shift and self._shift is not None and self._shift not in codes:
                codes.append(self._shift)
            if kc not in codes:
                codes.append(kc)
        return codes

    # ------------------------------------------------------------------ input

    def _fake(self, event_type: int, keycode: int) -> None:
        xtest.fake_input(self._d, event_type, keycode)

    @contextmanager
    def held(self, keysyms: Sequence[int]) -> Iterator[None]:
        """Hold a chord down for the body; released in reverse order whatever happens."""
        codes = self.chord_codes(keysyms)
        pressed: list[int] = []
        try:
            for kc in codes:
                self._fake(X.KeyPress, kc)
                pressed.append(kc)
            yield
        finally:
            for kc in reversed(pressed):
                self._fake(X.KeyRelease, kc)

    def type_text(self, text: str) -> None:
        """Type text as keystrokes, with held modifiers and caps lock out of the way."""
        try:
            keysyms = text_keysyms(text)
        except ValueError as e:
            raise _Refused(str(e)) from e
        if not keysyms:
            return
        self.refresh()
        down = self._d.query_keymap()
        held = [kc for kc in sorted(self._modifiers) if down[kc // 8] >> (kc % 8) & 1]
        caps = bool(self._d.screen().root.query_pointer().mask & X.LockMask)
        for kc in held:
            self._fake(X.KeyRelease, kc)
        if caps and self._lock is not None:
            self._tap(self._lock)
        try:
            distinct_missing = {ks for ks in keysyms if ks not in self._lookup}
            will_remap = len(distinct_missing - set(self._pool.lent())) > self._pool.free
            before: bytes | bytearray | None = None  # the screen before the previous run
            i = 0
            while i < len(keysyms):
                end = self._map_missing(keysyms, i, before)
                if will_remap:
                    before = self._snapshot()
                for ks in keysyms[i:end]:
                    kc, shift = self._code(ks)
                    if shift and self._shift is not None:
                        self._fake(X.KeyPress, self._shift)
                        self._tap(kc)
                        self._fake(X.KeyRelease, self._shift)
                    else:
                        self._tap(kc)
                i = end
        finally:
            if caps and self._lock is not None:
                self._tap(self._lock)
            for kc in held:
                self._fake(X.KeyPress, kc)

    def _tap(self, keycode: int) -> None:
        self._fake(X.KeyPress, keycode)
        self._fake(X.KeyRelease, keycode)

    def restore(self) -> None:
        """Unmap the keycodes lent to characters (on close), once their last press is
        ``REMAP_GUARD_S`` old."""
        pairs = sorted((kc, 0) for kc in self._pool.lent().values())
        if pairs:
            self._d.sync()
            pause = self._last_lent_press + REMAP_GUARD_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self._remap(pairs)


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
            self._keyboard = _Keyboard(self._d, self._snapshot)
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
        a lost X connection raises ``DisplayError``.
        """
        self._check_open()
        t0 = time.perf_counter()
        try:
            space = self._space(scaling)
            self._errors.clear()
            self._do(action, space)
            x, y = self.cursor()  # a round trip: the server has processed the whole action
        except (_Refused, UnknownKeyError) as e:
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
            raise _Refused(
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
            case a.HoldKey():
                with self._keyboard.held(parse_combo(action.key)):
                    self._d.sync()
                    time.sleep(action.duration_s)  # holding the key is the action
            case a.Wait():
                time.sleep(action.duration_s)  # waiting is the action
            case a.TakeScreenshot() | a.CursorPosition():
                pass
            case a.Shell():
                raise _Refused("shell commands are run by the desktop over SSH, not by the X layer")
            case _:  # pragma: no cover - the Action union is exhaustive
                raise _Refused(f"unsupported action {getattr(action, 'type', action)!r}")

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
            raise _Refused("give both x and y, or neither to act at the current position")
        return space.to_screen(x, y)

    def _move(self, x: int, y: int) -> None:
        xtest.fake_input(self._d, X.MotionNotify, x=x, y=y)

    def _click(self, button: int) -> None:
        xtest.fake_input(self._d, X.ButtonPress, button)
        xtest.fake_input(self._d, X.ButtonRelease, button)


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000
