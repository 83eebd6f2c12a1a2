"""A warm pool: agents whose actor and desktop are already up, waiting to be hired.

A cold hire starts a Ray worker process and a desktop container (about 1-2 s); a warm hire
takes a pooled agent and gives it its identity (path, role, brain) in a few milliseconds.
Ray cannot rename an actor, so a pooled agent keeps its pool name (``_pool/<id>``) in
``ray list actors``; its path in the tree is in the records, the API and its ``repr``.
Pooled agents are refilled in the background, two at a time to spare the CPU.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import ray

from orchestrator.desktop import DesktopSpec
from orchestrator.domain import AgentInfo, AgentSpec, new_id

from ._names import NAMESPACE, POOL_NAME

__all__ = ["WarmPool", "get_pool"]

log = logging.getLogger(__name__)

_PARALLEL_STARTS = 2


@ray.remote
class WarmPool:
    """Keeps ``size`` idle agents with ready desktops of ``spec``."""

    def __init__(self, size: int, spec: DesktopSpec | None = None) -> None:
        self.size = size
        self.spec = spec or DesktopSpec()
        self.ready: deque[Any] = deque()
        self.starting = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._filler: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Begin filling; returns the target size."""
        if self._filler is None:
            self._filler = asyncio.create_task(self._fill_forever())
        self._wake.set()
        return self.size

    async def wait_full(self, timeout_s: float = 120.0) -> int:
        """Wait until the pool holds ``size`` ready agents (or the timeout); return how many."""
        self._wake.set()
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.ready) >= self.size)
        return len(self.ready)

    async def take(self, spec: DesktopSpec) -> list[Any]:
        """A ready agent for a desktop of ``spec`` (as a one-item list), or [] if none."""
        if spec != self.spec or not self.ready:
            self._wake.set()
            return []
        handle = self.ready.popleft()
        self._wake.set()
        return [handle]

    async def stats(self) -> dict[str, int]:
        return {"size": self.size, "ready": len(self.ready), "starting": self.starting}

    async def _fill_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            missing = self.size - len(self.ready) - self.starting
            for _ in range(max(0, min(missing, _PARALLEL_STARTS - self.starting))):
                self.starting += 1
                asyncio.create_task(self._start_one())  # noqa: RUF006 - tracked by `starting`

    async def _start_one(self) -> None:
        from ._agent import AgentActor, agent_options

        pool_id = new_id("pooled")
        path = f"_pool/{pool_id}"
        info = AgentInfo(
            id=pool_id,
            path=path,
            tenant="_pool",
            parent_id=None,
            spec=AgentSpec(name="pooled", role="unassigned", desktop=self.spec),
        )
        handle = AgentActor.options(**agent_options(path, detached=False)).remote(info)  # type: ignore[attr-defined]
        try:
            await handle.start.remote(record=False)
            self.ready.append(handle)
            async with self._changed:
                self._changed.notify_all()
        except Exception as e:  # noqa: BLE001 - a failed start is retried on the next wake
            log.warning("pooled agent failed to start: %s", e)
            ray.kill(handle)
        finally:
            self.starting -= 1
            self._wake.set()

    async def shutdown(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
        handles = list(self.ready)
        self.ready.clear()
        await asyncio.gather(*(h.shutdown.remote() for h in handles), return_exceptions=True)
        for h in handles:
            ray.kill(h)


def get_pool() -> Any | None:
    """The cluster's warm pool, if one was started."""
    try:
        return ray.get_actor(POOL_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
