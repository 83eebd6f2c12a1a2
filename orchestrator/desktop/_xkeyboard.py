"""The keyboard as XTest drives it: the X keymap seen from one connection, keycodes lent to
characters the keymap lacks, chords held down and text typed as keystrokes.

Synchronous and not thread-safe, like the ``X11Session`` that owns it. A character missing
from the keymap is typed by remapping a spare keycode to it (``_keys.KeycodePool`` decides
which); a keycode is remapped to another character only once the application has most likely
read the presses of the previous one (``REMAP_*``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import Xlib.display
from Xlib import X
from Xlib.ext import xtest

from ._keys import KeycodePool, text_keysyms

__all__ = ["REMAP_GUARD_S", "REMAP_MAX_WAIT_S", "REMAP_QUIET_S", "Keyboard", "Refused"]

log = logging.getLogger(__name__)

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


class Refused(Exception):
    """The action cannot be done as asked; the message is for the model."""


class Keyboard:
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
            raise Refused(
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
            raise Refused("too many keys of this chord are missing from the keymap")
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

    def press(self, keysyms: Sequence[int]) -> list[int]:
        """Press a chord and leave it down; return the keycodes pressed, in order (a failure
        part way releases those already down and raises)."""
        pressed: list[int] = []
        try:
            for kc in self.chord_codes(keysyms):
                self._fake(X.KeyPress, kc)
                pressed.append(kc)
        except BaseException:
            self.release(pressed)
            raise
        return pressed

    def release(self, keycodes: Sequence[int]) -> None:
        """Release keycodes pressed by ``press``, in reverse order."""
        for kc in reversed(keycodes):
            self._fake(X.KeyRelease, kc)

    @contextmanager
    def held(self, keysyms: Sequence[int]) -> Iterator[None]:
        """Hold a chord down for the body; released in reverse order whatever happens."""
        pressed = self.press(keysyms)
        try:
            yield
        finally:
            self.release(pressed)

    def type_text(self, text: str) -> None:
        """Type text as keystrokes, with held modifiers and caps lock out of the way."""
        try:
            keysyms = text_keysyms(text)
        except ValueError as e:
            raise Refused(str(e)) from e
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
