"""The agent hierarchy on the real thing: a local Ray cluster on loopback, real desktops,
scripted brains. Each test works under its own tenant and fires its agents at the end.

What a user sees is asserted: actors listed by their path, desktop containers with their
labels, tasks that succeed or fail with a reason, the timeline in the records, screenshots
that can be fetched, files on the desktops.
"""

from __future__ import annotations

import asyncio

import pytest
import ray

from orchestrator.domain import AgentStatus, Event, EventKind, TaskSpec, TaskState
from orchestrator.errors import AgentError
from orchestrator.records import SQLiteStore

pytestmark = pytest.mark.timeout(180)

JPEG_MAGIC = b"\xff\xd8\xff"

# Opens an xterm and returns once its window is shown and has the keyboard focus, so that
# what is typed next lands in it.
OPEN_XTERM = (
    "xterm -geometry 80x10+10+10 >/dev/null 2>&1 & "
    "xdotool search --sync --onlyvisible --class xterm windowfocus --sync >/dev/null"
)


def _wait_file(path: str, text: str) -> str:
    """A check command: wait (up to 10 s) until ``path`` holds ``text``, then print it."""
    return (
        f"for i in $(seq 100); do grep -qx {text} {path} 2>/dev/null && break; sleep 0.1; done; "
        f"cat {path}"
    )


def _states(events: list[Event]) -> list[str]:
    return [e.data["state"] for e in events if e.kind == EventKind.TASK]


def _interval(events: list[Event]) -> tuple[float, float]:
    """When a task ran: its `running` event to its terminal event."""
    at = {e.data["state"]: e.at for e in events if e.kind == EventKind.TASK}
    end = next(at[s] for s in ("succeeded", "failed", "cancelled") if s in at)
    return at["running"], end


# ---------------------------------------------------------------------- 1. creating an agent


async def test_create_top_level_agent(agents) -> None:
    info = await agents.create("boss", role="sysadmin")

    assert info.path == f"{agents.tenant}/boss"
    assert info.parent_id is None and info.tenant == agents.tenant
    assert info.status == AgentStatus.IDLE
    # Ray lists the actor under its path, in the runtime's namespace
    assert {"name": info.path, "namespace": "orchestrator"} in ray.util.list_named_actors(
        all_namespaces=True
    )
    # its desktop is a running container labelled with the agent
    (container,) = agents.containers(info.path)
    assert container["State"] == "running"
    assert container["Labels"]["orchestrator.path"] == info.path
    assert container["Labels"]["orchestrator.agent"] == info.id
    # the tree: the agent alone, idle, nothing open
    tree = await agents.actor(info.path).tree.remote()
    assert tree.agent.id == info.id and tree.agent.path == info.path
    assert tree.children == [] and tree.tasks == []
    # the records know it
    assert (await agents.runtime.agent(info.id)).status == AgentStatus.IDLE
    assert [a.id for a in await agents.runtime.list_agents(tenant=agents.tenant)] == [info.id]
    # a second agent with the same path is refused, and the first one is untouched
    try:
        await agents.runtime.create_agent(agents.tenant, agents.spec("boss"))
    except AgentError as e:
        assert "exists already" in str(e)
    else:
        raise AssertionError("a second agent with the same path was created")
    assert len(agents.containers(info.path)) == 1

    await agents.fire_all()
    assert info.path not in agents.named_actors()
    assert agents.containers(info.path) == []
    assert (await agents.runtime.agent(info.id)).status == AgentStatus.STOPPED


# ---------------------------------------------------------------------- 2. doing a task


