"""The recorder: one actor that owns the record store, so every agent's records land in one
durable place (a call returns only once the record is committed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ray

from orchestrator.domain import AgentInfo, Event, TaskInfo
from orchestrator.records import RecordStore, open_store

from ._names import NAMESPACE, RECORDER_NAME

__all__ = ["Recorder", "get_or_create_recorder"]


@ray.remote
class Recorder:
    """Serialises writes to the store; reads are served from the same store."""

    def __init__(self, data_dir: str | None = None) -> None:
        self._store: RecordStore = open_store(Path(data_dir) if data_dir else None)

    async def _write(self, fn: Any, *args: Any) -> Any:
        # The store serialises its own writes; threads let fsyncs and blob writes overlap.
        return await asyncio.to_thread(fn, *args)

    async def put_agent(self, info: AgentInfo) -> None:
        await self._write(self._store.put_agent, info)

    async def put_task(self, info: TaskInfo) -> None:
        await self._write(self._store.put_task, info)

    async def append_event(self, event: Event) -> Event:
        stored: Event = await self._write(self._store.append_event, event)
        return stored

    async def append_event_with_blob(self, event: Event, data: bytes, media_type: str) -> Event:
        """Store a blob, then the event that refers to it: one call for a step."""

        def both() -> Event:
            address = self._store.put_blob(data, media_type)
            return self._store.append_event(event.model_copy(update={"blobs": [address]}))

        stored: Event = await asyncio.to_thread(both)
        return stored

    async def put_blob(self, data: bytes, media_type: str) -> str:
        address: str = await self._write(self._store.put_blob, data, media_type)
        return address

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        return await asyncio.to_thread(self._store.get_agent, agent_id)

    async def list_agents(self, **filters: Any) -> list[AgentInfo]:
        return await asyncio.to_thread(lambda: self._store.list_agents(**filters))

    async def get_task(self, task_id: str) -> TaskInfo | None:
        return await asyncio.to_thread(self._store.get_task, task_id)

    async def list_tasks(self, **filters: Any) -> list[TaskInfo]:
        return await asyncio.to_thread(lambda: self._store.list_tasks(**filters))

    async def events(self, **filters: Any) -> list[Event]:
        return await asyncio.to_thread(lambda: self._store.events(**filters))

    async def get_blob(self, address: str) -> bytes:
        data: bytes = await asyncio.to_thread(self._store.get_blob, address)
        return data


def get_or_create_recorder(data_dir: Path | None = None) -> Any:
    """The cluster's recorder, created on this node (where the data directory is) if needed."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return Recorder.options(  # type: ignore[attr-defined]
        name=RECORDER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        num_cpus=0,
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=64,
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(str(data_dir) if data_dir else None)
