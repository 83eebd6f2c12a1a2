"""The desktop demo: start a desktop, open a terminal and the browser with GUI actions,
type and run a shell command, and save a screenshot. Every step is timed and printed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import actions as a
from .desktop import Desktop, DesktopSpec

__all__ = ["run_demo"]


async def _wait_for_window(desk: Desktop, wm_class: str, timeout_s: float = 30.0) -> str:
    """Wait until a visible window of ``wm_class`` exists; return its id."""
    deadline = time.monotonic() + timeout_s
    while True:
        res = await desk.run(f"xdotool search --onlyvisible --class {wm_class}", timeout=5)
        if res.ok and res.stdout.strip():
            return res.stdout.split()[0]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no {wm_class} window appeared within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def run_demo(out_dir: Path, *, say: Callable[[str], None] = print) -> Path:
    """Run the demo and return the screenshot's path."""
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)

    async def step(name: str, coro: Awaitable[object]) -> object:
        t0 = time.monotonic()
        result = await coro
        say(f"  {name:<44} {1000 * (time.monotonic() - t0):8.1f} ms")
        return result

    say("desktop demo")
    desk = await step("start a desktop (hardened container)", Desktop.start(DesktopSpec()))
    assert isinstance(desk, Desktop)
    async with desk:
        await step("open a terminal (ctrl+alt+t)", desk.act(a.KeyPress(keys=["ctrl+alt+t"])))
        await step("  ...its window is up", _wait_for_window(desk, "xterm"))
        text = "echo 'hello from the agent' | tee ~/hello.txt; uname -sr\n"
        await step("type a command into it", desk.act(a.TypeText(text=text)))
        await step("open the browser (ctrl+alt+b)", desk.act(a.KeyPress(keys=["ctrl+alt+b"])))
        await step("  ...its window is up", _wait_for_window(desk, "firefox", timeout_s=60))
        res = await desk.run("cat ~/hello.txt && id -un", timeout=10)
        say(f"  shell: exit {res.exit_code}, stdout {res.stdout.strip()!r}")
        if "hello from the agent" not in res.stdout:
            raise RuntimeError(f"the typed command did not run in the terminal: {res}")
        await step("wait for the screen to settle", desk.wait_until_settled(timeout_s=10))
        shot = await desk.screenshot("png")
        assert isinstance(shot.data, bytes)
        path = out_dir / "demo.png"
        await asyncio.to_thread(path.write_bytes, shot.data)
        say(f"  screenshot {shot.width}x{shot.height} saved to {path}")
    return path
