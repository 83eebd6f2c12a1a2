"""Failures on the real thing (reliability.md, checks 1 and 2, bounded): a specialist's actor
process SIGKILLed in the middle of its subtask, and a manager killed with its children.

Every wait has a deadline; what is asserted is what a user sees: the task retried or failed
with a reason, actors gone from Ray, desktop containers gone from Docker, records complete.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray

from orchestrator.domain import AgentStatus, EventKind, TaskSpec, TaskState

pytestmark = pytest.mark.timeout(180)

SPECIALIST_DEADLINE_S = 30.0
"""Check 1: a killed specialist's task is retried or failed with a reason within this."""
MANAGER_DEADLINE_S = 60.0
"""Check 2: a killed manager's children and their desktops are gone within this."""

_ALIVE = (AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY)


def _owner_pid(container: dict[str, Any]) -> int:
    """The pid of the process that owns a desktop (its agent's actor worker), from its label
    or, for a desktop its parent started (``handover:<id>``), from its owner file."""
    owner = container["Labels"]["orchestrator.owner"]
    if owner.startswith("handover:"):
        owner = (Path(container["Labels"]["orchestrator.sockdir"]) / "owner").read_text()
    kind, _, details = owner.partition(":")
    assert kind == "process", owner
    return int(details.rsplit(":", 2)[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _sleeping_subtask(role: str, seconds: int) -> dict[str, Any]:
    return {
        "subtasks": [
            {
                "id": "work",
                "role": role,
                "description": f"work for {seconds} s",
                "script": {
                    "steps": [
                        {
                            "type": "shell",
                            "command": f"sleep {seconds}; echo finished",
                            "timeout_s": seconds + 60,
                        }
                    ]
                },
            }
        ]
    }


async def _running_subtask(agents: Any, task_id: str, agent_path: str) -> Any:
    """Wait until the task's (only) subtask runs and its `sleep` runs on ``agent_path``."""

    async def running() -> Any:
        subs = await agents.subtasks(task_id)
        return subs and subs[-1].state == TaskState.RUNNING and subs[-1]

    sub = await agents.until(running, timeout_s=30, what="the subtask running")
    child = agents.actor(agent_path)

    async def sleeping() -> bool:
        return bool((await child.shell.remote("pgrep -x sleep")).exit_code == 0)

    await agents.until(sleeping, timeout_s=10, what=f"`sleep` running on {agent_path}")
    return sub


# ---------------------------------------------------------------------- check 1


@dataclass
class KilledSpecialist:
    kit: Any
    boss: Any
    worker: str
    """The killed specialist's path."""
    worker_id: str
    task_id: str
    first: Any
    """The subtask the specialist was working on."""
    container: dict[str, Any]
    """The specialist's desktop container."""
    before: list[Any]
    """Events stored before the kill."""
    killed_at: float

    def left(self) -> float:
        return max(SPECIALIST_DEADLINE_S - (time.monotonic() - self.killed_at), 1.0)


@pytest.fixture(scope="class")
async def killed_specialist(ray_session: Any) -> AsyncIterator[KilledSpecialist]:
    """A manager whose specialist's actor process is SIGKILLed in the middle of a subtask
    (a 4 s `sleep` on its desktop; the task allows 2 attempts)."""
    from tests.integration.conftest_ray import AgentKit

    kit = AgentKit(session=ray_session, tenant="t-killed-specialist")
    try:
        boss = await kit.create("boss")
        task = await kit.runtime.assign(
            boss.id, TaskSpec(description="work", script=_sleeping_subtask("worker", 4))
        )
        worker = f"{boss.path}/worker"
        first = await _running_subtask(kit, task.id, worker)
        before = await kit.events(task_id=task.id) + await kit.events(task_id=first.id)
        (container,) = [
            c for c in kit.containers(worker) if c["Labels"]["orchestrator.path"] == worker
        ]
        pid = _owner_pid(container)
        assert "AgentActor" in _cmdline(pid), _cmdline(pid)  # Ray titles it ray::AgentActor...
        os.kill(pid, signal.SIGKILL)
        yield KilledSpecialist(
            kit, boss, worker, first.agent_id, task.id, first, container, before, time.monotonic()
        )
    finally:
        await kit.fire_all()


class TestSigkilledSpecialist:
    """Check 1: one scenario (the class-scoped fixture), several observations."""

    async def test_sigkilled_specialist_is_replaced_and_its_desktop_reaped(
        self, killed_specialist
    ) -> None:
        ks = killed_specialist
        agents, boss, worker, first, container = ks.kit, ks.boss, ks.worker, ks.first, ks.container

        task_id = ks.task_id

        # the parent notices within the deadline: the attempt fails with a reason, and it says so
        async def told() -> Any:
            logs = [e.data for e in await agents.events(task_id=task_id) if e.kind == EventKind.LOG]
            return logs and logs[0]

        log = await agents.until(told, timeout_s=ks.left(), what="the parent told")
        assert (log["subtask"], log["attempt"]) == ("work", 1)
        assert "died" in log["error"] and worker in log["error"], log
        assert log["next"] == "retry on a fresh specialist"
        failed_first = await agents.runtime.task(first.id)
        assert failed_first.state == TaskState.FAILED and "died" in failed_first.error

        # ...and retries on a fresh specialist, which finishes the work
        done = await agents.runtime.wait(task_id, 60)
        assert done.state == TaskState.SUCCEEDED, done.error
        assert done.result == "work: finished"
        subs = await agents.subtasks(task_id)
        assert [s.state for s in subs] == [TaskState.FAILED, TaskState.SUCCEEDED]
        fresh = await agents.runtime.agent(subs[1].agent_id)
        assert subs[0].agent_id != subs[1].agent_id
        # the dead specialist's name is free again, so the fresh one may take it
        assert fresh.path in (worker, f"{boss.path}/worker-2"), fresh.path
        assert fresh.parent_id == boss.id
        replies = [
            (e.data["from"], e.data["state"])
            for e in await agents.events(task_id=task_id)
            if e.kind == EventKind.MESSAGE and e.data["to"] == boss.path
        ]
        assert replies == [(worker, "failed"), (fresh.path, "succeeded")]

        # everything acknowledged before the kill is still stored, unchanged
        after = {
            e.seq: e
            for e in await agents.events(task_id=task_id) + await agents.events(task_id=first.id)
        }
        assert all(after.get(e.seq) == e for e in ks.before)

        # the dead specialist is gone from the tree (only the fresh one is left)...
        tree = await agents.actor(boss.path).tree.remote()
        assert [c.agent.id for c in tree.children] == [fresh.id]
        # ...and its orphaned desktop is reaped by the agents still alive on the node
        await agents.until(
            lambda: container["Id"] not in {c["Id"] for c in agents.containers(boss.path)},
            timeout_s=ks.left(),
            interval_s=0.5,
            what="the killed specialist's desktop removed",
        )

    async def test_sigkilled_specialist_is_recorded_as_failed(self, killed_specialist) -> None:
        ks = killed_specialist

        async def parent_knows() -> bool:
            sub = await ks.kit.runtime.task(ks.first.id)
            return bool(sub.state == TaskState.FAILED)

        await ks.kit.until(parent_knows, timeout_s=ks.left(), what="the parent noticed")

        async def marked() -> bool:
            info = await ks.kit.runtime.agent(ks.worker_id)
            assert info.status == AgentStatus.FAILED and info.error, (info.status, info.error)
            return True

        # once the parent knows, its record of the child should follow at once
        await ks.kit.until(marked, timeout_s=5, interval_s=0.2, what="the record marked")


# ---------------------------------------------------------------------- check 2


def _other_reapers(km: KilledManager) -> set[str]:
    """Agents outside this test that may reap its orphans: live agents' desktops (each agent
    sweeps the node every 15 s) and desktops started since the kill (a new process sweeps
    once on its first start), from other tests or other sessions on the same engine."""
    from orchestrator.desktop import owner_is_alive

    found = set()
    for c in km.kit.containers():
        labels = c["Labels"]
        path = labels.get("orchestrator.path", "")
        if path == km.boss.path or path.startswith(km.boss.path + "/"):
            continue
        new = c.get("Created", 0) >= km.killed_wall - 1
        agent = "orchestrator.agent" in labels
        if new or (agent and owner_is_alive(labels.get("orchestrator.owner", ""))):
            found.add(path or c["Id"][:12])
    return found


@dataclass
class KilledManager:
    kit: Any
    boss: Any
    paths: set[str]
    task_id: str
    subtask_id: str
    killed_at: float
    killed_wall: float

    def left(self) -> float:
        return max(MANAGER_DEADLINE_S - (time.monotonic() - self.killed_at), 1.0)


@pytest.fixture(scope="class")
async def killed_manager(ray_session: Any) -> AsyncIterator[KilledManager]:
    """A manager with two children (one busy with a subtask, one idle), killed by Ray."""
    from tests.integration.conftest_ray import AgentKit

    kit = AgentKit(session=ray_session, tenant="t-killed-manager")
    boss = await kit.create("boss")
    try:
        handle = kit.actor(boss.path)
        spare = await handle.hire.remote(kit.spec("spare", role="helper"))
        task = await kit.runtime.assign(
            boss.id, TaskSpec(description="work", script=_sleeping_subtask("sleeper", 300))
        )
        sleeper = f"{boss.path}/sleeper"
        sub = await _running_subtask(kit, task.id, sleeper)
        paths = {boss.path, spare.path, sleeper}
        assert kit.container_paths(boss.path) == paths
        assert paths <= kit.named_actors()

        ray.kill(handle)
        yield KilledManager(kit, boss, paths, task.id, sub.id, time.monotonic(), time.time())
    finally:
        kit.created.clear()
        # clean up whatever the runtime left behind, once the tests have looked
        from orchestrator.desktop import reap

        await asyncio.to_thread(reap, 0)
        for path in kit.named_actors() & {boss.path, f"{boss.path}/spare", f"{boss.path}/sleeper"}:
            ray.kill(kit.actor(path))


class TestKilledManager:
    """Check 2: one scenario (the class-scoped fixture), several observations."""

    async def test_killed_manager_takes_its_children_actors_along(self, killed_manager) -> None:
        km = killed_manager
        await km.kit.until(
            lambda: not (km.paths & km.kit.named_actors()),
            timeout_s=km.left(),
            interval_s=0.2,
            what="the manager's and its children's actors gone",
        )

    async def test_killed_manager_desktops_are_removed(self, killed_manager) -> None:
        km = killed_manager
        others: set[str] = set()

        def removed() -> bool:
            others.update(_other_reapers(km))
            return not km.kit.containers(km.boss.path)

        await km.kit.until(
            removed,
            timeout_s=km.left(),
            interval_s=0.5,
            what="the manager's and its children's desktop containers removed",
        )
        if others:  # not this session's doing: say so rather than pass (or XPASS) by accident
            pytest.skip(
                "agents of other sessions on this Docker engine reaped the orphans "
                f"({len(others)} seen, e.g. {sorted(others)[:3]}); run alone to see the gap"
            )

    async def test_killed_manager_open_tasks_are_not_silently_lost(self, killed_manager) -> None:
        km = killed_manager

        async def settled() -> bool:
            tasks = [await km.kit.runtime.task(t) for t in (km.task_id, km.subtask_id)]
            assert all(t.state.done and t.error for t in tasks), [(t.state, t.error) for t in tasks]
            return True

        await km.kit.until(settled, timeout_s=km.left(), interval_s=0.5, what="open tasks settled")

    async def test_killed_manager_agents_are_not_shown_alive(self, killed_manager) -> None:
        km = killed_manager

        async def settled() -> bool:
            infos = [a for a in await km.kit.runtime.list_agents(tenant=km.kit.tenant)]
            assert {a.path for a in infos} == km.paths
            alive = {(a.path, a.status.value) for a in infos if a.status in _ALIVE}
            assert not alive, alive
            return True

        await km.kit.until(settled, timeout_s=km.left(), interval_s=0.5, what="agents settled")


async def test_a_killed_desktop_fails_the_step_and_is_recreated(agents: Any) -> None:
    """reliability.md check 3: `docker kill` a desktop under a live agent."""
    import time

    from orchestrator._docker import client
    from orchestrator.domain import TaskSpec, TaskState

    boss = await agents.create("worker", role="operator")
    handle = agents.actor(boss.path)
    [before] = agents.containers(boss.path)
    spec = TaskSpec(
        description="a long command",
        script={"steps": [{"type": "shell", "command": "sleep 120", "timeout_s": 300}]},
    )
    task = await agents.runtime.assign(boss.id, spec)

    async def running() -> bool:
        return (await agents.runtime.task(task.id)).state == TaskState.RUNNING

    await agents.until(running, timeout_s=30, what="the task running")
    killed_at = time.monotonic()
    client().api.kill(before["Id"])

    async def failed() -> Any:
        t = await agents.runtime.task(task.id)
        return t if t.state == TaskState.FAILED else None

    done = await agents.until(failed, timeout_s=30, what="the task failed")
    assert time.monotonic() - killed_at < 15
    assert "desktop" in (done.error or "").lower() or "shell" in (done.error or "").lower(), done

    async def screenshot_again() -> bool:
        try:
            png: bytes = await handle.screenshot.remote("png")
        except Exception:  # DesktopGoneError until the agent has a new desktop
            return False
        return png.startswith(b"\x89PNG")

    await agents.until(screenshot_again, timeout_s=60, what="screenshots answer again")
    [after] = [c for c in agents.containers(boss.path) if c["State"] == "running"]
    assert after["Id"] != before["Id"]
    again = await agents.run(
        boss.id,
        TaskSpec(
            description="works", script={"steps": [{"type": "shell", "command": "echo back"}]}
        ),
    )
    assert again.state == TaskState.SUCCEEDED, again


async def test_a_full_cluster_fails_a_new_agent_in_time_instead_of_waiting(
    agents: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `desktop` unit taken: creating an agent fails with CapacityError after the
    schedule timeout (not a wait without end), the attempt is recorded failed, no actor is
    left holding the name, and once a unit is free the same name can be created."""
    from actors import NAMESPACE
    from orchestrator.config import settings
    from orchestrator.errors import CapacityError

    @ray.remote(num_cpus=0)
    class Hog:
        def ping(self) -> int:
            return 1

    monkeypatch.setenv("ORCHESTRATOR_AGENT_SCHEDULE_TIMEOUT_S", "3")
    settings.cache_clear()
    hogs: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        while (free := ray.available_resources().get("desktop", 0)) >= 1:
            assert time.monotonic() < deadline, "could not take every desktop unit"
            hog = Hog.options(resources={"desktop": int(free)}).remote()  # type: ignore[attr-defined]
            hogs.append(hog)
            await asyncio.wait_for(hog.ping.remote(), timeout=20)
        t0 = time.monotonic()
        with pytest.raises(CapacityError, match="no node had a free desktop"):
            await agents.create("squeezed", role="tester")
        assert 3 <= time.monotonic() - t0 < 15
        path = f"{agents.tenant}/squeezed"
        [info] = [a for a in await agents.runtime.list_agents(agents.tenant) if a.path == path]
        assert info.status == AgentStatus.FAILED and "free desktop" in (info.error or "")
        with pytest.raises(ValueError):
            ray.get_actor(path, namespace=NAMESPACE)
    finally:
        for hog in hogs:
            ray.kill(hog)
        monkeypatch.delenv("ORCHESTRATOR_AGENT_SCHEDULE_TIMEOUT_S")
        settings.cache_clear()
    again = await agents.create("squeezed", role="tester")
    assert again.status == AgentStatus.IDLE
