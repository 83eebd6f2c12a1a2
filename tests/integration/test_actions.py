"""GUI actions on a real desktop container, through the ``Desktop`` handle: every action's
visible effect in real apps inside the desktop.

Apps (xterm, mousepad) run inside the desktop, started over its shell; each test tags what
it starts and kills it afterwards (every app runs in the test's own directory, which is how
it is found), so most tests share the session's ``desktop``. Files the apps write, the
PRIMARY selection (xclip) and the focused window (xdotool) are read inside the desktop too.
The event recorder (a small python-xlib client that reports the input events its window
receives) and the observer run on this host, connected to the desktop's display through its
socket (``desk.display``) like any other X client of the desktop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import Xlib.display
from PIL import Image, ImageChops
from Xlib import X
from Xlib.ext import xtest

from orchestrator import Desktop, DesktopSpec
from orchestrator import actions as a
from orchestrator.desktop._screen import Frame, Scaling
from orchestrator.desktop._x11 import X11Session, _open_display
from orchestrator.errors import DisplayError
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration

W, H = 1280, 800
Rect = tuple[int, int, int, int]


def ok(result: a.ActionResult) -> a.ActionResult:
    assert result.ok, result.error
    return result


def centre(r: Rect) -> tuple[int, int]:
    return (r[0] + r[2] // 2, r[1] + r[3] // 2)


def region(frame: Frame, r: Rect) -> bytes:
    x0, y0, w, h = r
    rows = (frame.bgra[((y0 + y) * frame.width + x0) * 4 :][: w * 4] for y in range(h))
    return b"".join(bytes(row) for row in rows)


def uniform(pixels: bytes) -> bool:
    return pixels == pixels[:4] * (len(pixels) // 4)


# ---------------------------------------------------------------------- observing windows


def find_windows(d: Xlib.display.Display, match: Callable[[str], bool]) -> list[Any]:
    """The viewable windows whose name ``match``es."""
    found, stack = [], [d.screen().root]
    while stack:
        win = stack.pop()
        try:
            name = win.get_wm_name()
            if isinstance(name, str) and match(name):
                if win.get_attributes().map_state == X.IsViewable:
                    found.append(win)
            stack.extend(win.query_tree().children)
        except Exception:  # noqa: BLE001 - windows come and go
            continue
    return found


def rect(d: Xlib.display.Display, win: Any) -> Rect:
    """``(x, y, width, height)`` of a window in screen pixels."""
    g = win.get_geometry()
    pos = win.translate_coords(d.screen().root, 0, 0)
    return (-pos.x, -pos.y, g.width, g.height)


async def wait_window(d: Xlib.display.Display, match: Callable[[str], bool], what: str) -> Rect:
    """The rectangle of a window once mapped, managed by the window manager, and in place."""
    wm_state = d.intern_atom("WM_STATE")
    seen: list[Rect] = []

    async def placed() -> Rect | None:
        wins = find_windows(d, match)
        if len(wins) != 1 or wins[0].get_full_property(wm_state, wm_state) is None:
            return None
        seen.append(rect(d, wins[0]))
        return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None

    return await eventually(placed, what=f"window {what} mapped and placed")


# ---------------------------------------------------------------------- apps in the desktop


class Apps:
    """Apps one test starts in a desktop, all running in the test's own directory there."""

    def __init__(self, desk: Desktop, observer: Xlib.display.Display) -> None:
        self.desk = desk
        self.observer = observer
        self.tag = f"t{secrets.token_hex(4)}"
        self.dir = f"/tmp/{self.tag}"

    def path(self, name: str) -> str:
        """A path in the desktop that apps write and tests read."""
        return f"{self.dir}/{name}"

    async def start(self, command: str) -> None:
        """Run a shell command line in the desktop, detached, in the test's directory."""
        script = f"mkdir -p {self.dir} && cd {self.dir} && setsid -f sh -c {shlex.quote(command)}"
        res = await self.desk.run(script + " </dev/null >/dev/null 2>&1")  # session's locale
        assert res.ok, res

    async def terminal(self, name: str, command: str, geometry: str = "60x12+20+20") -> Rect:
        """An xterm titled ``<tag>-<name>`` (no inner border, UTF-8) running ``command``;
        returns its rectangle once the window manager placed it."""
        title = f"{self.tag}-{name}"
        argv = ["xterm", "-u8", "-b", "0", "-T", title, "-geometry", geometry]
        await self.start(shlex.join([*argv, "-e", "sh", "-c", command]))
        return await wait_window(self.observer, lambda n: n == title, title)

    async def focus_name(self) -> str:
        """The name of the window with the keyboard focus, asked inside the desktop."""
        return (await self.desk.run("xdotool getwindowfocus getwindowname")).stdout.strip()

    async def read(self, path: str) -> bytes | None:
        res = await self.desk.run(f"test -f {path} && base64 -w0 {path}")
        return base64.b64decode(res.stdout) if res.ok else None

    def file_is(self, path: str, expected: bytes) -> Callable[[], Awaitable[bool]]:
        async def probe() -> bool:
            got = await self.read(path)
            assert got == expected, got
            return True

        return probe

    async def primary_selection(self) -> bytes | None:
        res = await self.desk.run("xclip -o -selection primary -target UTF8_STRING | base64 -w0")
        return base64.b64decode(res.stdout) if res.ok else None

    def selection_is(self, expected: bytes) -> Callable[[], Awaitable[bool]]:
        async def probe() -> bool:
            got = await self.primary_selection()
            assert got == expected, got
            return True

        return probe

    async def close(self) -> None:
        """Kill every process running in the test's directory; wait for their windows."""
        mine = f'[ "$(readlink "$p/cwd")" = {self.dir} ]'
        kill = f'for p in /proc/[0-9]*; do {mine} && kill -KILL "${{p#/proc/}}" 2>/dev/null; done; '
        count = f"n=0; for p in /proc/[0-9]*; do {mine} && n=$((n+1)); done; echo $n"

        async def gone() -> bool:
            res = await self.desk.run(kill + count)  # as the agent, who may read their cwd
            return res.stdout.strip() == "0" and not find_windows(
                self.observer, lambda n: self.tag in n
            )

        await eventually(gone, what=f"the apps of {self.tag} gone")
        await self.desk.run(f"rm -rf {self.dir}")


