"""The API's recorder handle (``actors.RecorderRef``): looked up once and kept, found again
when the recorder is replaced, and a tenant's task read in one call that answers only that
tenant. A recorder of its own (under another name) is used, so the session's stays as it is.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _start(name: str, data_dir: Path) -> Any:
    from actors import NAMESPACE, Recorder

    return Recorder.options(name=name, namespace=NAMESPACE, num_cpus=0).remote(str(data_dir))  # type: ignore[attr-defined]


async def _gone(name: str) -> None:
    import ray

    from actors import NAMESPACE

    for _ in range(100):
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        await asyncio.sleep(0.1)  # polling interval of a deadline-bound wait
    raise AssertionError(f"{name} is still registered")


async def test_task_reads_are_tenant_checked_and_a_replaced_recorder_is_found(
    ray_session: Any, tmp_path: Path
) -> None:
    import ray

    from actors import Runtime
    from actors._runtime import RecorderRef
    from orchestrator.domain import AgentInfo, AgentSpec, TaskInfo, TaskSpec
    from orchestrator.errors import NotFoundError, RecordError

    name = f"_test/recorder-{secrets.token_hex(4)}"
    first = _start(name, tmp_path)
    agent = AgentInfo(
        id="agent-ref0000001",
        path="t-ref/a",
        tenant="t-ref",
        parent_id=None,
        spec=AgentSpec(name="a"),
    )
    task = TaskInfo(id="task-ref00000001", agent_id=agent.id, spec=TaskSpec(description="x"))
    await first.put_agent.remote(agent)
    await first.put_task.remote(task)

    ref = RecorderRef(name)
    rt = Runtime(ref)
    assert (await rt.task(task.id, "t-ref")).id == task.id
    assert (await rt.task(task.id)).id == task.id
    for tenant in ("t-other", "t-re"):
        with pytest.raises(NotFoundError, match=f"no task {task.id}"):
            await rt.task(task.id, tenant)
    with pytest.raises(NotFoundError):
        await rt.task("task-none0000001", "t-ref")
    kept = ref.handle()
    assert ref.handle() is kept  # no lookup per call

    # Gone without a successor: the records are unavailable (503), not a dead agent.
    ray.kill(first, no_restart=True)
    await _gone(name)
    with pytest.raises(RecordError, match="not running"):
        await rt.task(task.id, "t-ref")

    # Replaced (same data): found on the next call, and on the very call that meets the
    # dead handle when it was replaced in between.
    second = _start(name, tmp_path)
    assert (await rt.task(task.id, "t-ref")).id == task.id
    assert ref.handle() != kept
    ray.kill(second, no_restart=True)
    await _gone(name)
    third = _start(name, tmp_path)
    try:
        assert (await rt.task(task.id, "t-ref")).id == task.id
        with pytest.raises(NotFoundError):
            await rt.task(task.id, "t-other")
    finally:
        ray.kill(third, no_restart=True)


async def test_local_reads_see_the_recorders_writes_and_follow_a_replacement(
    ray_session: Any, tmp_path: Path
) -> None:
    import ray

    from actors import Runtime
    from actors._runtime import LOCAL_CHECK_S, RecorderRef
    from orchestrator.domain import (
        AgentInfo,
        AgentSpec,
        Event,
        EventKind,
        TaskInfo,
        TaskSpec,
        TaskState,
    )
    from orchestrator.errors import NotFoundError

    name = f"_test/recorder-{secrets.token_hex(4)}"
    first = _start(name, tmp_path / "one")
    agent = AgentInfo(
        id="agent-loc0000001",
        path="t-loc/a",
        tenant="t-loc",
        parent_id=None,
        spec=AgentSpec(name="a"),
    )
    task = TaskInfo(id="task-loc00000001", agent_id=agent.id, spec=TaskSpec(description="x"))
    await first.put_agent.remote(agent)
    await first.put_task.remote(task)
    ref = RecorderRef(name, local_reads=True)
    rt = Runtime(ref)
    assert (await rt.task(task.id, "t-loc")).state == TaskState.PENDING
    local = ref._local
    assert local is not None and local.data_dir == tmp_path / "one"  # read from the file
    # what the recorder stores is what the next local read sees
    done = task.model_copy(update={"state": TaskState.SUCCEEDED})
    said = Event(kind=EventKind.TASK, task_id=task.id, data={"state": "succeeded"})
    await first.put_task.remote(done, said)  # a new state is written with its event
    assert (await rt.task(task.id, "t-loc")).state == TaskState.SUCCEEDED
    assert (await rt.agent(agent.id, "t-loc")).path == "t-loc/a"
    with pytest.raises(NotFoundError):
        await rt.task(task.id, "t-other")

    # a recorder on other records takes the name: noticed at the next check
    ray.kill(first, no_restart=True)
    await _gone(name)
    second = _start(name, tmp_path / "two")
    try:
        await second.put_agent.remote(agent)
        ref._checked_at -= LOCAL_CHECK_S  # as if the check interval had passed
        with pytest.raises(NotFoundError):
            await rt.task(task.id, "t-loc")
        assert ref._local is not None and ref._local.data_dir == tmp_path / "two"
    finally:
        ray.kill(second, no_restart=True)
