"""CLI commands that talk to a running HTTP API (``orchestrator serve``) through the SDK.

The API's address and key come from ``--url`` / ``--api-key`` or ``ORCHESTRATOR_API_URL`` /
``ORCHESTRATOR_API_KEY``; without them, from the local cluster ``orchestrator up`` started
(its key only ever goes to its own URL). Everything printed goes through ``_terminal.echo``:
names, roles, results and events are tenants' text, shown with control characters escaped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ._terminal import echo
from .config import ENV_API_KEY, ENV_API_URL

__all__ = ["register"]

DEFAULT_URL = "http://127.0.0.1:8000"

_url = click.option(
    "--url",
    envvar=ENV_API_URL,
    default=None,
    help=f"The API (env {ENV_API_URL}) [default: the local cluster of `orchestrator up`, "
    f"else {DEFAULT_URL}].",
)
_key = click.option(
    "--api-key",
    envvar=ENV_API_KEY,
    default=None,
    help=f"Your API key (env {ENV_API_KEY}) [default: the local cluster's key, for its URL].",
)


def _resolve(url: str | None, api_key: str | None) -> tuple[str, str]:
    """The URL and key to use: the options', else the running local cluster's."""
    cluster = None
    if url is None or api_key is None:
        from .local import current

        cluster = current()
    if url is None:
        url = cluster.api_url if cluster is not None else DEFAULT_URL
    if api_key is None:
        if cluster is None or url.rstrip("/") != cluster.api_url:
            raise click.UsageError(
                f"no API key: pass --api-key or set {ENV_API_KEY} "
                "(or start a local cluster with `orchestrator up`)"
            )
        api_key = cluster.api_key
    return url, api_key


def _client(url: str, api_key: str) -> Any:
    from .sdk import Client

    return Client(url, api_key)


def _status(url: str, api_key: str) -> None:
    """Is the API up, and what does this tenant have."""
    with _client(url, api_key) as api:
        echo(f"api {url}: {'ok' if api.healthy() else 'unhealthy'}")
        for kind, counts in api.stats().items():
            shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"
            echo(f"{kind}: {shown}")
    from .local import status_lines  # the local cluster's dashboard and nodes, if it is this one

    for line in status_lines(url):
        echo(line)


def _agents(url: str, api_key: str) -> None:
    """This tenant's agents."""
    with _client(url, api_key) as api:
        for agent in api.agents():
            info = agent.info
            echo(f"{info.id}  {info.status.value:<8}  {info.path}  ({info.spec.role})")


def _tasks(url: str, api_key: str, state: str | None, limit: int) -> None:
    """This tenant's tasks, newest first (a task waiting for a person: what it waits on)."""
    with _client(url, api_key) as api:
        for task in api.tasks(state=state, limit=limit):
            info = task.info
            outcome = " ".join((_waits_on(task) or info.result or info.error or "").split())[:70]
            echo(f"{info.id}  {info.state.value:<9}  {info.agent_id}  {outcome}{_spent(info)}")


def _spent(info: Any) -> str:
    """What a task's subtree spent, short, once it spent anything: ``  [12,400 tok $0.0310,
    7 steps]`` (``$?``: only models without a configured price were called; ``$0.0310+?``:
    some were)."""
    usage = info.subtree_usage
    if usage is None or not (usage.model_calls or usage.steps):
        return ""
    unpriced = getattr(usage, "unpriced_calls", 0)
    if unpriced and unpriced >= usage.model_calls:
        cost = "$?"
    else:
        cost = f"${usage.cost_usd:.4f}" + ("+?" if unpriced else "")
    return f"  [{usage.tokens:,} tok {cost}, {usage.steps} steps]"


def _waits_on(task: Any) -> str | None:
    """What a task waits for a person on, in a line: its question, or the actions to
    approve and why; None when it waits for no answer or approval."""
    waiting = task.waiting
    if waiting is None:
        return None
    if waiting.question is not None:
        return f"asks: {waiting.question}"
    what = "; ".join(_action(x.model_dump(mode="json")) for x in waiting.actions)
    return f"approve? {what} ({waiting.reason or 'no reason given'})"


def _answer(url: str, api_key: str, task_id: str, text: str) -> None:
    """Answer the question a task waits on (input_required)."""
    with _client(url, api_key) as api:
        _said(api.task(task_id).answer(text))


def _approve(url: str, api_key: str, task_id: str) -> None:
    """Approve the actions a task waits on (approval_required): they are carried out."""
    with _client(url, api_key) as api:
        _said(api.task(task_id).approve())


def _reject(url: str, api_key: str, task_id: str, reason: str) -> None:
    """Refuse the actions a task waits on: the step fails with REASON."""
    with _client(url, api_key) as api:
        _said(api.task(task_id).reject(reason))


def _pause(url: str, api_key: str, task_id: str, task_only: bool) -> None:
    """Pause a task and its open subtasks: none takes another step until resumed."""
    with _client(url, api_key) as api:
        _said(api.task(task_id).pause(subtree=not task_only))