async def test_do_task_with_gui_and_shell(agents) -> None:
    boss = await agents.create("boss", role="sysadmin")
    script = {
        "steps": [
            {"type": "shell", "command": OPEN_XTERM},
            {"type": "type", "text": "echo typed-into-xterm > ~/gui.txt"},
            {"type": "keypress", "keys": ["Return"]},
            {"check": {"command": _wait_file("~/gui.txt", "typed-into-xterm"), "expect": "typed"}},
        ],
        "result": "file says {{ outputs[-1] }}",
    }
    done = await agents.run(boss.id, TaskSpec(description="type into an xterm", script=script))

    assert done.state == TaskState.SUCCEEDED, done.error
    assert done.result == "file says typed-into-xterm"
    assert done.error is None
    # the file really is on the agent's desktop, written by the shell in the xterm
    shell = await agents.actor(boss.path).shell.remote("cat ~/gui.txt; pgrep -x xterm")
    assert shell.exit_code == 0 and shell.stdout.startswith("typed-into-xterm\n"), shell
    # the stored task is the same
    stored = await agents.runtime.task(done.id)
    assert stored.state == TaskState.SUCCEEDED and stored.result == done.result

    events = await agents.events(task_id=done.id)
    assert _states(events) == ["pending", "running", "succeeded"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    steps = [e for e in events if e.kind == EventKind.STEP]
    assert [s.data["action"]["type"] for s in steps] == ["shell", "type", "keypress", "shell"]
    assert all(s.data["result"]["ok"] for s in steps), [s.data["result"] for s in steps]
    # steps come between `running` and `succeeded`
    running = next(e.seq for e in events if e.data.get("state") == "running")
    succeeded = next(e.seq for e in events if e.data.get("state") == "succeeded")
    assert all(running < s.seq < succeeded for s in steps)
    # each step refers to a screenshot that can be fetched from the records
    for s in steps:
        assert len(s.blobs) == 1, s
        jpeg = await agents.runtime.recorder.get_blob.remote(s.blobs[0])
        assert jpeg.startswith(JPEG_MAGIC) and len(jpeg) > 1000
    # the triage and the final decision are on the timeline too
    model_calls = [e.data["call"] for e in events if e.kind == EventKind.MODEL]
    assert model_calls[0] == "triage" and model_calls[-1] == "step"
    assert (await agents.runtime.agent(boss.id)).status == AgentStatus.IDLE


# ---------------------------------------------------------------------- 3. delegating


async def test_delegate_parallel_subtasks_reuse_and_check(agents) -> None:
    boss = await agents.create("boss", role="project lead")
    script = {
        "subtasks": [
            {
                "id": "a",
                "role": "Writer",
                "description": "write alpha",
                "script": {"steps": [{"type": "shell", "command": "sleep 3; echo alpha"}]},
            },
            {
                "id": "b",
                "role": "Reader",
                "description": "read beta",
                "script": {"steps": [{"type": "shell", "command": "sleep 3; echo beta"}]},
            },
            {
                "id": "c",
                "role": "Writer",
                "description": "combine",
                "depends_on": ["a", "b"],
                "script": {
                    "steps": [
                        {
                            "type": "shell",
                            "command": "echo {{ results.a }}+{{ results.b }} | tee ~/c.txt",
                        }
                    ]
                },
            },
        ],
        "check": [
            {
                "check": {
                    "command": "echo 'checked {{ results.c }}' | tee ~/check.txt",
                    "expect": "checked alpha+beta",
                }
            }
        ],
        "result": "final: {{ results.c }}",
    }
    done = await agents.run(boss.id, TaskSpec(description="team work", script=script), 90)

    assert done.state == TaskState.SUCCEEDED, done.error
    assert done.result == "final: alpha+beta"

    # children hired with role-derived names; the idle Writer was reused for `c`
    writer, reader = f"{boss.path}/writer", f"{boss.path}/reader"
    tree = await agents.actor(boss.path).tree.remote()
    assert sorted(c.agent.path for c in tree.children) == [reader, writer]
    assert all(c.agent.parent_id == boss.id for c in tree.children)
    assert {writer, reader} <= agents.named_actors()
    assert agents.container_paths(boss.path) == {boss.path, writer, reader}

    subtasks = await agents.subtasks(done.id)
    assert len(subtasks) == 3
    # the parent lists its subtasks
    assert sorted(done.subtask_ids) == sorted(t.id for t in subtasks)
    assert (await agents.runtime.task(done.id)).subtask_ids == done.subtask_ids
    by_desc = {t.spec.description.split("\n")[0]: t for t in subtasks}
    a, b, c = by_desc["write alpha"], by_desc["read beta"], by_desc["combine"]
    assert all(t.state == TaskState.SUCCEEDED for t in (a, b, c))
    assert (a.result, b.result, c.result) == ("alpha", "beta", "alpha+beta")
    assert c.agent_id == a.agent_id != b.agent_id  # the same Writer did a and c
    assert c.spec.inputs == {"a": "alpha", "b": "beta"}

    # a and b ran at the same time; c ran after both
    ia, ib, ic = [_interval(await agents.events(task_id=t.id)) for t in (a, b, c)]
    assert max(ia[0], ib[0]) < min(ia[1], ib[1]), (ia, ib)
    assert ic[0] >= max(ia[1], ib[1]), (ia, ib, ic)

    # the parent's timeline: waiting while the subtasks ran, messages to and from children
    events = await agents.events(task_id=done.id)
    assert _states(events) == ["pending", "running", "waiting", "running", "succeeded"]
    messages = [e.data for e in events if e.kind == EventKind.MESSAGE]
    sent = {(m["to"], m["subtask"]) for m in messages if m["from"] == boss.path}
    assert sent == {(writer, "a"), (reader, "b"), (writer, "c")}
    replies = {(m["from"], m["subtask"], m["state"]) for m in messages if m["to"] == boss.path}
    assert replies == {(writer, "a", "succeeded"), (reader, "b", "succeeded"),
                       (writer, "c", "succeeded")}  # fmt: skip
    # the check ran on the parent's own desktop, not on a child's
    checks = [e for e in events if e.kind == EventKind.STEP]
    assert [s.data["action"]["type"] for s in checks] == ["shell"]
    parent_file = await agents.actor(boss.path).shell.remote("cat ~/check.txt")
    assert parent_file.stdout.strip() == "checked alpha+beta"
    child_file = await agents.actor(writer).shell.remote("cat ~/check.txt ~/c.txt")
    assert "checked" not in child_file.stdout and "alpha+beta" in child_file.stdout


# ---------------------------------------------------------------------- 4. a failing subtask


async def test_failed_subtask_retried_on_fresh_specialist_then_parent_fails(agents) -> None:
    boss = await agents.create("boss")
    script = {
        "subtasks": [
            {
                "id": "probe",
                "role": "tester",
                "description": "probe the widget",
                "script": {
                    "steps": [
                        {
                            "check": {
                                "command": "echo widget-is-broken",
                                "expect": "widget-ok",
                                "message": "widget probe",
                            }
                        }
                    ]
                },
            }
        ]
    }
    spec = TaskSpec(description="probe", script=script, max_attempts=2)
    done = await agents.run(boss.id, spec, 90)

    assert done.state == TaskState.FAILED
    assert done.result is None
    # the reason names the subtask, its role, the attempts, the check and its output
    assert "subtask probe (tester) failed after 2 attempt(s)" in done.error
    assert "widget probe failed: its output lacks 'widget-ok'" in done.error
    assert "widget-is-broken" in done.error

    # two attempts, each on its own specialist: the second one a fresh hire
    subtasks = await agents.subtasks(done.id)
    assert [t.state for t in subtasks] == [TaskState.FAILED, TaskState.FAILED]
    assert subtasks[0].agent_id != subtasks[1].agent_id
    assert all("widget-is-broken" in (t.error or "") for t in subtasks)
    tester, fresh = f"{boss.path}/tester", f"{boss.path}/tester-2"
    assert agents.container_paths(boss.path) == {boss.path, tester, fresh}
    assert {tester, fresh} <= agents.named_actors()

    events = await agents.events(task_id=done.id)
    assert _states(events) == ["pending", "running", "waiting", "failed"]
    logs = [e.data for e in events if e.kind == EventKind.LOG]
    assert [(x["subtask"], x["attempt"], x["next"]) for x in logs] == [
        ("probe", 1, "retry on a fresh specialist"),
        ("probe", 2, "give up"),
    ]
    assert all("widget-is-broken" in x["error"] for x in logs)
    replies = [
        (e.data["from"], e.data["state"])
        for e in events
        if e.kind == EventKind.MESSAGE and e.data["to"] == boss.path
    ]
    assert replies == [(tester, "failed"), (fresh, "failed")]


# ---------------------------------------------------------------------- 5. cancelling


async def test_cancel_reaches_the_specialist_and_kills_its_command(agents) -> None:
    boss = await agents.create("boss")
    script = {
        "subtasks": [
            {
                "id": "long",
                "role": "sleeper",
                "description": "sleep a long time",
                "script": {"steps": [{"type": "shell", "command": "sleep 300", "timeout_s": 600}]},
            }
        ]
    }
    task = await agents.runtime.assign(boss.id, TaskSpec(description="long", script=script))
    sleeper = f"{boss.path}/sleeper"

    async def child_running() -> object:
        subs = await agents.subtasks(task.id)
        return subs and subs[0].state == TaskState.RUNNING and subs[0]

    child_task = await agents.until(child_running, timeout_s=30, what="the subtask running")
    child = agents.actor(sleeper)

    async def sleeping() -> bool:
        res = await child.shell.remote("pgrep -x sleep")
        return bool(res.exit_code == 0)

    await agents.until(sleeping, timeout_s=10, what="`sleep` running on the child's desktop")

    cancelled = await agents.runtime.cancel(task.id)
    assert cancelled.state == TaskState.CANCELLED

    async def all_cancelled() -> bool:
        parent = await agents.runtime.task(task.id)
        sub = await agents.runtime.task(child_task.id)
        return bool(parent.state == sub.state == TaskState.CANCELLED)

    await agents.until(all_cancelled, timeout_s=10, what="parent and subtask cancelled")

    async def sleep_gone() -> bool:
        res = await child.shell.remote("pgrep -x sleep")
        return bool(res.exit_code == 1)

    await agents.until(sleep_gone, timeout_s=10, what="`sleep` gone from the child's desktop")
    done = await agents.runtime.wait(task.id, 5)
    assert done.state == TaskState.CANCELLED
    assert _states(await agents.events(task_id=task.id))[-1] == "cancelled"
    assert _states(await agents.events(task_id=child_task.id))[-1] == "cancelled"
    # the agents are idle again and can take new work
    assert (await agents.runtime.agent(boss.id)).status == AgentStatus.IDLE
    again = await agents.run(
        boss.id,
        TaskSpec(description="echo", script={"steps": [{"type": "shell", "command": "echo ok"}]}),
    )
    assert again.state == TaskState.SUCCEEDED and again.result == "ok"


# ---------------------------------------------------------------------- 6. firing


async def test_fire_cascades_through_the_subtree(agents) -> None:
    boss = await agents.create("boss")
    handle = agents.actor(boss.path)
    dev = await handle.hire.remote(agents.spec("dev", role="developer"))
    ops = await handle.hire.remote(agents.spec("ops", role="operator"))
    # a grandchild, busy with a long task when the firing comes
    intern = await agents.actor(dev.path).hire.remote(agents.spec("intern", role="helper"))
    long = TaskSpec(
        description="sleep",
        script={"steps": [{"type": "shell", "command": "sleep 300", "timeout_s": 600}]},
    )
    busy = await agents.actor(intern.path).assign.remote(long)
    paths = {boss.path, dev.path, ops.path, intern.path}
    assert intern.path == f"{boss.path}/dev/intern"
    assert paths <= agents.named_actors()
    assert agents.container_paths(boss.path) == paths

    async def intern_busy() -> bool:
        task = await agents.runtime.task(busy.id)
        return bool(task.state == TaskState.RUNNING)

    await agents.until(intern_busy, timeout_s=15, what="the grandchild's task running")

    # fire returns once the subtree has shut down
    await asyncio.wait_for(agents.runtime.fire(boss.id), timeout=60)
    agents.created.clear()

    await agents.until(
        lambda: not (paths & agents.named_actors()), timeout_s=15, what="actors gone"
    )
    await agents.until(
        lambda: not agents.containers(boss.path), timeout_s=15, what="containers gone"
    )
    for info in (boss, dev, ops, intern):
        assert (await agents.runtime.agent(info.id)).status == AgentStatus.STOPPED
    assert (await agents.runtime.task(busy.id)).state == TaskState.CANCELLED


async def test_a_fired_agents_id_never_reaches_a_later_agent_of_its_name(agents) -> None:
    """Fire bob, create bob again: the first bob's id is gone for good (404 on every use),
    not an alias of the new bob; the janitor leaves the new bob alone."""
    from orchestrator.errors import NotFoundError

    first = await agents.create("bob", role="tester")
    await agents.runtime.fire(first.id)
    agents.created.clear()
    second = await agents.create("bob", role="tester")
    assert second.path == first.path and second.id != first.id
    assert second.actor_id and second.actor_id != first.actor_id
    with pytest.raises(NotFoundError):
        await agents.runtime.handle(first.id)
    with pytest.raises(NotFoundError):
        await agents.runtime.fire(first.id)
    with pytest.raises(NotFoundError):
        await agents.runtime.assign(first.id, TaskSpec(description="not for bob 2"))
    assert second.id not in await agents.runtime.recorder.fail_dead_agents.remote()
    again = await agents.run(
        second.id,
        TaskSpec(description="hi", script={"steps": [{"type": "shell", "command": "echo 2"}]}),
    )
    assert again.state == TaskState.SUCCEEDED
    assert (await agents.runtime.agent(second.id)).status == AgentStatus.IDLE


# ---------------------------------------------------------------------- 7. records


async def test_records_survive_a_recorder_restart_and_reopen(agents) -> None:
    boss = await agents.create("boss")
    script = {
        "steps": [
            {"type": "shell", "command": "echo persisted"},
            {"type": "wait", "duration_s": 0.1},
        ],
        "result": "{{ outputs[0] }}",
    }
    done = await agents.run(boss.id, TaskSpec(description="persist me", script=script))
    assert done.state == TaskState.SUCCEEDED and done.result == "persisted"
    before = await agents.events(task_id=done.id)
    shots = [b for e in before for b in e.blobs]
    assert shots

    # restart the recorder actor (Ray reruns its constructor on the same data directory)
    recorder = agents.runtime.recorder
    ray.kill(recorder, no_restart=False)

    async def answers() -> object:
        try:
            return await agents.runtime.task(done.id)
        except ray.exceptions.RayActorError:
            return None

    again = await agents.until(answers, timeout_s=30, what="the restarted recorder answering")
    assert again.state == TaskState.SUCCEEDED and again.result == "persisted"
    after = await agents.events(task_id=done.id)
    assert [(e.seq, e.kind, e.data) for e in after] == [(e.seq, e.kind, e.data) for e in before]
    assert (await recorder.get_blob.remote(shots[0])).startswith(JPEG_MAGIC)
    # the agent goes on recording through the restarted recorder
    more = await agents.run(
        boss.id,
        TaskSpec(description="after", script={"steps": [{"type": "shell", "command": "echo 2"}]}),
    )
    assert more.state == TaskState.SUCCEEDED
    assert _states(await agents.events(task_id=more.id)) == ["pending", "running", "succeeded"]

    # a new store opened on the same data directory, as after a restart of everything
    store = SQLiteStore(agents.data_dir)
    try:
        agent = store.get_agent(boss.id)
        assert agent is not None and agent.path == boss.path
        tasks = {t.id: t for t in store.list_tasks(agent_id=boss.id)}
        assert tasks[done.id].result == "persisted" and tasks[more.id].state == TaskState.SUCCEEDED
        stored = store.events(task_id=done.id, limit=1000)
        assert [e.seq for e in stored] == [e.seq for e in before]
        for address in shots:
            assert store.get_blob(address).startswith(JPEG_MAGIC)
            assert store.blob_media_type(address) == "image/jpeg"
    finally:
        store.close()


# ---------------------------------------------------------------------- known bugs


async def test_failing_check_command_reports_its_message(agents) -> None:
    boss = await agents.create("boss")
    script = {"steps": [{"check": {"command": "echo disk-full; exit 3", "message": "disk probe"}}]}
    done = await agents.run(boss.id, TaskSpec(description="probe the disk", script=script))
    assert done.state == TaskState.FAILED
    assert "disk-full" in done.error
    assert "disk probe failed: it exited with status 3" in done.error, done.error
