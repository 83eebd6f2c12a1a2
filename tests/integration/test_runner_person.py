"""A person in the loop, on the real thing (local Ray cluster, real desktops, scripted
brains): a task that asks waits ``input_required`` until the agent actor is given the
answer; a paused one waits until resumed; a task waiting for a person whose agent dies is
failed by the recorder's janitor like any open task."""

from __future__ import annotations

import pytest
import ray

from orchestrator.domain import TaskSpec, TaskState

pytestmark = pytest.mark.timeout(180)


async def _state(agents, task_id: str) -> TaskState:
    task = await agents.runtime.recorder.get_task.remote(task_id)
    return task.state


async def test_a_question_is_answered_through_the_agent_actor(agents) -> None:
    boss = await agents.create("boss", role="sysadmin")
    script = {
        "steps": [
            {"ask": "Which greeting?"},
            {
                "type": "shell",
                "command": "echo {{ outputs[-1] | q }} > greeting.txt; cat greeting.txt",
            },
        ]
    }
    task = await agents.runtime.assign(boss.id, TaskSpec(description="greet", script=script))
    actor = agents.actor(boss.path)

    async def asking() -> bool:
        return await _state(agents, task.id) == TaskState.INPUT_REQUIRED

    await agents.until(asking, timeout_s=60, what="the task asks")
    tree = await actor.tree.remote()
    assert [t.state for t in tree.tasks] == [TaskState.INPUT_REQUIRED]
    await actor.pause.remote(task.id)  # taken once the answer is in, before the next step
    await actor.answer.remote(task.id, "hello there")

    async def paused() -> bool:
        return await _state(agents, task.id) == TaskState.PAUSED

    await agents.until(paused, timeout_s=30, what="the task pauses")
    await actor.resume.remote(task.id)
    done = await agents.runtime.wait(task.id, 60)

    assert (done.state, done.result) == (TaskState.SUCCEEDED, "hello there")
    out = await actor.shell.remote("cat greeting.txt")
    assert out.stdout.strip() == "hello there"
    events = await agents.events(task_id=task.id)
    states = [e.data["state"] for e in events if e.kind == "task"]
    assert states == [
        "pending", "running", "input_required", "running", "paused", "running", "succeeded",
    ]  # fmt: skip


async def test_the_janitor_fails_a_task_waiting_for_a_person_whose_agent_died(agents) -> None:
    boss = await agents.create("boss", role="sysadmin")
    script = {"steps": [{"approve": "reboot", "actions": [{"type": "shell", "command": "true"}]}]}
    task = await agents.runtime.assign(boss.id, TaskSpec(description="ask", script=script))

    async def waiting() -> bool:
        return await _state(agents, task.id) == TaskState.APPROVAL_REQUIRED

    await agents.until(waiting, timeout_s=60, what="the task awaits approval")
    ray.kill(agents.actor(boss.path), no_restart=True)

    async def failed() -> bool:
        await agents.runtime.recorder.fail_dead_agents.remote()
        return await _state(agents, task.id) == TaskState.FAILED

    await agents.until(failed, timeout_s=60, what="the janitor fails the task")
    ended = await agents.runtime.recorder.get_task.remote(task.id)
    assert ended.error == f"agent {boss.path} died"
