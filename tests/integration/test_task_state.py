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
import os
import random
import signal
import time
from typing import Any

import pytest

from orchestrator.domain import AgentStatus, Event, EventKind, TaskInfo, TaskSpec, TaskState

pytestmark = pytest.mark.timeout(180)

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


async def _agrees(agents: Any, task_id: str) -> TaskInfo:
    """The stored task, once it is done and its last state event says the same."""

    async def settled() -> TaskInfo | None:
        task: TaskInfo = await agents.runtime.task(task_id)
        last = _last_state(await agents.events(task_id=task_id))
        assert task.state.done and task.state.value == last, (task.state.value, last, task.error)
        return task

    done: TaskInfo = await agents.until(
        settled, timeout_s=SETTLE_S, interval_s=0.2, what=f"task {task_id} settled"
    )
    return done


async def _stream_ends(agents: Any, task_id: str) -> list[str]:
    """The task's SSE stream, as the API serves it, read to its end."""
    from serve_app._app import _event_stream

    chunks: list[str] = []

    async def read() -> None:
        async for chunk in _event_stream(agents.runtime, task_id, 0):
            chunks.append(chunk)

    await asyncio.wait_for(read(), timeout=STREAM_END_S)
    return chunks


async def test_tiny_deadlines_and_racing_cancels_leave_no_task_open(agents: Any) -> None:
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


async def test_an_idle_agent_whose_worker_died_reads_failed(agents: Any) -> None:
    """R2: SIGKILL an idle child's worker process: its record, as the API reads it, says
    failed within DEAD_AGENT_S, and agrees with its parent's tree."""
    boss = await agents.create("boss")
    parent = agents.actor(boss.path)
    child = await parent.hire.remote(agents.spec("idler", role="helper"))
    assert (await agents.runtime.agent(child.id)).status == AgentStatus.IDLE
    pid = await agents.actor(child.path).process_id.remote()
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    async def failed() -> bool:
        info = await agents.runtime.agent(child.id)
        return info.status == AgentStatus.FAILED

    await agents.until(failed, timeout_s=60, interval_s=0.2, what="the dead agent read as failed")
    took = time.monotonic() - killed_at
    tree = await parent.tree.remote()
    [node] = [c for c in tree.children if c.agent.id == child.id]
    assert node.agent.status == AgentStatus.FAILED
    assert took < DEAD_AGENT_S, f"read as failed only after {took:.1f} s"
