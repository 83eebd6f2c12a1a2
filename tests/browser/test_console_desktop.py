"""A live desktop in a real browser (issue 13, items 3, 5 and 7): the focused desktop streams
through the API's relay (noVNC's RFB in the page, the bytes through the agent's actor);
clicks from a view-only page do not reach it; a person takes over (the agent's task pauses),
clicks and types into an xterm on it, hands back with a note, and the agent finishes with
what the person did. What reached the desktop is checked inside the desktop itself
(``xdotool`` and files, through ``docker exec``), not in the page.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import Console, until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

XTERM = (
    "xterm -geometry 80x10+10+10 >/dev/null 2>&1 & "
    "xdotool search --sync --onlyvisible --class xterm windowfocus --sync >/dev/null"
)
TYPED = "typed-by-a-person"
NOTE = "I wrote the file for you: carry on"


async def pointer(console: Console, agent_path: str) -> tuple[int, int]:
    """Where the desktop's pointer is (``xdotool getmouselocation``, inside the desktop)."""
    out = await console.desk(agent_path, "xdotool getmouselocation")
    found = re.search(r"x:(\d+) y:(\d+)", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def near(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two desktop points are the same but for the page's scaling (a pixel or two)."""
    return abs(a[0] - b[0]) <= 2 and abs(a[1] - b[1]) <= 2


async def click_desktop(page: Page, live: Locator, x: int, y: int) -> None:
    """Click the live desktop's canvas where the desktop's point (x, y) is shown."""
    canvas = live.locator("canvas")
    await expect(canvas).to_be_visible()
    box = await canvas.bounding_box()
    assert box is not None
    width, height = await canvas.evaluate("(c) => [c.width, c.height]")
    assert (width, height) == (1024, 768), (width, height)  # the desktop's framebuffer
    await page.mouse.click(
        box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height
    )


async def focus_live(console: Console, page: Page, agent_id: str) -> Locator:
    await console.testid(page, f"desktop-tile-{agent_id}").click()
    live = console.testid(page, "live-desktop")
    await expect(live).to_have_attribute("data-agent-id", agent_id)
    await expect(live).to_have_attribute("data-state", "connected", timeout=30_000)
    return live


async def canvas_painted(live: Locator) -> bool:
    """Whether the canvas shows something other than one flat colour (a frame arrived)."""
    colours: int = await live.locator("canvas").evaluate(
        """(c) => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length && seen.size < 8; i += 4 * 97) {
                seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            }
            return seen.size;
        }"""
    )
    return colours > 1


async def test_a_view_only_desktop_is_live_and_ignores_clicks(console: Console) -> None:
    agent = await console.create_agent("viewed")
    page = await console.open()
    live = await focus_live(console, page, agent["id"])
    await expect(live).to_have_attribute("data-mode", "view")
    await until(lambda: canvas_painted(live), timeout_s=15, what="a frame on the canvas")
    await console.shot(page, "view-only")
    # The relay goes through the API's own origin, never a loopback link of the desktop.
    urls = await page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
    assert not [u for u in urls if "vnc.html" in u or "websockify" in u], urls

    await console.desk(agent["path"], "xdotool mousemove 5 5")
    await click_desktop(page, live, 400, 300)
    await page.mouse.move(10, 10)
    await console.desk(agent["path"], "sleep 0.5")  # the click, had it been sent, has landed
    assert await pointer(console, agent["path"]) == (5, 5)


async def test_take_over_type_hand_back_and_the_agent_finishes(console: Console) -> None:
    agent = await console.create_agent("steered")
    await console.desk(agent["path"], XTERM)
    script = {
        "steps": [
            {"type": "shell", "command": "sleep 6; echo warmed up"},
            {
                "check": {
                    "command": (
                        "for i in $(seq 300); do [ -s ~/from-person.txt ] && break; sleep 0.2; "
                        "done; cat ~/from-person.txt"
                    ),
                    "expect": TYPED,
                    "timeout_s": 90,
                }
            },
        ],
        "result": "{{ outputs[-1] }}",
    }
    page = await console.open()
    watcher = await console.open()  # the same tenant, another session: never holds the lease
    live = await focus_live(console, page, agent["id"])
    task = await console.assign(agent["id"], "wait for a person's file", script)
    await console.task_in(task["id"], {"running"})

    await console.testid(page, "takeover").click()
    await expect(console.testid(page, "lease-holder")).to_have_attribute("data-mine", "1")
    await expect(live).to_have_attribute("data-mode", "control")
    await expect(live).to_have_attribute("data-state", "connected", timeout=30_000)
    paused = await console.task_in(task["id"], {"paused"}, timeout_s=30)
    assert paused["state"] == "paused"
    await console.shot(page, "taken-over")

    # Another session's page sees the lease and cannot steer.
    other_live = await focus_live(console, watcher, agent["id"])
    await expect(console.testid(watcher, "lease-holder")).to_have_attribute(
        "data-mine", "0", timeout=10_000
    )
    await expect(console.testid(watcher, "takeover")).to_be_disabled()
    await console.desk(agent["path"], "xdotool mousemove 700 600")
    await click_desktop(watcher, other_live, 650, 500)
    await console.desk(agent["path"], "sleep 0.5")
    assert await pointer(console, agent["path"]) == (700, 600)
    await console.shot(watcher, "watcher-while-leased")

    # The holder's click lands where it was aimed; typing goes to the xterm it focused.
    await click_desktop(page, live, 300, 60)

    seen: list[tuple[int, int]] = []

    async def at_click() -> bool:
        seen.append(await pointer(console, agent["path"]))
        return near(seen[-1], (300, 60))

    try:
        await until(at_click, timeout_s=5, what="the pointer at the click (300, 60)")
    except AssertionError as e:
        raise AssertionError(f"{e}; the pointer was at {seen[-1:]}") from None
    await page.keyboard.type(f"echo {TYPED} > ~/from-person.txt")
    await page.keyboard.press("Enter")

    async def typed() -> bool:
        out = await console.desk(agent["path"], "cat ~/from-person.txt 2>/dev/null || true")
        return out.strip() == TYPED

    await until(typed, timeout_s=10, what="the typed command ran in the xterm")
    await console.shot(page, "typed")
    # Still paused: the person holds the desktop.
    assert (await console.task(task["id"]))["state"] == "paused"

    await console.testid(page, "handback-note").fill(NOTE)
    await console.testid(page, "handback-submit").click()
    await expect(console.testid(page, "lease-holder")).to_have_attribute("data-mine", "0")
    await expect(live).to_have_attribute("data-mode", "view")
    done = await console.task_in(task["id"], {"succeeded", "failed"}, timeout_s=60)
    assert (done["state"], done["result"]) == ("succeeded", TYPED), done
    await console.shot(page, "handed-back-and-done")
    # The pause and the note are on the task's timeline.
    async with console.http() as h:
        r = await h.get(f"/v1/tasks/{task['id']}/events", params={"limit": 1000})
    events = r.json()["events"]
    states = [e["data"].get("state") for e in events if e["kind"] == "task"]
    assert "paused" in states, states
    assert NOTE in json.dumps(events), events
    assert "taken over by session:" in json.dumps(events), events
