"""A task's recorded state and its last state event never disagree, and no task stays open
(reliability.md check 13; issue 9, R1 and R2), on the real thing: a local Ray cluster, real
desktops, scripted brains.

R1: tasks whose deadline passes before, during or right after their first write (1e-6 s to
a few steps), and cancels racing a task's end, hammer the window in which the task's state
and its state event used to be written by separate calls (a cancelled write could land after
the final one and leave the task `running` for ever). Every one must end with its recorded
state terminal and equal to its last state event's; ``wait()`` returns and its event stream
ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from typing import Any

import pytest

from orchestrator.domain import AgentStatus, Event, EventKind, TaskInfo, TaskSpec, TaskState

pytestmark = pytest.mark.timeout(180)

log = logging.getLogger(__name__)

SETTLE_S = 10.0
"""After ``wait()`` returned, the records must show the task ended within this."""
STREAM_END_S = 15.0
"""A finished task's event stream must end within this."""
DEAD_AGENT_S = 5.0
"""R2: an agent whose actor died reads as failed within this."""

_ECHO = {"steps": [{"type": "shell", "command": "echo hi"}]}
_TWO = {"steps": [{"type": "shell", "command": "echo one"}, {"type": "shell", "command": "true"}]}


def _last_state(events: list[Event]) -> str | None:
    states = [e.data["state"] for e in events if e.kind == EventKind.TASK and "state" in e.data]
    return states[-1] if states else None


async def _agrees(agents: Any, task_id: str, timeout_s: float = SETTLE_S) -> TaskInfo:
    """The stored task, once it is done and its last state event says the same."""

    async def settled() -> TaskInfo | None:
        task: TaskInfo = await agents.runtime.task(task_id)
        last = _last_state(await agents.events(task_id=task_id))
        assert task.state.done and task.state.value == last, (task.state.value, last, task.error)
        return task

    done: TaskInfo = await agents.until(
        settled, timeout_s=timeout_s, interval_s=0.2, what=f"task {task_id} settled"
    )
    return done


async def _stream_ends(agents: Any, task_id: str) -> list[str]:
    """The task's SSE stream, as the API serves it, read to its end (for a caller whose
    credentials stay valid: the test patches ``still_valid``, once, with ``monkeypatch``; what
    ends the stream here is the task, not a revocation)."""
    from serve_app import _stream
    from serve_app._auth import Principal

    caller = Principal.of_key("default", "00" * 32, "key:test")
    chunks: list[str] = []

    async def read() -> None:
        async for chunk in _stream._event_stream(agents.runtime, caller, task_id, 0):
            chunks.append(chunk)

    await asyncio.wait_for(read(), timeout=STREAM_END_S)
    return chunks


async def _always_valid(_: Any) -> bool:
    return True


async def test_tiny_deadlines_and_racing_cancels_leave_no_task_open(
    agents: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R1: 40 tasks with deadlines from 1e-6 s to a few steps, and cancels racing the end."""
    rng = random.Random(9)
    boss = await agents.create("worker", role="operator")
    specs: list[tuple[TaskSpec, float | None]] = []
    for i in range(40):
        deadline = [1e-6, 1e-6, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.2][i % 8]
        script = _TWO if i % 3 else _ECHO
        cancel_after = rng.choice([None, None, 0.0, 0.02, 0.1, 0.3]) if i % 4 == 3 else None
        spec = TaskSpec(description=f"tiny {i}", deadline_s=deadline, script=script)
        specs.append((spec, cancel_after))

    async def one(spec: TaskSpec, cancel_after: float | None) -> str:
        task = await agents.runtime.assign(boss.id, spec)
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)  # the race itself: cancel at some moment
            await agents.runtime.cancel(task.id)
        done = await agents.runtime.wait(task.id, 30)
        assert done.state.done, done
        return str(task.id)

    ids = await asyncio.gather(*(one(s, c) for s, c in specs))
    # a few more with a normal deadline, cancelled right as they end
    for _ in range(4):
        task = await agents.runtime.assign(
            boss.id, TaskSpec(description="cancelled at its end", script=_ECHO)
        )
        await agents.runtime.wait(task.id, 30)
        await agents.runtime.cancel(task.id)
        ids.append(task.id)

    wrong: list[tuple[str, str, str | None]] = []
    for task_id in ids:
        try:
            await _agrees(agents, task_id)
        except AssertionError:
            task = await agents.runtime.task(task_id)
            last = _last_state(await agents.events(task_id=task_id))
            wrong.append((task_id, task.state.value, last))
    assert not wrong, f"{len(wrong)} of {len(ids)} tasks disagree (id, state, last event): {wrong}"
    # every stream ends, with the task's final state event last
    from serve_app import _stream

    monkeypatch.setattr(_stream, "still_valid", _always_valid)
    streams = await asyncio.gather(*(_stream_ends(agents, t) for t in ids))
    for task_id, chunks in zip(ids, streams, strict=True):
        finals = [c for c in chunks if '"kind":"task"' in c]
        assert finals, (task_id, chunks)
    # nothing counts as running on the agent: its tree and the records agree
    tree = await agents.actor(boss.path).tree.remote()
    assert tree.tasks == []
    open_ = await agents.runtime.recorder.list_tasks.remote(
        agent_id=boss.id, state=[s for s in TaskState if not s.done], limit=1000
    )
    assert open_ == []


async def _kill_idle_child(agents: Any, name: str) -> tuple[Any, Any, float]:
    """A boss with an idle child ``name`` whose worker process is SIGKILLed; returns the
    boss's handle, the child's info and when it was killed."""
    boss = await agents.create("boss")
    parent = agents.actor(boss.path)
    child = await parent.hire.remote(agents.spec(name, role="helper"))
    assert (await agents.runtime.agent(child.id)).status == AgentStatus.IDLE
    pid = await agents.actor(child.path).process_id.remote()
    os.kill(pid, signal.SIGKILL)
    return parent, child, time.monotonic()


async def _tree_says_failed(parent: Any, child_id: str) -> None:
    tree = await parent.tree.remote()
    [node] = [c for c in tree.children if c.agent.id == child_id]
    assert node.agent.status == AgentStatus.FAILED


async def test_an_idle_agent_whose_worker_died_reads_failed(agents: Any) -> None:
    """R2: SIGKILL an idle child's worker process: reading it (GET /v1/agents/{id} is
    ``Runtime.agent``) says failed at once, as its parent's tree does.

    Before: the dead actor's name still resolved while its parent lived, so the read and the
    recorder's sweep both took it as alive; it read `idle` for as long as the parent lived."""
    parent, child, killed_at = await _kill_idle_child(agents, "idler")

    async def failed() -> bool:
        info = await agents.runtime.agent(child.id)
        return info.status == AgentStatus.FAILED and info.error == "actor died"

    await agents.until(failed, timeout_s=60, interval_s=0.2, what="the dead agent read as failed")
    took = time.monotonic() - killed_at
    await _tree_says_failed(parent, child.id)
    log.warning("R2: read as failed %.2f s after the kill", took)
    assert took < DEAD_AGENT_S, f"read as failed only after {took:.1f} s"


