"""R7: hires beyond what a node can start at once queue for its desktop start slots (their
agents ``starting``) instead of starving each other past the ready deadline."""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator._docker import client
from orchestrator.desktop._admission import default_start_slots, start_slot, start_slots
from orchestrator.domain import AgentStatus

pytestmark = pytest.mark.timeout(240)

BURST = 12
"""Hires at once: more than the slots, within the session cluster's desktop units."""


def _start_spans(containers: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each desktop's start, from its container's creation to its ready marker (host clock).

    Both lie inside the time its start held a slot: the container is created once the slot
    is taken, and the slot is kept until the desktop is ready."""
    spans = []
    for c in containers:
        created = client().api.inspect_container(c["Id"])["Created"]
        secs, _, frac = created.rstrip("Z").partition(".")
        t0 = datetime.fromisoformat(secs + "+00:00").timestamp() + float(f"0.{frac or 0}")
        ready = Path(c["Labels"]["orchestrator.sockdir"]) / "run" / "ready"
        spans.append((t0, os.stat(ready).st_mtime))
    return spans


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans])
    at_once = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        at_once += step
        most = max(most, at_once)
    return most


async def test_a_burst_of_hires_beyond_the_start_slots_all_succeed(agents: Any) -> None:
    # 0 turns admission off (the behaviour before R7): held to the default here, so that
    # running this test with ORCHESTRATOR_DESKTOP_START_SLOTS=0 shows what it guards.
    limit = start_slots() or default_start_slots()
    if limit >= BURST:
        pytest.skip(f"this node starts {limit} desktops at once: a burst of {BURST} never queues")
    boss = await agents.create()
    parent = agents.actor(boss.path)
    hired = await asyncio.gather(
        *(parent.hire.remote(agents.spec(f"s{i}", "specialist")) for i in range(BURST))
    )
    assert [h.status for h in hired] == [AgentStatus.IDLE] * BURST
    ours = [
        c for c in agents.containers(boss.path) if c["Labels"]["orchestrator.path"] != boss.path
    ]
    assert len(ours) == BURST
    most = _most_at_once(_start_spans(ours))
    assert 1 <= most <= limit, f"{most} desktops were starting at once (limit {limit})"


async def test_a_queued_hire_is_starting_until_a_slot_frees(agents: Any) -> None:
    limit = start_slots()
    if limit == 0:
        pytest.skip("ORCHESTRATOR_DESKTOP_START_SLOTS=0: starts are not admitted")
    boss = await agents.create()
    parent = agents.actor(boss.path)
    path = f"{boss.path}/queued"
    async with AsyncExitStack() as slots:
        for _ in range(limit):  # this process holds every slot of the node
            await slots.enter_async_context(start_slot())

        async def hire_one() -> Any:
            return await parent.hire.remote(agents.spec("queued", "specialist"))

        hire = asyncio.create_task(hire_one())

        async def queued() -> Any:
            infos = [a for a in await agents.runtime.list_agents() if a.path == path]
            if not infos:
                return None
            events = await agents.events(agent_id=infos[0].id)
            said = any(e.data.get("desktop") == "queued for a start slot" for e in events)
            return infos[0] if said else None

        info = await agents.until(queued, timeout_s=60, what="the hire queued")
        assert info.status == AgentStatus.STARTING
        assert (await agents.runtime.agent(info.id)).status == AgentStatus.STARTING
        assert not agents.containers(path), "a queued hire started its desktop"
        assert not hire.done()
    hired = await asyncio.wait_for(hire, timeout=60)  # the slots are free: it starts now
    assert hired.status == AgentStatus.IDLE
    assert len(agents.containers(path)) == 1
