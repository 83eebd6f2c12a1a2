"""``orchestrator run``: create a workflow's top-level agent, give it its task, show the
timeline as it happens, then print the results and save every agent's screenshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.domain import AgentInfo, AgentTree, Event, EventKind, TaskInfo
from orchestrator.workflow import Workflow

from ._runtime import Runtime

__all__ = ["run_workflow"]

Say = Callable[[str], None]


def _describe(event: Event, path: str) -> str | None:
    d = event.data
    if event.kind == EventKind.TASK:
        extra = d.get("error") or d.get("description") or d.get("question") or ""
        if d.get("person"):  # a person's answer, verdict or resume ended a wait
            extra = f"a person: {d['person']}"
        return f"{path}: task {d.get('state')}" + (f": {_short(extra)}" if extra else "")
    if event.kind == EventKind.STEP:
        action = d.get("action", {})
        result = d.get("result", {})
        what = action.get("command") or action.get("text") or action.get("keys") or ""
        ok = "ok" if result.get("ok") else f"FAILED {_short(result.get('error') or '')}"
        return f"{path}: {action.get('type')} {_short(str(what))} -> {ok}"
    if event.kind == EventKind.MESSAGE:
        return f"{d.get('from')} -> {d.get('to')}: {_short(str(d.get('text', '')))}"
    if event.kind == EventKind.MODEL and d.get("call") in ("triage", "plan"):
        if d["call"] == "triage":
            return f"{path}: decides to {d.get('decision')}"
        roles = ", ".join(f"{s['id']} ({s['role']})" for s in d.get("subtasks", []))
        return f"{path}: plans {roles}"
    if event.kind == EventKind.LOG:  # one with a message (a review round's...) shows it
        return f"{path}: {_short(str(d.get('msg') or d))}"
    return None


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


async def _follow(rt: Runtime, user: AgentInfo, say: Say, stop: asyncio.Event, t0: float) -> None:
    """Print the timeline of ``user`` and its subtree as it is recorded (not other agents':
    the records may hold earlier runs and other clients' work)."""
    paths: dict[str, str | None] = {}
    """Agent id -> its path when it is in this run's tree, else None."""

    async def path_of(agent_id: str) -> str | None:
        if agent_id not in paths:
            info = await rt.records.get_agent(agent_id)
            path = info.path if info else None
            mine = path is not None and (path == user.path or path.startswith(user.path + "/"))
            paths[agent_id] = path if mine else None
        return paths[agent_id]

    # Start at the top agent's first event: everything of its subtree comes after it.
    after = None
    while after is None:
        first = await rt.events(agent_id=user.id, limit=1)
        if first:
            after = (first[0].seq or 1) - 1
        elif stop.is_set():
            return
        else:
            await _wait(stop, 0.1)
    while True:
        events = await rt.events(after_seq=after, limit=500)
        for e in events:
            after = max(after, e.seq or 0)
            path = await path_of(e.agent_id) if e.agent_id else None
            line = _describe(e, path) if path else None
            if line:
                say(f"[{time.monotonic() - t0:7.1f}s] {line}")
        if stop.is_set() and not events:
            return
        if not events:
            await _wait(stop, 0.25)


async def _wait(stop: asyncio.Event, timeout_s: float) -> None:
    """Until ``stop`` is set, for at most ``timeout_s`` seconds."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=timeout_s)
    except TimeoutError:
        pass


async def _screenshots(rt: Runtime, tree: AgentTree, out_dir: Path, say: Say) -> None:
    async def one(node: AgentTree) -> None:
        try:
            ref = await rt.agent_ref(node.agent.id)
            png = await ref.screenshot("png", 85)
        except Exception as e:  # noqa: BLE001 - a gone agent has no screen to show
            say(f"  (no screenshot of {node.agent.path}: {e})")
            return
        path = out_dir / (node.agent.path.replace("/", "__") + ".png")
        await asyncio.to_thread(path.write_bytes, png)
        say(f"  screenshot of {node.agent.path}: {path}")

    nodes: list[AgentTree] = []

    def walk(n: AgentTree) -> None:
        nodes.append(n)
        for c in n.children:
            walk(c)

    walk(tree)
    await asyncio.gather(*(one(n) for n in nodes))


async def run_workflow(
    rt: Runtime, wf: Workflow, *, out_dir: Path, say: Say = print, keep: bool = False
) -> TaskInfo:
    """Run ``wf`` to its end and report; returns the top-level task."""
    t0 = time.monotonic()
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    name = f"{wf.agent.name}-{int(time.time())}"
    say(f"creating {wf.tenant}/{name} ({wf.agent.role}) with its desktop...")
    user = await rt.create_agent(wf.tenant, wf.agent.model_copy(update={"name": name}))
    stop = asyncio.Event()
    follower = asyncio.create_task(_follow(rt, user, say, stop, t0))
    try:
        task = await rt.assign(user.id, wf.task)
        done = await rt.wait(task.id)
        tree = await (await rt.agent_ref(user.id)).tree()
        stop.set()
        await follower
        say("")
        say(f"task {done.id}: {done.state.value.upper()} in {time.monotonic() - t0:.1f} s")
        say(_indent(done.result or done.error or ""))
        await _print_subtasks(rt, done, say)
        await _screenshots(rt, tree, out_dir, say)
        return done
    finally:
        stop.set()
        if not follower.done():
            follower.cancel()
        if not keep:
            await rt.fire(user.id)


async def _print_subtasks(rt: Runtime, task: TaskInfo, say: Say, depth: int = 1) -> None:
    for sid in task.subtask_ids:
        sub = await rt.task(sid)
        agent = await rt.agent(sub.agent_id)
        outcome = _short(sub.result or sub.error or "")
        say(f"{'  ' * depth}- {agent.path}: {sub.state.value}: {outcome}")
        await _print_subtasks(rt, sub, say, depth + 1)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.strip().splitlines())