async def test_the_recorder_records_a_dead_idle_agent_failed_unasked(agents: Any) -> None:
    """R2, the listing (the CLI's `agents`): nobody reads the dead agent, the recorder's sweep
    records it failed within DEAD_AGENT_S."""
    parent, child, killed_at = await _kill_idle_child(agents, "lister")

    async def listed_failed() -> bool:
        infos = await agents.runtime.list_agents(tenant=agents.tenant)
        [info] = [a for a in infos if a.id == child.id]
        return info.status == AgentStatus.FAILED

    await agents.until(listed_failed, timeout_s=60, interval_s=0.2, what="listed as failed")
    took = time.monotonic() - killed_at
    await _tree_says_failed(parent, child.id)
    log.warning("R2: listed as failed %.2f s after the kill", took)
    assert took < DEAD_AGENT_S, f"listed as failed only after {took:.1f} s"


def _open_task_of(agent: Any) -> tuple[TaskInfo, Event]:
    task = TaskInfo(
        id=f"task-{os.urandom(5).hex()}",
        agent_id=agent.id,
        spec=TaskSpec(description="left open"),
        state=TaskState.RUNNING,
    )
    said = Event(kind=EventKind.TASK, agent_id=agent.id, task_id=task.id, data={"state": "running"})
    return task, said


def _agent_record(tenant: str, name: str, status: AgentStatus) -> Any:
    from orchestrator.domain import AgentInfo, AgentSpec

    return AgentInfo(
        id=f"agent-{os.urandom(5).hex()}",
        path=f"{tenant}/{name}",
        tenant=tenant,
        parent_id=None,
        spec=AgentSpec(name=name),
        status=status,
        actor_id=os.urandom(16).hex(),
    )


async def test_an_open_task_of_a_fired_agent_is_failed(agents: Any) -> None:
    """R1 through a fire: a task recorded running whose agent is recorded stopped (the state
    R1 left behind) is failed by the recorder's full sweep, with its event, within
    JANITOR_INTERVAL_S and a margin."""
    from actors._recorder import JANITOR_INTERVAL_S

    recorder = agents.runtime.recorder
    gone = _agent_record(agents.tenant, "fired", AgentStatus.STOPPED)
    await recorder.put_agent.remote(gone)
    task, said = _open_task_of(gone)
    await recorder.put_task.remote(task, said)
    done = await _agrees(agents, task.id, JANITOR_INTERVAL_S + SETTLE_S)
    assert done.state == TaskState.FAILED and gone.path in (done.error or ""), done.error


async def test_a_restarted_cluster_fails_what_its_dead_agents_left_open(
    ray_session: Any, tmp_path: Any
) -> None:
    """R1 through a cluster restart: records of a previous cluster (an idle agent with a
    running task; a stopped one with a pending task) given to a new recorder: at start it
    records the agent failed and both tasks failed, each with its event."""
    import ray

    from actors import NAMESPACE, Recorder
    from orchestrator.records import SQLiteStore

    idle = _agent_record("t-restart", "idle", AgentStatus.IDLE)
    stopped = _agent_record("t-restart", "stopped", AgentStatus.STOPPED)
    left: list[TaskInfo] = []
    with SQLiteStore(tmp_path) as store:  # what the previous cluster left
        for agent in (idle, stopped):
            store.put_agent(agent)
            task, said = _open_task_of(agent)
            store.put_task(task, said)
            left.append(task)
    name = f"_test/recorder-{os.urandom(4).hex()}"
    recorder = Recorder.options(name=name, namespace=NAMESPACE, num_cpus=0).remote(str(tmp_path))  # type: ignore[attr-defined]
    try:
        await recorder.start_janitor.remote()
        t0 = time.monotonic()
        while True:
            tasks = [await recorder.get_task.remote(t.id) for t in left]
            agent = await recorder.get_agent.remote(idle.id)
            if all(t.state.done for t in tasks) and agent.status == AgentStatus.FAILED:
                break
            assert time.monotonic() - t0 < SETTLE_S, (tasks, agent)
            await asyncio.sleep(0.2)  # polling interval of a deadline-bound wait
        for t in tasks:
            events = await recorder.events.remote(task_id=t.id, limit=100)
            assert t.state == TaskState.FAILED and _last_state(events) == "failed", t
        assert "died" in (tasks[0].error or "") and "stopped" in (tasks[1].error or "")
    finally:
        ray.kill(recorder)