# ---------------------------------------------------------------------- event recorder

RECORDER = r"""
import json, sys
import Xlib.display
from Xlib import X
x, y, w, h, colour = (int(v) for v in sys.argv[1:6])
d = Xlib.display.Display()
root = d.screen().root
win = root.create_window(
    x, y, w, h, 0, d.screen().root_depth, X.InputOutput, X.CopyFromParent,
    background_pixel=colour, override_redirect=True,
    event_mask=X.ButtonPressMask | X.ButtonReleaseMask | X.PointerMotionMask
    | X.KeyPressMask | X.KeyReleaseMask | X.ExposureMask | X.StructureNotifyMask,
)
win.map()
d.sync()
names = {X.ButtonPress: "press", X.ButtonRelease: "release", X.MotionNotify: "motion",
         X.KeyPress: "key_press", X.KeyRelease: "key_release"}
ready = False
while True:
    ev = d.next_event()
    if ev.type == X.MappingNotify:
        d.refresh_keyboard_mapping(ev)
    elif ev.type == X.Expose and not ready:
        win.set_input_focus(X.RevertToParent, X.CurrentTime)
        d.sync()
        ready = True
        print(json.dumps({"type": "ready", "window": win.id}), flush=True)
    elif ev.type in names:
        out = {"type": names[ev.type], "detail": ev.detail, "x": ev.event_x, "y": ev.event_y,
               "state": ev.state, "time": ev.time}
        if ev.type in (X.KeyPress, X.KeyRelease):
            out["keysym"] = d.keycode_to_keysym(ev.detail, 0)
        print(json.dumps(out), flush=True)
"""