def _resume(url: str, api_key: str, task_id: str, task_only: bool) -> None:
    """Resume a paused task and its paused subtasks."""
    with _client(url, api_key) as api:
        _said(api.task(task_id).resume(subtree=not task_only))


def _said(task: Any) -> None:
    echo(f"task {task.id}: {task.state.value}")


def _takeover(url: str, api_key: str, agent_id: str, ttl_s: float) -> None:
    """Take an agent's desktop over (or renew the lease): its running task pauses and only
    your input reaches the desktop until you hand it back (or the lease runs out)."""
    with _client(url, api_key) as api:
        lease = api.agent(agent_id).take_over(ttl_s)
    paused = f"; task {lease.task_id} paused" if lease.task_id else ""
    until = time.strftime("%H:%M:%S", time.localtime(lease.expires_at))
    echo(f"agent {agent_id}: taken over by {lease.holder} until {until}{paused}")


def _handback(url: str, api_key: str, agent_id: str, note: str | None) -> None:
    """Hand an agent's desktop back: its task resumes with NOTE in its history."""
    with _client(url, api_key) as api:
        lease = api.agent(agent_id).hand_back(note)
    resumed = f"; task {lease.task_id} resumes" if lease.task_id else ""
    echo(f"agent {agent_id}: handed back{resumed}")


def _watch(url: str, api_key: str, task_id: str) -> None:
    """Print a task's events live (Server-Sent Events) until it ends."""
    with _client(url, api_key) as api:
        task = api.task(task_id)
        for e in task.stream():
            echo(f"{e.seq:>6}  {e.kind.value:<7}  {_describe(e.data)}")
        task.refresh()
        echo(f"task {task.id}: {task.state.value}: {task.result or task.error}")
        if task.usage is not None and task.subtree_usage is not None:
            echo(
                f"spent: {task.usage.summary()}; with its subtasks: {task.subtree_usage.summary()}"
            )


def _describe(data: dict[str, Any]) -> str:
    usage = data.get("usage")
    if isinstance(usage, list) and usage:  # a model call: what it decided, its tokens
        tokens = sum(int(u.get("input_tokens", 0)) + int(u.get("output_tokens", 0)) for u in usage)
        said = {k: v for k, v in data.items() if k != "usage"}
        return f"[{tokens:,} tok] " + " ".join(str(said).split())[:90]
    action = data.get("action")
    if isinstance(action, dict):
        ok = "ok" if data.get("result", {}).get("ok") else "failed"
        return f"{_action(action)} -> {ok}"
    return " ".join(str(data).split())[:100]


def _action(action: dict[str, Any]) -> str:
    what = action.get("command") or action.get("text") or action.get("keys") or ""
    return f"{action.get('type')} {str(what)[:60]}"


def _screenshot(url: str, api_key: str, agent_id: str, out: Path) -> None:
    """Save an agent's screen as PNG (or JPEG by the file's suffix)."""
    fmt = "jpeg" if out.suffix.lower() in (".jpg", ".jpeg") else "png"
    with _client(url, api_key) as api:
        api.agent(agent_id).screenshot(fmt).save(out)
    echo(str(out))


def register(main: click.Group) -> None:
    """Add the API commands to the ``orchestrator`` group."""

    def command(fn: Callable[..., None], name: str) -> Callable[..., None]:
        @functools.wraps(fn)
        def run(url: str | None, api_key: str | None, **kwargs: Any) -> None:
            fn(*_resolve(url, api_key), **kwargs)

        # fn's own options, in a list of run's own (the decorators below append to it)
        run.__click_params__ = list(getattr(fn, "__click_params__", []))  # type: ignore[attr-defined]
        return main.command(name, help=fn.__doc__)(_key(_url(run)))

    command(_status, "status")
    command(_agents, "agents")
    command(
        click.option("--limit", default=20, show_default=True)(
            click.option("--state", default=None, help="Only tasks in this state.")(_tasks)
        ),
        "tasks",
    )
    command(click.argument("task_id")(_watch), "watch")
    command(click.argument("task_id")(click.argument("text")(_answer)), "answer")
    command(click.argument("task_id")(_approve), "approve")
    command(click.argument("task_id")(click.argument("reason")(_reject)), "reject")
    only = click.option("--task-only", is_flag=True, help="The task alone, not its subtasks.")
    command(only(click.argument("task_id")(_pause)), "pause")
    command(only(click.argument("task_id")(_resume)), "resume")
    ttl = click.option(
        "--ttl", "ttl_s", type=float, default=900.0, show_default=True, help="Seconds it lasts."
    )
    command(ttl(click.argument("agent_id")(_takeover)), "takeover")
    note = click.option("--note", default=None, help="What you did, for the agent.")
    command(note(click.argument("agent_id")(_handback)), "handback")
    command(
        click.argument("agent_id")(
            click.option(
                "-o", "--out", type=click.Path(path_type=Path), default=Path("screenshot.png")
            )(_screenshot)
        ),
        "screenshot",
    )
