"""The team on one page, in a real browser (issue 13, items 4 and 7): the tree of a running
workflow fills in from the tenant's live stream (no reload), its desktops and lanes appear,
a question is answered in the inbox, and the replay scrubber shows a past moment.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Console, until

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _worker(i: int) -> dict[str, Any]:
    steps = [{"type": "shell", "command": f"sleep 1; echo part {i}.{n}"} for n in range(3)]
    return {
        "id": f"w{i}",
        "role": f"worker {i}",
        "description": f"part {i}",
        "script": {"steps": steps},
    }


WORKFLOW = {
    "subtasks": [_worker(1), _worker(2)],
    "result": "done: {{ results.w1 }} / {{ results.w2 }}",
}


def _descendants(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for child in tree["children"]:
        out.append(child["agent"])
        out.extend(_descendants(child))
    return out


async def _children(console: Console, agent_id: str) -> list[dict[str, Any]]:
    async with console.http() as h:
        r = await h.get(f"/v1/agents/{agent_id}/tree")
    assert r.status_code == 200, r.text
    return _descendants(r.json())


async def test_the_tree_of_a_running_workflow_fills_in_live(console: Console) -> None:
    page = await console.open()
    boss = await console.create_agent("boss")
    tree = console.testid(page, "agent-tree")
    await expect(console.testid(tree, f"agent-node-{boss['id']}")).to_be_visible()
    await console.shot(page, "boss-only")

    task = await console.assign(boss["id"], "team work", WORKFLOW)
    await expect(console.testid(page, f"task-row-{task['id']}")).to_be_visible()

    async def two_children() -> list[dict[str, Any]] | None:
        kids = await _children(console, boss["id"])
        return kids if len(kids) == 2 else None

    kids = await until(two_children, timeout_s=90, what="the boss hires two workers")
    for kid in kids:  # each appears in the tree (from the stream: the page is not reloaded)
        node = console.testid(tree, f"agent-node-{kid['id']}")
        await expect(node).to_be_visible(timeout=30_000)
        await expect(node).to_have_attribute("data-status", _any_status())
        await expect(console.testid(page, f"desktop-tile-{kid['id']}")).to_be_visible()
    await console.shot(page, "workers-hired")
    # Someone is busy while the work runs.
    await expect(
        page.locator("[data-testid^='agent-node-'][data-status='busy']").first
    ).to_be_attached(timeout=30_000)
    await console.shot(page, "working")

    done = await console.task_in(task["id"], {"succeeded", "failed"}, timeout_s=120)
    assert done["state"] == "succeeded", done.get("error")
    await expect(console.testid(page, f"task-row-{task['id']}")).to_have_attribute(
        "data-state", "succeeded", timeout=10_000
    )
    # Each agent's work on one clock.
    await console.tab(page, "swimlanes")
    lanes = console.testid(page, "swimlanes")
    await expect(lanes).to_be_visible()
    for agent_id in (boss["id"], *(k["id"] for k in kids)):
        await expect(console.testid(lanes, f"lane-{agent_id}")).to_be_visible()
    await console.shot(page, "done-with-swimlanes")
    # The task's detail: its result and subtasks.
    await console.tab(page, "tasks")
    await console.testid(page, f"task-row-{task['id']}").click()
    detail = console.testid(page, "task-detail")
    await expect(detail).to_contain_text("done: part 1.2 / part 2.2")
    await console.shot(page, "task-detail")
    # Stats and capacity: this machine's node, with desktops in use.
    await console.tab(page, "stats")
    await expect(page.locator("[data-testid^='capacity-node-']").first).to_be_visible()
    await console.shot(page, "stats")


def _any_status() -> Any:
    import re

    return re.compile(r"^(starting|idle|busy|stopped|failed)$")


async def test_a_question_is_answered_in_the_inbox(console: Console) -> None:
    page = await console.open()
    agent = await console.create_agent("asker")
    script = {
        "steps": [
            {"ask": "Which colour should the report be?"},
            {"type": "shell", "command": "echo {{ outputs[-1] | q }} > colour.txt; cat colour.txt"},
        ]
    }
    task = await console.assign(agent["id"], "ask and write", script)
    await console.tab(page, "inbox")
    inbox = console.testid(page, "inbox")
    item = console.testid(inbox, f"inbox-item-{task['id']}")
    await expect(item).to_contain_text("Which colour should the report be?", timeout=60_000)
    await console.shot(page, "question-in-inbox")
    await console.testid(page, f"inbox-answer-{task['id']}").fill("ultramarine")
    await console.testid(page, f"inbox-send-{task['id']}").click()
    done = await console.task_in(task["id"], {"succeeded", "failed"}, timeout_s=60)
    assert (done["state"], done["result"]) == ("succeeded", "ultramarine"), done
    await expect(item).to_have_count(0, timeout=10_000)  # answered: gone from the inbox
    await console.shot(page, "answered")
    out = await console.desk(agent["path"], "cat ~/colour.txt")
    assert out.strip() == "ultramarine"


async def _scrub_to(page: Page, console: Console, at: float) -> None:
    """Move the scrubber to the moment ``at`` (unix seconds) as a person drags it."""
    scrubber = console.testid(page, "replay-scrubber")
    lo = float(await scrubber.get_attribute("min") or 0)
    hi = float(await scrubber.get_attribute("max") or 0)
    assert lo < hi, (lo, hi)
    # The range is in unix seconds (or ms); pick the value nearest to ``at`` in its unit.
    value = at if lo < at * 10 else at * 1000
    value = min(max(value, lo), hi)
    await scrubber.fill(str(int(value)))


async def test_the_replay_scrubber_shows_a_past_moment(console: Console) -> None:
    page = await console.open()
    agent = await console.create_agent("painter")
    # A distinctive screen: an xterm with a big marker line, then closed again.
    marker = "REPLAY-MARKER-7"
    script = {
        "steps": [
            {
                "type": "shell",
                "command": (
                    f"xterm -geometry 60x5+40+40 -fa Monospace -fs 28 -e sh -c 'echo {marker}; "
                    "sleep 600' >/dev/null 2>&1 & echo $! > ~/marker.pid; "
                    "xdotool search --sync --onlyvisible --class xterm >/dev/null"
                ),
            },
            {"type": "screenshot"},
            {
                "type": "shell",
                "command": (
                    "sleep 2; kill $(cat ~/marker.pid); while xdotool search "
                    "--onlyvisible --class xterm >/dev/null; do sleep 0.1; done"
                ),
            },
            {"type": "screenshot"},
            {"type": "shell", "command": "sleep 2"},  # the bare desktop stays a while
        ]
    }
    task = await console.assign(agent["id"], "paint and clear", script)
    done = await console.task_in(task["id"], {"succeeded", "failed"}, timeout_s=90)
    assert done["state"] == "succeeded", done.get("error")
    async with console.http() as h:
        events = (await h.get(f"/v1/tasks/{task['id']}/events", params={"limit": 1000})).json()
    # A step's screenshot is what the agent saw before it: the screenshot step's shows the
    # xterm, the last step's (after the kill) the bare desktop.
    shots = [
        e
        for e in events["events"]
        if e["kind"] == "step" and e["blobs"] and e["data"]["action"]["type"] == "screenshot"
    ]
    assert len(shots) == 2, events
    with_xterm, bare = shots[0]["blobs"][0], shots[1]["blobs"][0]
    assert with_xterm != bare
    moment = math.ceil(shots[0]["at"])  # the scrubber moves by whole seconds

    await console.tab(page, "replay")
    await expect(console.testid(page, "replay-scrubber")).to_be_visible()
    await _scrub_to(page, console, moment)
    shown = console.testid(page, f"replay-shot-{agent['id']}")
    # The picture shown is the screenshot of that moment, through the tenant-checked blob
    # route.
    await expect(shown).to_have_attribute("src", f"/v1/blobs/{with_xterm}", timeout=15_000)
    await expect(console.testid(page, "replay-time")).not_to_be_empty()
    await console.shot(page, "replay-at-marker")
    size = await page.evaluate(
        "async (s) => (await (await fetch(s, {credentials: 'same-origin'})).blob()).size",
        f"/v1/blobs/{with_xterm}",
    )
    assert size > 1000, size
    # Now: the bare desktop again.
    await _scrub_to(page, console, time.time())
    await expect(shown).to_have_attribute("src", f"/v1/blobs/{bare}", timeout=15_000)
    await console.shot(page, "replay-now")