class Recorder:
    """A window on the desktop that records the input events it receives; it takes the
    keyboard focus once shown. Start it with ``await Recorder(...).started()``."""

    def __init__(self, display: str, r: Rect, colour: int) -> None:
        self.rect = r
        self.events: list[dict[str, Any]] = []
        self._proc = subprocess.Popen(
            [sys.executable, "-c", RECORDER, *map(str, r), str(colour)],
            env={**os.environ, "DISPLAY": display},
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    async def started(self) -> Recorder:
        async def ready() -> dict[str, Any] | None:
            assert self._proc.poll() is None, "the recorder exited"
            return next((e for e in self.events if e["type"] == "ready"), None)

        self.window = (await eventually(ready, what="recorder window ready"))["window"]
        self.events.clear()
        return self

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.events.append(json.loads(line))

    def of(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["type"] in types]

    async def wait_for(self, n: int, *types: str) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            events = self.of(*types)
            return events if len(events) >= n else None

        return await eventually(enough, what=f"{n} {'/'.join(types)} events")

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(5)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def observer(desktop: Desktop) -> Iterator[Xlib.display.Display]:
    """A separate X connection from this host, for looking at the desktop from outside."""
    d = _open_display(desktop.display)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
async def apps(desktop: Desktop, observer: Xlib.display.Display) -> AsyncIterator[Apps]:
    started = Apps(desktop, observer)
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def recorder(desktop: Desktop) -> AsyncIterator[Recorder]:
    rec = await Recorder(desktop.display, (100, 100, 400, 300), colour=0xCC3311).started()
    try:
        yield rec
    finally:
        rec.close()


@pytest.fixture(scope="module")
async def wide_desktop(desktop_image: str) -> AsyncIterator[Desktop]:
    """A desktop of another screen size (its own container)."""
    desk = await Desktop.start(DesktopSpec(image=desktop_image, width=1920, height=1080))
    try:
        yield desk
    finally:
        await desk.stop()


# ---------------------------------------------------------------------- screen


async def test_grab_and_screenshots_show_the_screen(desktop: Desktop, recorder: Recorder) -> None:
    assert desktop.size == (W, H)
    frame = await desktop.grab()
    assert (frame.width, frame.height) == (W, H)
    assert len(frame.bgra) == W * H * 4
    assert frame.pixel(300, 250) == (0xCC, 0x33, 0x11)  # inside the recorder window
    assert frame.timestamp <= time.monotonic()

    png = await desktop.screenshot()
    assert (png.format, png.media_type, png.scaling) == ("png", "image/png", None)
    image = Image.open(io.BytesIO(png.data))
    assert image.format == "PNG" and image.size == (png.width, png.height) == (W, H)
    assert image.convert("RGB").getpixel((300, 250)) == (0xCC, 0x33, 0x11)

    scaling = Scaling.fit(W, H, 1024, 768)
    jpeg = await desktop.screenshot("jpeg", quality=70, scaling=scaling)
    image = Image.open(io.BytesIO(jpeg.data))
    assert image.format == "JPEG" and image.size == (jpeg.width, jpeg.height) == (1024, 640)
    assert jpeg.scaling == scaling
    r, g, b = image.convert("RGB").getpixel(scaling.to_model(300, 250))
    assert abs(r - 0xCC) + abs(g - 0x33) + abs(b - 0x11) < 30


def test_screenshots_share_memory_across_the_container_boundary(desktop: Desktop) -> None:
    # the X server is in the container's IPC namespace: MIT-SHM passes a memfd over the
    # X socket instead of a SysV segment
    with X11Session(desktop.display) as session:
        assert session.grab().size == (W, H)
        assert session.grab_method == "MIT-SHM"


# ---------------------------------------------------------------------- typing


async def test_type_unicode_text_into_a_terminal(desktop: Desktop, apps: Apps) -> None:
    out = apps.path("typed.txt")
    r = await apps.terminal("typing", f"cat > {out}")
    ok(await desktop.act(a.Click(x=centre(r)[0], y=centre(r)[1])))
    text = (
        "héllo wörld € → 日本\n"
        "ÀÉÎõü ß ½ 😀 ĀāĂă\n"
        "ASCII: The Quick Fox! @#$%^&*()_+{}|:\"<>?~`-=[]\\;',./\n"
    )
    ok(await desktop.act(a.TypeText(text=text)))
    await eventually(apps.file_is(out, text.encode()), what="typed text in the file")


async def test_type_unicode_text_into_a_gtk_editor_and_save(desktop: Desktop, apps: Apps) -> None:
    out = apps.path(f"{apps.tag}-note.txt")
    await apps.start(f"exec mousepad {out}")
    r = await wait_window(apps.observer, lambda n: out in n, "mousepad")
    ok(await desktop.act(a.Click(x=centre(r)[0], y=centre(r)[1])))

    async def focused() -> bool:
        return out in await apps.focus_name()

    await eventually(focused, what="mousepad focused")
    text = "héllo wörld € → 日本 😀\nsecond line\tend"
    ok(await desktop.act(a.TypeText(text=text)))
    ok(await desktop.act(a.KeyPress(keys=["ctrl+s"])))
    await eventually(apps.file_is(out, text.encode()), what="the saved file")


def keymap(d: Xlib.display.Display) -> dict[int, tuple[int, ...]]:
    """keycode -> keysyms (trailing NoSymbols dropped)."""
    first, last = d.display.info.min_keycode, d.display.info.max_keycode
    rows = d.get_keyboard_mapping(first, last - first + 1)
    return {first + i: _trim(tuple(r)) for i, r in enumerate(rows)}


def _trim(row: tuple[int, ...]) -> tuple[int, ...]:
    while row and not row[-1]:
        row = row[:-1]
    return row


def lent(row: tuple[int, ...]) -> bool:
    """Whether a keymap row is a keycode lent to a character (not a function key, the
    character at both shift levels) or unmapped."""
    return not any(row) or (
        len(row) > 1 and row[0] == row[1] and (0 < row[0] < 0xFE00 or row[0] >= 0x01000000)
    )


def lendable_keycodes(d: Xlib.display.Display) -> int:
    """How many keycodes can be lent to characters, at most: those without keysyms, and
    those lent already."""
    return sum(1 for row in keymap(d).values() if lent(row))


async def test_typing_more_distinct_characters_than_spare_keycodes(
    desktop: Desktop, apps: Apps, observer: Xlib.display.Display
) -> None:
    out = apps.path("many.txt")
    r = await apps.terminal("many", f"cat > {out}")
    ok(await desktop.act(a.Click(x=centre(r)[0], y=centre(r)[1])))
    spare = lendable_keycodes(observer)
    assert spare > 0
    first, last = observer.display.info.min_keycode, observer.display.info.max_keycode
    keymap_before = keymap(observer)
    observer.sync()
    while observer.pending_events():
        observer.next_event()
    text = "".join(chr(0x4E00 + i) for i in range(spare + 12)) + "ĀāĂă" + chr(0x4E00) + "\n"
    ok(await desktop.act(a.TypeText(text=text)))
    await eventually(apps.file_is(out, text.encode()), what="typed text in the file")

    # One keymap change per remap round (two here), not one per run of adjacent keycodes:
    # each makes every client reload its keymap, the window manager for about 50 ms.
    observer.sync()
    notified = []
    while observer.pending_events():
        ev = observer.next_event()
        if ev.type == X.MappingNotify and ev.request == X.MappingKeyboard:
            notified.append((ev.first_keycode, ev.count))
    assert 1 <= len(notified) <= 2, notified
    # ... and the keycodes re-sent in between are as they were
    keymap_after = keymap(observer)
    changed = [kc for kc in range(first, last + 1) if keymap_after[kc] != keymap_before[kc]]
    assert all(lent(keymap_after[kc]) for kc in changed), changed


async def test_a_key_combo_acts_on_the_app(desktop: Desktop, apps: Apps) -> None:
    out = apps.path("combo.txt")
    r = await apps.terminal("combo", f"cat > {out}")
    ok(await desktop.act(a.Click(x=centre(r)[0], y=centre(r)[1])))
    ok(await desktop.act(a.TypeText(text="junk that ctrl+u erases")))
    ok(await desktop.act(a.KeyPress(keys=["ctrl+u"])))
    ok(await desktop.act(a.TypeText(text="first")))
    ok(await desktop.act(a.KeyPress(keys=["Return"])))
    ok(await desktop.act(a.TypeText(text="more junk")))
    ok(await desktop.act(a.KeyPress(keys=["CTRL", "U"])))  # OpenAI's spelling
    ok(await desktop.act(a.TypeText(text="second")))
    ok(await desktop.act(a.KeyPress(keys=["ENTER"])))
    ok(await desktop.act(a.TypeText(text="third")))
    ok(await desktop.act(a.KeyPress(keys=["ctrl", "d"])))  # end of file: cat exits
    await eventually(apps.file_is(out, b"first\nsecond\nthird"), what="the edited lines")


async def test_caps_lock_and_a_held_shift_do_not_corrupt_typing(
    desktop: Desktop, apps: Apps, observer: Xlib.display.Display
) -> None:
    out = apps.path("caps.txt")
    r = await apps.terminal("caps", f"cat > {out}")
    ok(await desktop.act(a.Click(x=centre(r)[0], y=centre(r)[1])))
    root = observer.screen().root
    ok(await desktop.act(a.KeyPress(keys=["Caps_Lock"])))
    try:
        assert root.query_pointer().mask & X.LockMask
        ok(await desktop.act(a.TypeText(text="abc Ab\n")))
        assert root.query_pointer().mask & X.LockMask, "caps lock must be left as it was"
    finally:
        ok(await desktop.act(a.KeyPress(keys=["Caps_Lock"])))
    assert not root.query_pointer().mask & X.LockMask

    shift = observer.keysym_to_keycode(0xFFE1)
    xtest.fake_input(observer, X.KeyPress, shift)  # someone else holds shift
    observer.sync()
    try:
        ok(await desktop.act(a.TypeText(text="def\n")))
        keys = observer.query_keymap()
        assert keys[shift // 8] >> (shift % 8) & 1, "the held shift must be pressed again"
    finally:
        xtest.fake_input(observer, X.KeyRelease, shift)
        observer.sync()
    await eventually(apps.file_is(out, b"abc Ab\ndef\n"), what="typed text in the file")


async def test_control_characters_are_refused_before_typing_anything(
    desktop: Desktop, recorder: Recorder
) -> None:
    result = await desktop.act(a.TypeText(text="ab\x07c"))
    assert not result.ok
    assert "U+0007" in (result.error or "")
    ok(await desktop.act(a.TypeText(text="z")))
    events = await recorder.wait_for(2, "key_press", "key_release")
    assert [e["keysym"] for e in events] == [ord("z"), ord("z")]


async def test_close_unmaps_the_keycodes_lent_to_characters(wide_desktop: Desktop) -> None:
    # on a desktop of its own: the shared one's session may have lent every spare keycode
    watcher = _open_display(wide_desktop.display)
    try:
        with X11Session(wide_desktop.display) as session:
            ok(session.perform(a.TypeText(text="ж")))
            first = watcher.display.info.min_keycode
            count = watcher.display.info.max_keycode - first + 1
            assert any(0x01000436 in row for row in watcher.get_keyboard_mapping(first, count))
        rows = watcher.get_keyboard_mapping(first, count)
        assert not any(0x01000436 in row for row in rows)
    finally:
        watcher.close()


# ---------------------------------------------------------------------- keys


async def test_keypress_chord_presses_in_order_and_releases_in_reverse(
    desktop: Desktop, recorder: Recorder
) -> None:
    ok(await desktop.act(a.KeyPress(keys=["ctrl", "shift+t"])))
    events = await recorder.wait_for(6, "key_press", "key_release")
    assert [(e["type"], e["keysym"]) for e in events] == [
        ("key_press", 0xFFE3),
        ("key_press", 0xFFE1),
        ("key_press", ord("t")),
        ("key_release", ord("t")),
        ("key_release", 0xFFE1),
        ("key_release", 0xFFE3),
    ]
    assert events[2]["state"] & (X.ControlMask | X.ShiftMask) == X.ControlMask | X.ShiftMask


async def test_keypress_of_a_shifted_character_adds_shift(
    desktop: Desktop, recorder: Recorder
) -> None:
    ok(await desktop.act(a.KeyPress(keys=["!"])))
    events = await recorder.wait_for(4, "key_press", "key_release")
    assert [e["keysym"] for e in events] == [0xFFE1, ord("1"), ord("1"), 0xFFE1]


async def test_hold_key_holds_for_the_duration(desktop: Desktop, recorder: Recorder) -> None:
    t0 = time.monotonic()
    ok(await desktop.act(a.HoldKey(key="shift", duration_s=0.3)))
    assert time.monotonic() - t0 >= 0.3
    press, release = await recorder.wait_for(2, "key_press", "key_release")
    assert (press["type"], release["type"]) == ("key_press", "key_release")
    assert press["keysym"] == release["keysym"] == 0xFFE1
    assert release["time"] - press["time"] >= 290  # X server milliseconds


async def test_screenshots_go_on_while_a_key_is_held(desktop: Desktop, recorder: Recorder) -> None:
    """A hold is awaited off the one X thread: a screenshot taken while the key is down comes
    back long before the hold ends, and a cancelled hold still releases its key."""
    hold = asyncio.create_task(desktop.act(a.HoldKey(key="shift", duration_s=30)))
    try:
        async with asyncio.timeout(10):
            (press,) = await recorder.wait_for(1, "key_press")
            assert press["keysym"] == 0xFFE1 and not recorder.of("key_release")
        async with asyncio.timeout(3):  # the X thread held for the hold: 30 s
            shot = await desktop.screenshot()
            frame = await desktop.grab()
        assert (shot.width, shot.height) == (frame.width, frame.height) == (W, H)
        assert not hold.done() and not recorder.of("key_release")  # still held
    finally:
        hold.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hold
    (release,) = await recorder.wait_for(1, "key_release")
    assert release["keysym"] == 0xFFE1


async def test_unknown_keys_fail_without_pressing_anything(
    desktop: Desktop, recorder: Recorder
) -> None:
    result = await desktop.act(a.KeyPress(keys=["ctrl", "foo"]))
    assert not result.ok
    assert result.error == "unknown key 'foo'; use xdotool names such as ctrl, shift, Return, a"
    result = await desktop.act(a.Click(x=200, y=200, keys=["hyperdrive"]))
    assert not result.ok and "unknown key 'hyperdrive'" in (result.error or "")
    result = await desktop.act(a.HoldKey(key="nope", duration_s=0.1))
    assert not result.ok and "unknown key 'nope'" in (result.error or "")
    ok(await desktop.act(a.KeyPress(keys=["a"])))  # a marker: nothing came before it
    events = await recorder.wait_for(2, "key_press", "key_release", "press")
    assert [e["type"] for e in events] == ["key_press", "key_release"]


# ---------------------------------------------------------------------- mouse


async def test_every_button_reaches_the_app_where_clicked(
    desktop: Desktop, recorder: Recorder
) -> None:
    buttons: list[tuple[a.Button, int]] = [
        ("left", 1),
        ("middle", 2),
        ("right", 3),
        ("back", 8),
        ("forward", 9),
    ]
    for i, (button, number) in enumerate(buttons):
        recorder.events.clear()
        x, y = 150 + 20 * i, 170 + 10 * i
        result = ok(await desktop.act(a.Click(x=x, y=y, button=button)))
        assert result.cursor == a.Point(x=x, y=y)
        press, release = await recorder.wait_for(2, "press", "release")
        assert (press["type"], press["detail"], press["x"], press["y"]) == (
            "press",
            number,
            x - 100,
            y - 100,
        ), button
        assert (release["type"], release["detail"]) == ("release", number), button


async def test_double_and_triple_clicks(desktop: Desktop, recorder: Recorder) -> None:
    ok(await desktop.act(a.DoubleClick(x=200, y=200)))
    events = await recorder.wait_for(4, "press", "release")
    assert [(e["type"], e["detail"]) for e in events] == [("press", 1), ("release", 1)] * 2
    recorder.events.clear()
    ok(await desktop.act(a.TripleClick(x=200, y=200, button="right")))
    events = await recorder.wait_for(6, "press", "release")
    assert [(e["type"], e["detail"]) for e in events] == [("press", 3), ("release", 3)] * 3


async def test_modifiers_are_held_during_a_click_and_released_after(
    desktop: Desktop, recorder: Recorder, observer: Xlib.display.Display
) -> None:
    ok(await desktop.act(a.Click(x=200, y=200, keys=["ctrl", "shift"])))
    press = (await recorder.wait_for(1, "press"))[0]
    assert press["state"] & (X.ControlMask | X.ShiftMask) == X.ControlMask | X.ShiftMask
    releases = await recorder.wait_for(2, "key_release")
    assert [e["keysym"] for e in releases] == [0xFFE1, 0xFFE3]
    assert not any(observer.query_keymap()), "no key may stay down"


async def test_mouse_down_move_and_up(
    desktop: Desktop, recorder: Recorder, observer: Xlib.display.Display
) -> None:
    ok(await desktop.act(a.MouseDown(x=150, y=150)))
    assert observer.screen().root.query_pointer().mask & X.Button1Mask, "the button is down"
    ok(await desktop.act(a.Move(x=250, y=180)))
    result = ok(await desktop.act(a.MouseUp()))  # at the current position
    assert result.cursor == a.Point(x=250, y=180)
    assert not observer.screen().root.query_pointer().mask & X.Button1Mask
    press = (await recorder.wait_for(1, "press"))[0]
    release = (await recorder.wait_for(1, "release"))[0]
    assert (press["x"], press["y"]) == (50, 50)
    assert (release["x"], release["y"]) == (150, 80)
    motion = recorder.of("motion")[-1]
    assert (motion["x"], motion["y"]) == (150, 80) and motion["state"] & X.Button1Mask


async def test_drag_passes_through_every_point_with_the_button_down(
    desktop: Desktop, recorder: Recorder
) -> None:
    path = [
        a.Point(x=120, y=120),
        a.Point(x=200, y=130),
        a.Point(x=260, y=220),
        a.Point(x=300, y=300),
    ]
    ok(await desktop.act(a.Drag(path=path, button="middle")))
    release = (await recorder.wait_for(1, "release"))[0]
    press = recorder.of("press")[0]
    assert (press["detail"], press["x"], press["y"]) == (2, 20, 20)
    assert (release["detail"], release["x"], release["y"]) == (2, 200, 200)
    held = [(e["x"], e["y"]) for e in recorder.of("motion") if e["state"] & X.Button2Mask]
    assert held == [(100, 30), (160, 120), (200, 200)]


async def test_scroll_sends_one_wheel_click_per_notch(desktop: Desktop, recorder: Recorder) -> None:
    ok(await desktop.act(a.Scroll(x=200, y=200, scroll_y=2, scroll_x=-3)))
    presses = await recorder.wait_for(5, "press")
    assert [e["detail"] for e in presses] == [5, 5, 6, 6, 6]
    recorder.events.clear()
    ok(await desktop.act(a.Scroll(x=200, y=200, scroll_y=-1, scroll_x=1, keys=["shift"])))
    presses = await recorder.wait_for(2, "press")
    assert [e["detail"] for e in presses] == [4, 7]
    assert all(e["state"] & X.ShiftMask for e in presses)


async def test_scroll_moves_terminal_content(desktop: Desktop, apps: Apps) -> None:
    r = await apps.terminal("scroll", "seq 1 500; exec sleep 600", "60x20+20+20")
    previous: list[bytes] = []

    async def settled() -> bytes | None:  # drawn, and the same in two grabs in a row
        pixels = region(await desktop.grab(), r)
        previous.append(pixels)
        same = len(previous) > 1 and previous[-2] == pixels
        return pixels if same and not uniform(pixels) else None

    before = await eventually(settled, what="the terminal showing its output")
    x, y = centre(r)
    ok(await desktop.act(a.Scroll(x=x, y=y, scroll_y=-3)))

    async def scrolled_up() -> bool:
        return region(await desktop.grab(), r) != before

    await eventually(scrolled_up, what="the content scrolling up")
    ok(await desktop.act(a.Scroll(x=x, y=y, scroll_y=3)))

    async def scrolled_back() -> bool:
        return region(await desktop.grab(), r) == before

    await eventually(scrolled_back, what="the content scrolling back")


async def test_drag_selects_text_and_middle_click_pastes_it(desktop: Desktop, apps: Apps) -> None:
    out = apps.path("paste.txt")
    r = await apps.terminal("paste", f"cat > {out}", "40x10+20+20")
    cell_w, cell_h = r[2] // 40, r[3] // 10
    # focus through the title bar: a click inside just before the drag would make it a
    # double click
    ok(await desktop.act(a.Click(x=r[0] + r[2] // 2, y=r[1] - 10)))

    async def focused() -> bool:
        return await apps.focus_name() == f"{apps.tag}-paste"

    await eventually(focused, what="the terminal focused")
    ok(await desktop.act(a.TypeText(text="hello selection")))  # echoed on row 0, not yet sent
    line = (r[0], r[1], r[2], cell_h)
    last_cell = (r[0] + 14 * cell_w, r[1], cell_w, cell_h)
    previous: list[bytes] = []

    async def echoed() -> bool:  # the last character drawn, and the line still
        frame = await desktop.grab()
        previous.append(region(frame, line))
        still = len(previous) > 1 and previous[-1] == previous[-2]
        return still and not uniform(region(frame, last_cell))

    await eventually(echoed, what="the typed text echoed")
    row0 = r[1] + cell_h // 2
    # from the first character to past the end of the line: the line and its newline
    path = [a.Point(x=r[0] + 1, y=row0), a.Point(x=r[0] + 30 * cell_w, y=row0)]
    ok(await desktop.act(a.Drag(path=path)))
    # xterm reads the pointer while it extends a selection: let it finish before moving on
    await eventually(apps.selection_is(b"hello selection\n"), what="the line selected")
    ok(await desktop.act(a.Click(x=centre(r)[0], y=centre(r)[1], button="middle")))
    # the paste is a round trip through the selection owner: keys typed meanwhile come first
    pasted = b"hello selectionhello selection\n"
    await eventually(apps.file_is(out, pasted), what="the selection pasted after the text")
    ok(await desktop.act(a.TypeText(text="next\n")))
    await eventually(apps.file_is(out, pasted + b"next\n"), what="typing after the paste")


async def test_double_and_triple_clicks_select_a_word_and_a_line(
    desktop: Desktop, apps: Apps
) -> None:
    # two terminals: clicks on one do not count towards a multi-click on the other
    line = "echo hello wide world; exec sleep 600"
    first = await apps.terminal("words", line, "40x10+20+20")
    second = await apps.terminal("lines", line, "40x10+400+20")
    cell_w, cell_h = first[2] // 40, first[3] // 10
    for r in (first, second):

        async def drawn(r: Rect = r) -> bool:  # the last character is there
            cell = (r[0] + 15 * cell_w, r[1], cell_w, cell_h)
            return not uniform(region(await desktop.grab(), cell))

        await eventually(drawn, what="the line drawn")

    row0 = first[1] + cell_h // 2
    ok(await desktop.act(a.DoubleClick(x=first[0] + 7 * cell_w + cell_w // 2, y=row0)))  # "wide"
    await eventually(apps.selection_is(b"wide"), what="the word selected")
    ok(await desktop.act(a.TripleClick(x=second[0] + 2 * cell_w, y=second[1] + cell_h // 2)))
    await eventually(apps.selection_is(b"hello wide world\n"), what="the line selected")


async def test_click_focuses_the_window_under_it(desktop: Desktop, apps: Apps) -> None:
    left = await apps.terminal("left", "exec sleep 600", "30x8+20+300")
    right = await apps.terminal("right", "exec sleep 600", "30x8+500+300")
    for name, r in [("left", left), ("right", right), ("left", left)]:
        ok(await desktop.act(a.Click(x=centre(r)[0], y=centre(r)[1])))

        async def focused(name: str = name) -> bool:
            return await apps.focus_name() == f"{apps.tag}-{name}"

        await eventually(focused, what=f"{name} focused")


# ---------------------------------------------------------------------- coordinates


async def test_cursor_position_and_move(desktop: Desktop, observer: Xlib.display.Display) -> None:
    assert ok(await desktop.act(a.Move(x=123, y=45))).cursor == a.Point(x=123, y=45)
    assert ok(await desktop.act(a.CursorPosition())).cursor == a.Point(x=123, y=45)
    assert ok(await desktop.act(a.TakeScreenshot())).cursor == a.Point(x=123, y=45)
    p = observer.screen().root.query_pointer()
    assert (p.root_x, p.root_y) == (123, 45)
    res = await desktop.run("xdotool getmouselocation --shell")
    assert res.stdout.splitlines()[:2] == ["X=123", "Y=45"]


async def test_wait_waits(desktop: Desktop) -> None:
    t0 = time.monotonic()
    result = ok(await desktop.act(a.Wait(duration_s=0.3)))
    assert time.monotonic() - t0 >= 0.3
    assert result.duration_ms == pytest.approx(300)


def find_colour(image: Image.Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The bounding box (left, top, right, bottom) of the pixels of about ``colour``."""
    diff = ImageChops.difference(image.convert("RGB"), Image.new("RGB", image.size, colour))
    mask = diff.convert("L").point(lambda v: 255 if v < 12 else 0)
    box = mask.getbbox()
    assert box is not None, f"no pixel of colour {colour} in the image"
    return box


async def click_what_a_scaled_screenshot_shows(desk: Desktop, scaling: Scaling) -> None:
    """Find a small window in a scaled screenshot, click its middle in the screenshot's
    coordinates, and check that the press lands on it, on the screen pixel under that point."""
    target: Rect = (601, 333, 9, 7)  # odd place and size: rounding shows
    rec = await Recorder(desk.display, target, colour=0x11CC33).started()
    try:
        shot = await desk.screenshot(scaling=scaling)
        assert (shot.width, shot.height) == (scaling.width, scaling.height)
        image = Image.open(io.BytesIO(shot.data))
        assert image.size == (scaling.width, scaling.height)
        left, top, right, bottom = find_colour(image, (0x11, 0xCC, 0x33))
        mx, my = (left + right - 1) // 2, (top + bottom - 1) // 2
        result = ok(await desk.act(a.Click(x=mx, y=my), scaling))
        assert result.cursor == a.Point(x=mx, y=my)
        press = (await rec.wait_for(1, "press"))[0]
        sx, sy = scaling.to_screen(mx, my)
        assert (target[0] + press["x"], target[1] + press["y"]) == (sx, sy)
        assert 0 <= press["x"] < target[2] and 0 <= press["y"] < target[3]
    finally:
        rec.close()


async def test_a_click_on_a_scaled_screenshot_lands_where_it_shows(
    desktop: Desktop, observer: Xlib.display.Display
) -> None:
    scaling = Scaling.fit(W, H, 1024, 768)  # 1024x640
    assert (scaling.width, scaling.height) == (1024, 640)
    await click_what_a_scaled_screenshot_shows(desktop, scaling)
    result = ok(await desktop.act(a.Move(x=1023, y=639), scaling))
    assert result.cursor == a.Point(x=1023, y=639)
    p = observer.screen().root.query_pointer()
    assert (p.root_x, p.root_y) == scaling.to_screen(1023, 639) == (1279, 799)
    ok(await desktop.act(a.Move(x=100, y=50), scaling))
    p = observer.screen().root.query_pointer()
    assert (p.root_x, p.root_y) == (125, 63)
    identity = Scaling.identity(W, H)
    assert ok(await desktop.act(a.Move(x=7, y=9), identity)).cursor == a.Point(x=7, y=9)


async def test_out_of_screen_coordinates_fail_without_acting(
    desktop: Desktop, recorder: Recorder
) -> None:
    ok(await desktop.act(a.Move(x=10, y=10)))
    result = await desktop.act(a.Click(x=1500, y=10))
    assert not result.ok
    assert result.error == "x=1500 is outside the screen (0..1279)"
    result = await desktop.act(a.Move(x=5, y=-1))
    assert result.error == "y=-1 is outside the screen (0..799)"
    result = await desktop.act(a.Click(x=1100, y=10), Scaling.fit(W, H, 1024, 768))
    assert result.error == "x=1100 is outside the screen (0..1023)"
    path = [a.Point(x=150, y=150), a.Point(x=200, y=200), a.Point(x=9000, y=200)]
    result = await desktop.act(a.Drag(path=path))
    assert result.error == "path[2]: x=9000 is outside the screen (0..1279)"
    result = await desktop.act(a.Scroll(x=200, y=800, scroll_y=1))
    assert result.error == "y=800 is outside the screen (0..799)"
    result = await desktop.act(a.MouseDown(x=150))
    assert not result.ok and "both x and y" in (result.error or "")
    result = await desktop.act(a.Move(x=10, y=10), Scaling(1920, 1080, 1280, 720))
    assert not result.ok and "1920x1080 screen but the screen is 1280x800" in (result.error or "")
    assert ok(await desktop.act(a.CursorPosition())).cursor == a.Point(x=10, y=10), (
        "a refused action must not move the pointer"
    )
    ok(await desktop.act(a.Click(x=150, y=150)))  # a marker: nothing came before it
    assert (await recorder.wait_for(1, "press"))[0]["x"] == 50
    assert len(recorder.of("press")) == 1


async def test_another_screen_size(wide_desktop: Desktop) -> None:
    desk = wide_desktop
    assert desk.size == (1920, 1080)
    assert (await desk.grab()).size == (1920, 1080)
    assert (await desk.run("xdotool getdisplaygeometry")).stdout == "1920 1080\n"
    scaling = Scaling.anthropic(1920, 1080)
    assert (scaling.width, scaling.height) == (1366, 768)
    await click_what_a_scaled_screenshot_shows(desk, scaling)
    result = await desk.act(a.Click(x=1366, y=0), scaling)
    assert result.error == "x=1366 is outside the screen (0..1365)"
    result = await desk.act(a.Click(x=1919, y=1080))
    assert result.error == "y=1080 is outside the screen (0..1079)"
    result = await desk.act(a.Move(x=1, y=1), Scaling.fit(W, H, 1024, 768))
    assert not result.ok and "take a new screenshot" in (result.error or "")
    assert ok(await desk.act(a.Move(x=1919, y=1079))).cursor == a.Point(x=1919, y=1079)


# ---------------------------------------------------------------------- failures


def test_a_missing_display_raises_display_error() -> None:
    with pytest.raises(DisplayError, match="cannot open X display ':4242'"):
        X11Session(":4242")


async def test_a_lost_x_server_raises_display_error_until_restart(wide_desktop: Desktop) -> None:
    desk = wide_desktop
    ok(await desk.act(a.Move(x=1, y=1)))
    assert (await desk.run("pkill -KILL -x Xvfb", user="root")).ok

    async def acting() -> bool:  # until the dead connection shows
        ok(await desk.act(a.Move(x=2, y=2)))
        return False

    with pytest.raises(DisplayError):  # the container lives on: not DesktopGoneError
        await eventually(acting, timeout_s=5, what="the display lost")
    with pytest.raises(DisplayError):
        await desk.grab()
    assert await desk.is_alive()
    await desk.restart()
    ok(await desk.act(a.Move(x=3, y=3)))
    assert (await desk.grab()).size == (1920, 1080)
