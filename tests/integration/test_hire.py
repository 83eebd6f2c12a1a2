"""Hiring on the real thing: a cold hire's desktop, started by the parent while Ray starts
the child, ends up owned by the child; a pooled agent that cannot be adopted is retired
(stopped and killed) and the hire goes on cold."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.exceptions import RayActorError

pytestmark = pytest.mark.timeout(180)


async def test_a_cold_hire_hands_its_desktop_to_the_child(agents: Any) -> None:
    from orchestrator.desktop import owner_is_alive, process_owner
    from orchestrator.desktop._container import HANDOVER, SocketDir

    boss = await agents.create("boss")
    parent = agents.actor(boss.path)
    child = await parent.hire.remote(agents.spec("cold", role="helper"))
    [container] = agents.containers(child.path)
    owner = container["Labels"]["orchestrator.owner"]
    assert owner.startswith(f"{HANDOVER}:") and owner_is_alive(owner)
    # the child's process holds it now, not the parent's
    pid = await agents.actor(child.path).process_id.remote()
    sockdir = SocketDir(Path(container["Labels"]["orchestrator.sockdir"]))
    assert sockdir.owner_file.read_text() == process_owner(pid)
    # and the desktop works
    done = await agents.actor(child.path).shell.remote("echo handed over")
    assert done.stdout.strip() == "handed over"
    # fired: its desktop goes with it
    await parent.fire.remote(child.id)
    await agents.until(
        lambda: not agents.containers(child.path), what="the fired child's desktop removed"
    )


async def test_a_pooled_agent_that_cannot_be_adopted_is_retired(agents: Any) -> None:
    """The pool hands out an agent whose adoption fails (here: its desktop was stopped
    under it): the hire still succeeds, cold, and the pooled agent is not left behind."""
    from actors import NAMESPACE

    boss = await agents.create("boss")
    parent = agents.actor(boss.path)
    spec = agents.spec("warm", role="helper")
    pool = await agents.runtime.start_pool(1, spec.desktop)
    try:
        await pool.wait_full.remote(120)
        [name] = [n for n in agents.named_actors() if n.startswith("_pool/")]
        pooled = ray.get_actor(name, namespace=NAMESPACE)
        pooled_info = await pooled.get_info.remote()
        await pooled.shutdown.remote()  # alive, but without a desktop: adopt refuses it
        assert not agents.containers(pooled_info.path)

        child = await parent.hire.remote(spec)
        assert child.status.value == "idle"
        assert not child.actor.startswith("_pool/"), child.actor  # hired cold
        done = await agents.actor(child.path).shell.remote("echo cold")
        assert done.stdout.strip() == "cold"

        async def pooled_dead() -> bool:
            try:
                await asyncio.wait_for(pooled.get_info.remote(), timeout=5)
            except RayActorError:
                return True
            return False

        await agents.until(pooled_dead, timeout_s=30, what="the pooled agent killed")
        assert name not in agents.named_actors()
    finally:
        await pool.shutdown.remote()
        ray.kill(pool)
