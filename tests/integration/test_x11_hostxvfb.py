"""X11Session against a real Xvfb (+ openbox) on the host: every action's visible effect.

Dev-only: it needs Xvfb, and xterm/openbox for some tests, on the host. Everything is built
around the ``desk`` fixture (a display name, a way to start an app under it, a way to read a
file an app wrote), so the same tests can run against a container desktop by swapping it.
Apps run in the desktop; the event recorder and the observer are X clients run from here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import Xlib.display
from Xlib import X, Xatom
from Xlib.ext import xtest

from orchestrator import actions as a
from orchestrator.desktop._screen import Frame, Scaling
from orchestrator.desktop._x11 import X11Session
from orchestrator.errors import DisplayError

pytestmark = pytest.mark.integration

T = TypeVar("T")
W, H = 1280, 800
UTF8 = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def eventually(
    probe: Callable[[], T | None], *, timeout_s: float = 10.0, what: str = "condition"
) -> T:
    """Call ``probe()`` until it returns something truthy, or fail with its last value."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except AssertionError as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s; last: {last!r}")
        time.sleep(0.02)


# ---------------------------------------------------------------------- the desktop


@contextmanager
def host_xvfb(
    size: tuple[int, int] = (W, H), *, args: tuple[str, ...] = (), prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A host Xvfb on a free display (Xvfb picks it and reports it through -displayfd)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed on this host (apt-get install xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [*prefix, "Xvfb", "-displayfd", str(w), "-screen", "0", f"{size[0]}x{size[1]}x24"]
        + ["-nolisten", "tcp", *args],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit {proc.wait(10)})")
        yield f":{number}", proc
    finally:
        proc.terminate()
        proc.wait(10)


class Desk:
    """A display and what tests need of the desktop behind it."""

    def __init__(self, display: str, tmp: Path) -> None:
        self.display = display
        self.tmp = tmp
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, *argv: str, env: dict[str, str] | None = None) -> None:
        """Start an app on the desktop; it is killed after the test."""
        self._procs.append(
            subprocess.Popen(
                argv,
                env={**os.environ, **(env or {}), "DISPLAY": self.display},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def path(self, name: str) -> str:
        """A path on the desktop that apps can write and tests can read."""
        return str(self.tmp / name)

    def read(self, path: str) -> bytes | None:
        p = Path(path)
        return p.read_bytes() if p.exists() else None

    def kill_apps(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self._procs.clear()


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with host_xvfb() as (name, _), tempfile.TemporaryDirectory() as tmp:
        wm: subprocess.Popen[bytes] | None = None
        if shutil.which("openbox"):
            wm = subprocess.Popen(
                ["openbox", "--sm-disable"],
                env={**os.environ, "DISPLAY": name},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
            )
            d = Xlib.display.Display(name)
            check = d.intern_atom("_NET_SUPPORTING_WM_CHECK")
            eventually(
                lambda: d.screen().root.get_full_property(check, Xatom.WINDOW),
                what="openbox managing the screen",
            )
            d.close()
        try:
            yield name
        finally:
            if wm is not None:
                wm.terminate()
                wm.wait(10)


@pytest.fixture
def desk(display: str, tmp_path: Path) -> Iterator[Desk]:
    d = Desk(display, tmp_path)
    try:
        yield d
    finally:
        d.kill_apps()


@pytest.fixture
def x(desk: Desk) -> Iterator[X11Session]:
    session = X11Session(desk.display)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def observer(desk: Desk) -> Iterator[Xlib.display.Display]:
    """A separate X connection for looking at the desktop from outside the session."""
    d = Xlib.display.Display(desk.display)
    try:
        yield d
    finally:
        d.close()


def needs(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed on this host")


# ---------------------------------------------------------------------- windows


def find_window(d: Xlib.display.Display, title: str) -> Any:
    """The viewable top-level client window named ``title``, or None."""
    stack = [d.screen().root]
    while stack:
        win = stack.pop()
        try:
            if win.get_wm_name() == title and win.get_attributes().map_state == X.IsViewable:
                return win
            stack.extend(win.query_tree().children)
        except Exception:  # noqa: BLE001 - windows come and go
            continue
    return None


def rect(d: Xlib.display.Display, win: Any) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` of a window in screen pixels."""
    g = win.get_geometry()
    pos = win.translate_coords(d.screen().root, 0, 0)
    return (-pos.x, -pos.y, g.width, g.height)


def wait_window(d: Xlib.display.Display, title: str) -> tuple[Any, tuple[int, int, int, int]]:
    """A window once mapped, managed by the window manager if one runs, and in place."""
    wm_state = d.intern_atom("WM_STATE")
    managed = bool(
        d.screen().root.get_full_property(d.intern_atom("_NET_SUPPORTING_WM_CHECK"), Xatom.WINDOW)
    )
    seen: list[tuple[int, int, int, int]] = []

    def placed() -> tuple[Any, tuple[int, int, int, int]] | None:
        win = find_window(d, title)
        if win is None or (managed and win.get_full_property(wm_state, wm_state) is None):
            return None
        seen.append(rect(d, win))
        return (win, seen[-1]) if len(seen) > 1 and seen[-1] == seen[-2] else None

    return eventually(placed, what=f"window {title!r} mapped and placed")


def start_terminal(
    desk: Desk, d: Xlib.display.Display, title: str, command: str, geometry: str = "60x12+20+20"
) -> tuple[int, int, int, int]:
    """An xterm (no border, UTF-8) running ``command``; returns its rectangle once mapped."""
    needs("xterm")
    desk.start(
        "xterm",
        "-u8",
        "-b",
        "0",
        "-T",
        title,
        "-geometry",
        geometry,
        "-e",
        "sh",
        "-c",
        command,
        env=UTF8,
    )
    return wait_window(d, title)[1]


def centre(r: tuple[int, int, int, int]) -> tuple[int, int]:
    return (r[0] + r[2] // 2, r[1] + r[3] // 2)


def region(frame: Frame, r: tuple[int, int, int, int]) -> bytes:
    x0, y0, w, h = r
    rows = (frame.bgra[((y0 + y) * frame.width + x0) * 4 :][: w * 4] for y in range(h))
    return b"".join(bytes(row) for row in rows)


def uniform(pixels: bytes) -> bool:
    return pixels == pixels[:4] * (len(pixels) // 4)


def active_window(d: Xlib.display.Display) -> int | None:
    prop = d.screen().root.get_full_property(d.intern_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW)
    return int(prop.value[0]) if prop and len(prop.value) else None


def primary_selection(d: Xlib.display.Display, timeout_s: float = 2.0) -> bytes | None:
    """The PRIMARY selection as UTF-8, asked of its owner like a paste would; None if none."""
    win = d.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    try:
        prop = d.intern_atom("ORCHESTRATOR_TEST_SELECTION")
        win.convert_selection(Xatom.PRIMARY, d.intern_atom("UTF8_STRING"), prop, X.CurrentTime)
        d.flush()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while d.pending_events():
                ev = d.next_event()
                if ev.type == X.SelectionNotify and ev.requestor == win:
                    if ev.property == X.NONE:
                        return None
                    value = win.get_full_property(prop, X.AnyPropertyType).value
                    return value if isinstance(value, bytes) else str(value).encode()
            time.sleep(0.01)
        raise AssertionError("the selection owner did not answer")
    finally:
        win.destroy()
        d.sync()


def ok(result: a.ActionResult) -> a.ActionResult:
    assert result.ok, result.error
    return result


def file_is(desk: Desk, path: str, expected: bytes) -> Callable[[], bool]:
    def probe() -> bool:
        got = desk.read(path)
        assert got == expected, got
        return True

    return probe


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
    """A window that records the input events it receives (run from here, as an X client)."""

    def __init__(self, display: str, r: tuple[int, int, int, int], colour: int) -> None:
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
        ready = eventually(
            lambda: next((e for e in self.events if e["type"] == "ready"), None),
            what="recorder window ready",
        )
        self.window = ready["window"]
        self.events.clear()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.events.append(json.loads(line))

    def of(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["type"] in types]

    def wait_for(self, n: int, *types: str) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            events = self.of(*types)
            return events if len(events) >= n else None

        return eventually(enough, what=f"{n} {'/'.join(types)} events")

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(5)


@pytest.fixture
def recorder(desk: Desk) -> Iterator[Recorder]:
    rec = Recorder(desk.display, (100, 100, 400, 300), colour=0xCC3311)
    try:
        yield rec
    finally:
        rec.close()


# ---------------------------------------------------------------------- screen


def test_grab_returns_the_screen_pixels(x: X11Session, recorder: Recorder) -> None:
    assert x.size == (W, H)
    frame = x.grab()
    assert (frame.width, frame.height) == (W, H)
    assert len(frame.bgra) == W * H * 4
    assert frame.pixel(300, 250) == (0xCC, 0x33, 0x11)  # inside the recorder window
    assert frame.timestamp <= time.monotonic()
    assert x.grab_method in ("MIT-SHM", "GetImage")


# ---------------------------------------------------------------------- typing


def test_type_unicode_text_into_a_terminal(x: X11Session, desk: Desk, observer: Any) -> None:
    out = desk.path("typed.txt")
    r = start_terminal(desk, observer, "typing", f"cat > {out}")
    ok(x.perform(a.Click(x=centre(r)[0], y=centre(r)[1])))
    text = (
        "héllo wörld € → 日本 ÀÉÎõü ß ½ 😀\n"
        "ASCII: The Quick Fox! @#$%^&*()_+{}|:\"<>?~`-=[]\\;',./\n"
    )
    ok(x.perform(a.TypeText(text=text)))
    eventually(file_is(desk, out, text.encode()), what="typed text in the file")


def test_typing_more_distinct_characters_than_spare_keycodes(
    x: X11Session, desk: Desk, observer: Any
) -> None:
    out = desk.path("many.txt")
    r = start_terminal(desk, observer, "many", f"cat > {out}")
    ok(x.perform(a.Click(x=centre(r)[0], y=centre(r)[1])))
    count = x.spare_keycodes + 12
    text = "".join(chr(0x4E00 + i) for i in range(count)) + "ĀāĂă" + chr(0x4E00) + "\n"
    ok(x.perform(a.TypeText(text=text)))
    eventually(file_is(desk, out, text.encode()), what="typed text in the file")


def test_a_key_combo_acts_on_the_app(x: X11Session, desk: Desk, observer: Any) -> None:
    out = desk.path("combo.txt")
    r = start_terminal(desk, observer, "combo", f"cat > {out}")
    ok(x.perform(a.Click(x=centre(r)[0], y=centre(r)[1])))
    ok(x.perform(a.TypeText(text="junk that ctrl+u erases")))
    ok(x.perform(a.KeyPress(keys=["ctrl+u"])))
    ok(x.perform(a.TypeText(text="first")))
    ok(x.perform(a.KeyPress(keys=["Return"])))
    ok(x.perform(a.TypeText(text="more junk")))
    ok(x.perform(a.KeyPress(keys=["CTRL", "U"])))  # OpenAI's spelling
    ok(x.perform(a.TypeText(text="second")))
    ok(x.perform(a.KeyPress(keys=["ENTER"])))
    eventually(file_is(desk, out, b"first\nsecond\n"), what="the edited lines in the file")


def test_caps_lock_and_a_held_shift_do_not_corrupt_typing(
    x: X11Session, desk: Desk, observer: Any
) -> None:
    out = desk.path("caps.txt")
    r = start_terminal(desk, observer, "caps", f"cat > {out}")
    ok(x.perform(a.Click(x=centre(r)[0], y=centre(r)[1])))
    root = observer.screen().root
    ok(x.perform(a.KeyPress(keys=["Caps_Lock"])))
    assert root.query_pointer().mask & X.LockMask
    ok(x.perform(a.TypeText(text="abc Ab\n")))
    assert root.query_pointer().mask & X.LockMask, "caps lock must be left as it was"
    ok(x.perform(a.KeyPress(keys=["Caps_Lock"])))
    assert not root.query_pointer().mask & X.LockMask

    shift = observer.keysym_to_keycode(0xFFE1)
    xtest.fake_input(observer, X.KeyPress, shift)  # someone else holds shift
    observer.sync()
    try:
        ok(x.perform(a.TypeText(text="def\n")))
        keys = observer.query_keymap()
        assert keys[shift // 8] >> (shift % 8) & 1, "the held shift must be pressed again"
    finally:
        xtest.fake_input(observer, X.KeyRelease, shift)
        observer.sync()
    eventually(file_is(desk, out, b"abc Ab\ndef\n"), what="typed text in the file")


def test_control_characters_are_refused_before_typing_anything(
    x: X11Session, recorder: Recorder
) -> None:
    result = x.perform(a.TypeText(text="ab\x07c"))
    assert not result.ok
    assert "U+0007" in (result.error or "")
    ok(x.perform(a.TypeText(text="z")))
    events = recorder.wait_for(2, "key_press", "key_release")
    assert [e["keysym"] for e in events] == [ord("z"), ord("z")]


def test_close_unmaps_the_keycodes_lent_to_characters(desk: Desk, observer: Any) -> None:
    with X11Session(desk.display) as session:
        ok(session.perform(a.TypeText(text="ж")))
        observer.sync()
    first = observer.display.info.min_keycode
    rows = observer.get_keyboard_mapping(first, observer.display.info.max_keycode - first + 1)
    assert not any(0x01000436 in row for row in rows)


# ---------------------------------------------------------------------- keys


def test_keypress_chord_presses_in_order_and_releases_in_reverse(
    x: X11Session, recorder: Recorder
) -> None:
    ok(x.perform(a.KeyPress(keys=["ctrl", "shift+t"])))
    events = recorder.wait_for(6, "key_press", "key_release")
    assert [(e["type"], e["keysym"]) for e in events] == [
        ("key_press", 0xFFE3),
        ("key_press", 0xFFE1),
        ("key_press", ord("t")),
        ("key_release", ord("t")),
        ("key_release", 0xFFE1),
        ("key_release", 0xFFE3),
    ]
    assert events[2]["state"] & (X.ControlMask | X.ShiftMask) == X.ControlMask | X.ShiftMask


def test_keypress_of_a_shifted_character_adds_shift(x: X11Session, recorder: Recorder) -> None:
    ok(x.perform(a.KeyPress(keys=["!"])))
    events = recorder.wait_for(4, "key_press", "key_release")
    assert [e["keysym"] for e in events] == [0xFFE1, ord("1"), ord("1"), 0xFFE1]


def test_hold_key_holds_for_the_duration(x: X11Session, recorder: Recorder) -> None:
    ok(x.perform(a.HoldKey(key="shift", duration_s=0.3)))
    press, release = recorder.wait_for(2, "key_press", "key_release")
    assert (press["type"], release["type"]) == ("key_press", "key_release")
    assert release["time"] - press["time"] >= 290  # X server milliseconds


def test_unknown_keys_fail_without_pressing_anything(x: X11Session, recorder: Recorder) -> None:
    result = x.perform(a.KeyPress(keys=["ctrl", "foo"]))
    assert not result.ok
    assert result.error == "unknown key 'foo'; use xdotool names such as ctrl, shift, Return, a"
    result = x.perform(a.Click(x=200, y=200, keys=["hyperdrive"]))
    assert not result.ok and "unknown key 'hyperdrive'" in (result.error or "")
    ok(x.perform(a.KeyPress(keys=["a"])))
    events = recorder.wait_for(2, "key_press", "key_release", "press")
    assert [e["type"] for e in events] == ["key_press", "key_release"]


# ---------------------------------------------------------------------- mouse


@pytest.mark.parametrize(
    ("button", "number"),
    [("left", 1), ("middle", 2), ("right", 3), ("back", 8), ("forward", 9)],
)
def test_every_button_reaches_the_app_where_clicked(
    x: X11Session, recorder: Recorder, button: a.Button, number: int
) -> None:
    result = ok(x.perform(a.Click(x=150, y=170, button=button)))
    assert result.cursor == a.Point(x=150, y=170)
    press, release = recorder.wait_for(2, "press", "release")
    assert (press["type"], press["detail"], press["x"], press["y"]) == ("press", number, 50, 70)
    assert (release["type"], release["detail"]) == ("release", number)


def test_double_and_triple_clicks(x: X11Session, recorder: Recorder) -> None:
    ok(x.perform(a.DoubleClick(x=200, y=200)))
    assert [e["type"] for e in recorder.wait_for(4, "press", "release")] == ["press", "release"] * 2
    recorder.events.clear()
    ok(x.perform(a.TripleClick(x=200, y=200, button="right")))
    events = recorder.wait_for(6, "press", "release")
    assert [(e["type"], e["detail"]) for e in events] == [("press", 3), ("release", 3)] * 3


def test_modifiers_are_held_during_a_click_and_released_after(
    x: X11Session, recorder: Recorder, observer: Any
) -> None:
    ok(x.perform(a.Click(x=200, y=200, keys=["ctrl", "shift"])))
    press = recorder.wait_for(1, "press")[0]
    assert press["state"] & (X.ControlMask | X.ShiftMask) == X.ControlMask | X.ShiftMask
    releases = recorder.wait_for(2, "key_release")
    assert [e["keysym"] for e in releases] == [0xFFE1, 0xFFE3]
    assert not any(observer.query_keymap()), "no key may stay down"


def test_mouse_down_move_and_up(x: X11Session, recorder: Recorder) -> None:
    ok(x.perform(a.MouseDown(x=150, y=150)))
    ok(x.perform(a.Move(x=250, y=180)))
    result = ok(x.perform(a.MouseUp()))  # at the current position
    assert result.cursor == a.Point(x=250, y=180)
    press = recorder.wait_for(1, "press")[0]
    release = recorder.wait_for(1, "release")[0]
    assert (press["x"], press["y"]) == (50, 50)
    assert (release["x"], release["y"]) == (150, 80)
    motion = recorder.of("motion")[-1]
    assert (motion["x"], motion["y"]) == (150, 80) and motion["state"] & X.Button1Mask


def test_drag_passes_through_every_point_with_the_button_down(
    x: X11Session, recorder: Recorder
) -> None:
    path = [
        a.Point(x=120, y=120),
        a.Point(x=200, y=130),
        a.Point(x=260, y=220),
        a.Point(x=300, y=300),
    ]
    ok(x.perform(a.Drag(path=path, button="middle")))
    release = recorder.wait_for(1, "release")[0]
    press = recorder.of("press")[0]
    assert (press["detail"], press["x"], press["y"]) == (2, 20, 20)
    assert (release["detail"], release["x"], release["y"]) == (2, 200, 200)
    held = [(e["x"], e["y"]) for e in recorder.of("motion") if e["state"] & X.Button2Mask]
    assert held == [(100, 30), (160, 120), (200, 200)]


def test_scroll_sends_one_wheel_click_per_notch(x: X11Session, recorder: Recorder) -> None:
    ok(x.perform(a.Scroll(x=200, y=200, scroll_y=2, scroll_x=-3)))
    presses = recorder.wait_for(5, "press")
    assert [e["detail"] for e in presses] == [5, 5, 6, 6, 6]
    recorder.events.clear()
    ok(x.perform(a.Scroll(x=200, y=200, scroll_y=-1, scroll_x=1)))
    assert [e["detail"] for e in recorder.wait_for(2, "press")] == [4, 7]


def test_scroll_moves_terminal_content(x: X11Session, desk: Desk, observer: Any) -> None:
    r = start_terminal(desk, observer, "scroll", "seq 1 500; exec sleep 600", "60x20+20+20")

    def settled() -> bytes | None:
        first = region(x.grab(), r)
        time.sleep(0.05)
        second = region(x.grab(), r)
        return second if first == second and not uniform(second) else None

    before = eventually(settled, what="the terminal showing its output")
    ok(x.perform(a.Scroll(x=centre(r)[0], y=centre(r)[1], scroll_y=-3)))
    eventually(lambda: region(x.grab(), r) != before, what="the content scrolling up")
    ok(x.perform(a.Scroll(x=centre(r)[0], y=centre(r)[1], scroll_y=3)))
    eventually(lambda: region(x.grab(), r) == before, what="the content scrolling back")


def test_drag_selects_text_and_middle_click_pastes_it(
    x: X11Session, desk: Desk, observer: Any
) -> None:
    out = desk.path("paste.txt")
    r = start_terminal(desk, observer, "paste", f"cat > {out}", "40x10+20+20")
    cell_w, cell_h = r[2] // 40, r[3] // 10
    # focus without a click: a click just before the drag would make it a double click
    find_window(observer, "paste").set_input_focus(X.RevertToParent, X.CurrentTime)
    observer.sync()
    ok(x.perform(a.TypeText(text="hello selection")))  # echoed on row 0, not yet sent
    row0 = r[1] + cell_h // 2

    def echoed() -> bool:  # the last character drawn, and the line still
        last_cell = (r[0] + 14 * cell_w, r[1], cell_w, cell_h)
        line = (r[0], r[1], r[2], cell_h)
        before = region(x.grab(), line)
        time.sleep(0.05)
        return not uniform(region(x.grab(), last_cell)) and region(x.grab(), line) == before

    eventually(echoed, what="the typed text echoed")
    # from the first character to past the end of the line: the line and its newline
    ok(x.perform(a.Drag(path=[a.Point(x=r[0] + 1, y=row0), a.Point(x=r[0] + 30 * cell_w, y=row0)])))

    # xterm reads the pointer while it extends a selection: let it finish before moving on
    def selected() -> bool:
        got = primary_selection(observer)
        assert got == b"hello selection\n", got
        return True

    eventually(selected, what="the line selected")
    ok(x.perform(a.Click(x=centre(r)[0], y=centre(r)[1], button="middle")))
    ok(x.perform(a.TypeText(text="\n")))
    expected = b"hello selectionhello selection\n\n"
    eventually(file_is(desk, out, expected), what="the pasted selection")


def test_double_and_triple_clicks_select_a_word_and_a_line(
    x: X11Session, desk: Desk, observer: Any
) -> None:
    # two terminals: clicks on one do not count towards a multi-click on the other
    line = "echo hello wide world; exec sleep 600"
    first = start_terminal(desk, observer, "words", line, "40x10+20+20")
    second = start_terminal(desk, observer, "lines", line, "40x10+400+20")
    cell_w, cell_h = first[2] // 40, first[3] // 10
    for r in (first, second):

        def drawn(r: tuple[int, int, int, int] = r) -> bool:  # the last character is there
            return not uniform(region(x.grab(), (r[0] + 15 * cell_w, r[1], cell_w, cell_h)))

        eventually(drawn, what="the line drawn")

    def selection_is(expected: bytes) -> Callable[[], bool]:
        def probe() -> bool:
            got = primary_selection(observer)
            assert got == expected, got
            return True

        return probe

    row0 = first[1] + cell_h // 2
    ok(x.perform(a.DoubleClick(x=first[0] + 7 * cell_w + cell_w // 2, y=row0)))  # on "wide"
    eventually(selection_is(b"wide"), what="the word selected")
    ok(x.perform(a.TripleClick(x=second[0] + 2 * cell_w, y=second[1] + cell_h // 2)))
    eventually(selection_is(b"hello wide world\n"), what="the line selected")


def test_click_focuses_the_window_under_it(x: X11Session, desk: Desk, observer: Any) -> None:
    needs("openbox")
    left = start_terminal(desk, observer, "left", "exec sleep 600", "30x8+20+300")
    right = start_terminal(desk, observer, "right", "exec sleep 600", "30x8+500+300")
    left_win = find_window(observer, "left").id
    right_win = find_window(observer, "right").id
    for win, r in [(left_win, left), (right_win, right), (left_win, left)]:
        ok(x.perform(a.Click(x=centre(r)[0], y=centre(r)[1])))

        def active(win: int = win) -> bool:
            return active_window(observer) == win

        eventually(active, what=f"window {win:#x} active")


# ---------------------------------------------------------------------- coordinates


def test_cursor_position_and_move(x: X11Session, observer: Any) -> None:
    assert ok(x.perform(a.Move(x=123, y=45))).cursor == a.Point(x=123, y=45)
    assert ok(x.perform(a.CursorPosition())).cursor == a.Point(x=123, y=45)
    assert ok(x.perform(a.TakeScreenshot())).cursor == a.Point(x=123, y=45)
    p = observer.screen().root.query_pointer()
    assert (p.root_x, p.root_y) == (123, 45)
    assert x.cursor() == (123, 45)


def test_scaled_coordinates_map_to_the_screen_and_back(x: X11Session, observer: Any) -> None:
    scaling = Scaling.fit(W, H, 1024, 768)  # 1024x640
    result = ok(x.perform(a.Move(x=1023, y=639), scaling))
    assert result.cursor == a.Point(x=1023, y=639)
    p = observer.screen().root.query_pointer()
    assert (p.root_x, p.root_y) == scaling.to_screen(1023, 639) == (1279, 799)
    ok(x.perform(a.Move(x=100, y=50), scaling))
    p = observer.screen().root.query_pointer()
    assert (p.root_x, p.root_y) == (125, 63)


def test_out_of_screen_coordinates_fail_without_acting(
    x: X11Session, recorder: Recorder, observer: Any
) -> None:
    ok(x.perform(a.Move(x=10, y=10)))
    result = x.perform(a.Click(x=1500, y=10))
    assert not result.ok
    assert result.error == "x=1500 is outside the screen (0..1279)"
    result = x.perform(a.Move(x=5, y=-1))
    assert result.error == "y=-1 is outside the screen (0..799)"
    result = x.perform(a.Click(x=1100, y=10), Scaling.fit(W, H, 1024, 768))
    assert result.error == "x=1100 is outside the screen (0..1023)"
    path = [a.Point(x=150, y=150), a.Point(x=200, y=200), a.Point(x=9000, y=200)]
    result = x.perform(a.Drag(path=path))
    assert result.error == "path[2]: x=9000 is outside the screen (0..1279)"
    result = x.perform(a.MouseDown(x=150))
    assert not result.ok and "both x and y" in (result.error or "")
    result = x.perform(a.Move(x=10, y=10), Scaling(1920, 1080, 1280, 720))
    assert not result.ok and "1920x1080 screen but the screen is 1280x800" in (result.error or "")
    assert x.cursor() == (10, 10), "a refused action must not move the pointer"
    ok(x.perform(a.Click(x=150, y=150)))  # a marker: nothing came before it
    assert recorder.wait_for(1, "press")[0]["x"] == 50
    assert len(recorder.of("press")) == 1


def test_shell_and_wait(x: X11Session) -> None:
    result = x.perform(a.Shell(command="true"))
    assert not result.ok and "shell" in (result.error or "")
    t = time.monotonic()
    ok(x.perform(a.Wait(duration_s=0.2)))
    assert time.monotonic() - t >= 0.2


# ---------------------------------------------------------------------- failures


def test_screenshots_share_memory_across_an_ipc_namespace_boundary() -> None:
    # as with a container's Xvfb: MIT-SHM passes a memfd over the X socket, no SysV IPC
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "--ipc", "true"], capture_output=True).returncode
    ):
        pytest.skip("cannot create an IPC namespace here (unshare --ipc)")
    with host_xvfb((320, 200), prefix=("unshare", "--ipc")) as (name, _), X11Session(name) as s:
        frame = s.grab()
        assert frame.size == (320, 200)
        assert s.grab_method == "MIT-SHM"


def test_screenshots_fall_back_to_get_image_without_mit_shm() -> None:
    with host_xvfb((320, 200), args=("-extension", "MIT-SHM")) as (name, _):
        with X11Session(name) as s:
            assert s.grab().size == (320, 200)
            assert s.grab_method == "GetImage"


def test_a_missing_display_raises_display_error() -> None:
    with pytest.raises(DisplayError, match="cannot open X display ':4242'"):
        X11Session(":4242")


def test_a_lost_display_raises_display_error() -> None:
    with host_xvfb((320, 200)) as (name, proc):
        session = X11Session(name)
        ok(session.perform(a.Move(x=1, y=1)))
        proc.terminate()
        proc.wait(10)
        with pytest.raises(DisplayError):
            session.perform(a.Move(x=2, y=2))
        with pytest.raises(DisplayError):
            session.grab()
        session.close()
        with pytest.raises(DisplayError, match="closed"):
            session.perform(a.Move(x=2, y=2))
