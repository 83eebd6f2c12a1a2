"""Fixtures for the agent tests on the real thing: one local Ray cluster on loopback per
session (with its recorder writing to a temporary data directory), and per test an
``AgentKit`` that creates top-level agents under the test's own tenant and fires them
at the end, whatever happened.

Imported into ``conftest.py``; the helpers are reached through the ``agents`` fixture so
that test modules import nothing from the test tree.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

RAY_DESKTOPS = 24
"""Units of the ``desktop`` resource the session's local cluster declares."""
TENANT_PREFIX = "t-"
"""Every test's tenant starts with this."""


@dataclass
class RaySession:
    """The session's cluster: the runtime facade and where its records are written."""

    runtime: Any  # actors.Runtime
    data_dir: Path
    image: str


@pytest.fixture(scope="session")
async def ray_session(
    desktop_image: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RaySession]:
    """A local Ray cluster on 127.0.0.1 and a ``Runtime`` whose recorder writes to a fresh
    data directory; at the end every agent still running is fired and Ray is shut down."""
    import ray

    from actors import Runtime, init_ray

    if ray.is_initialized():  # pragma: no cover - another fixture got there first
        raise RuntimeError(
            "Ray is already initialised in the test process: share the `ray_session` fixture"
        )
    # Always a cluster of our own, never one RAY_ADDRESS points at (its agents are not ours).
    address = os.environ.pop("RAY_ADDRESS", None)
    try:
        init_ray(desktops=RAY_DESKTOPS)
    finally:
        if address is not None:
            os.environ["RAY_ADDRESS"] = address
    data_dir = tmp_path_factory.mktemp("records")
    runtime = Runtime.connect(data_dir=data_dir)
    try:
        yield RaySession(runtime=runtime, data_dir=data_dir, image=desktop_image)
    finally:
        try:
            await _fire_everyone(runtime)
        finally:
            ray.shutdown()
            _reap_quietly()


async def _fire_everyone(runtime: Any) -> None:
    from orchestrator.domain import AgentStatus

    agents = await runtime.list_agents()
    for info in agents:
        ours = info.tenant.startswith(TENANT_PREFIX)
        alive = info.status not in (AgentStatus.STOPPED, AgentStatus.FAILED)
        if ours and alive and info.parent_id is None:
            try:
                await asyncio.wait_for(runtime.fire(info.id), timeout=60)
            except Exception:  # noqa: BLE001 - best effort at the end of the session
                pass


def _reap_quietly() -> None:
    from orchestrator.desktop import reap

    try:
        reap(min_age_s=0)
    except Exception:  # noqa: BLE001 - best effort at the end of the session
        pass


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].rstrip("-")


@dataclass
class AgentKit:
    """What a test needs to drive the agent hierarchy and look at what it did."""

    session: RaySession
    tenant: str
    created: list[Any] = field(default_factory=list)

    # ------------------------------------------------------------------ agents

    @property
    def runtime(self) -> Any:
        return self.session.runtime

    @property
    def data_dir(self) -> Path:
        return self.session.data_dir

    def spec(self, name: str = "boss", role: str = "manager", brain: Any = None) -> Any:
        """An agent spec with a small desktop of the session's image."""
        from orchestrator.desktop import DesktopSpec
        from orchestrator.domain import AgentSpec, BrainConfig

        return AgentSpec(
            name=name,
            role=role,
            brain=brain or BrainConfig(),
            desktop=DesktopSpec(image=self.session.image, width=1024, height=768),
        )

    async def create(self, name: str = "boss", role: str = "manager", brain: Any = None) -> Any:
        """Create a top-level agent ``<tenant>/<name>``; it is fired when the test ends."""
        info = await self.runtime.create_agent(self.tenant, self.spec(name, role, brain))
        self.created.append(info)
        return info

    def actor(self, path: str) -> Any:
        """The actor handle of the agent at ``path`` (raises ValueError when there is none)."""
        import ray

        from actors import NAMESPACE

        return ray.get_actor(path, namespace=NAMESPACE)

    def named_actors(self) -> set[str]:
        """Names of the live named actors in the runtime's namespace, as Ray lists them."""
        import ray

        from actors import NAMESPACE

        return {
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE
        }

    def containers(self, path_prefix: str | None = None) -> list[dict[str, Any]]:
        """Desktop containers (running or not) of the agent at ``path_prefix`` and below
        (all of them when None), as the engine lists them: ``Id``, ``Labels``, ``State``, ...

        One list call and no per-container inspection, so containers that other sessions
        on the same engine remove meanwhile do not break it.
        """
        from orchestrator._docker import client

        found = client().api.containers(all=True, filters={"label": "orchestrator.desktop"})
        if path_prefix is None:
            return list(found)
        return [
            c
            for c in found
            if (p := c["Labels"].get("orchestrator.path", "")) == path_prefix
            or p.startswith(path_prefix + "/")
        ]

    def container_paths(self, path_prefix: str) -> set[str]:
        return {c["Labels"]["orchestrator.path"] for c in self.containers(path_prefix)}

    # ------------------------------------------------------------------ tasks and records

    async def run(self, agent_id: str, spec: Any, timeout_s: float = 60) -> Any:
        """Assign a task and wait for its end; returns the final ``TaskInfo``."""
        task = await self.runtime.assign(agent_id, spec)
        done = await self.runtime.wait(task.id, timeout_s)
        assert done.state.done, f"task {task.id} did not end within {timeout_s} s: {done!r}"
        return done

    async def events(self, **filters: Any) -> list[Any]:
        """Every stored event matching ``filters`` (``task_id``, ``agent_id``, ``kinds``)."""
        from orchestrator.records import MAX_LIMIT

        out: list[Any] = await self.runtime.events(limit=MAX_LIMIT, **filters)
        return out

    async def subtasks(self, task_id: str) -> list[Any]:
        """The stored subtasks of a task, oldest first."""
        tasks: list[Any] = await self.runtime.recorder.list_tasks.remote(
            parent_task_id=task_id, limit=1000
        )
        return sorted(tasks, key=lambda t: t.created_at)

    async def until(
        self,
        probe: Callable[[], Awaitable[T] | T],
        *,
        timeout_s: float = 10.0,
        interval_s: float = 0.1,
        what: str = "condition",
    ) -> T:
        """Poll ``probe`` until it returns something truthy; fail with its last value."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            try:
                value = probe()
                if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                    value = await value
                last = value
                if value:
                    return value  # type: ignore[return-value]
            except AssertionError as e:
                last = e
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} not met within {timeout_s} s; last: {last!r}")
            await asyncio.sleep(interval_s)

    # ------------------------------------------------------------------ the end

    async def fire_all(self) -> None:
        """Fire every agent this test created that is still running."""
        from orchestrator.errors import NotFoundError

        while self.created:
            info = self.created.pop()
            try:
                await asyncio.wait_for(self.runtime.fire(info.id), timeout=90)
            except NotFoundError:
                pass  # killed by the test, or fired already


@pytest.fixture
async def agents(
    ray_session: RaySession, request: pytest.FixtureRequest
) -> AsyncIterator[AgentKit]:
    """An ``AgentKit`` for this test, tenant ``t-<test name>``; fires its agents at the end."""
    kit = AgentKit(session=ray_session, tenant=f"{TENANT_PREFIX}{_slug(request.node.name)}")
    try:
        yield kit
    finally:
        await kit.fire_all()
