"""An autoscaling local cluster on the real thing (``orchestrator up --autoscale``): a head
with 2 desktop units, worker nodes of 2 units that Ray's autoscaler starts on this machine
while agents wait for a desktop, and removes once idle.

Six agents (four beyond the head's units), top-level ones and children hired by one of
them: they are ``starting`` with an event saying they wait for a node, the node count
rises, every agent becomes ready and works on its desktop (screenshot, action, shell, a
file, a task with its events), including the ones on the new nodes; fired, the workers go
after the idle timeout and no record is left open; ``down`` stops every process of the
cluster, the workers' raylets too.

The cluster is its own (data directory, Ray temp dir, ports): the session's is not touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from orchestrator import _local_head, local
from orchestrator.domain import AgentStatus, TaskState
from orchestrator.local import Autoscale, LocalCluster
from orchestrator.records import SQLiteStore
from orchestrator.sdk import Client

pytestmark = pytest.mark.integration

T = TypeVar("T")

CLI = str(Path(sys.executable).parent / "orchestrator")
HEAD_DESKTOPS = 2
WORKER_DESKTOPS = 2
AGENTS = 6
"""Four beyond the head's units: two worker nodes."""
IDLE_TIMEOUT_S = 18.0
UP_TIMEOUT_S = 150.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, poll_s: float = 0.5) -> T:
    """``check()``'s first truthy value, polled until ``timeout_s`` (then the test fails)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll_s)  # polling interval of a deadline-bound wait
    raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {last!r})")


@pytest.fixture
def cluster(tmp_path: Path, desktop_image: str) -> Iterator[LocalCluster]:
    data_dir = tmp_path / "data"
    saved = {k: os.environ.pop(k) for k in ("RAY_ADDRESS",) if k in os.environ}
    try:
        yield local.up(
            api_port=_free_port(),
            dashboard_port=_free_port(),
            data_dir=data_dir,
            timeout_s=UP_TIMEOUT_S,
            autoscale=Autoscale(
                head_desktops=HEAD_DESKTOPS,
                max_workers=3,
                worker_desktops=WORKER_DESKTOPS,
                idle_timeout_s=IDLE_TIMEOUT_S,
            ),
        )
    finally:
        local.down(data_dir, timeout_s=90)  # a no-op after the test's own `down`
        shutil.rmtree(_local_head.ray_temp_dir(data_dir.resolve()), ignore_errors=True)
        os.environ.update(saved)


def _raylet_of(pid: int) -> int | None:
    """The raylet a Ray worker process runs under (its node), walking up the parents."""
    while pid > 1:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                return pid
        except OSError:
            return None
        fields = _stat(pid)
        if not fields:
            return None
        pid = int(fields[1])
    return None


def _stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, ...); [] once the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat[stat.rindex(")") + 2 :].split()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waits for its parent to collect it: not running)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def _desktop_owner_pid(agent_path: str) -> int:
    from orchestrator._docker import client

    found = client().api.containers(filters={"label": f"orchestrator.path={agent_path}"})
    assert len(found) == 1, (agent_path, found)
    labels = found[0]["Labels"]
    owner = labels["orchestrator.owner"]
    if owner.startswith("handover:"):  # a child's desktop its parent prepared: the holder
        owner = (Path(labels["orchestrator.sockdir"]) / "owner").read_text().strip()
    return int(owner.rsplit(":", 2)[1])


def test_autoscale_grows_works_and_shrinks(cluster: LocalCluster, desktop_image: str) -> None:
    data_dir = cluster.data_dir
    assert [n.head for n in local.nodes(data_dir)] == [True]
    api = Client(cluster.api_url, cluster.api_key, timeout=300)
    store = SQLiteStore(data_dir, readonly=True)
    names = [f"as-{i}" for i in range(AGENTS - 1)]

    def hire(name: str) -> Any:
        return api.create_agent(name, role="worker", desktop={"image": desktop_image})

    # A lead on the head; then at once two more top-level agents and three children of the
    # lead (a child's hire and a top-level create are placed differently): four beyond the
    # head's two units.
    lead = hire("lead")

    def child(name: str) -> Any:
        return lead.hire(name, role="specialist", desktop={"image": desktop_image})

    t0 = time.monotonic()
    with ThreadPoolExecutor(AGENTS) as pool:
        hires = [pool.submit(hire if i < 2 else child, name) for i, name in enumerate(names)]
        # While they wait for nodes: `starting` in the API, with an event saying why.
        waiting = wait_for(
            "an agent shown starting, waiting for a node",
            lambda: [
                a
                for a in api.agents()
                if a.info.status == AgentStatus.STARTING
                and any(
                    "waiting for a node" in str(e.data.get("node", ""))
                    for e in store.events(agent_id=a.id)
                )
            ],
            timeout_s=60,
        )
        assert api.agent(waiting[0].id).info.status == AgentStatus.STARTING
        grown = wait_for(
            "the node count rising", lambda: len(local.nodes(data_dir)) > 1 or None, 90, 1.0
        )
        agents = [lead, *(h.result(timeout=240) for h in hires)]
    ready_s = time.monotonic() - t0
    assert grown
    waited = {
        e.agent_id
        for a in agents
        for e in store.events(agent_id=a.id)
        if "waiting for a node" in str(e.data.get("node", ""))
    }
    assert len(waited) >= AGENTS - HEAD_DESKTOPS, waited
    assert any(a.info.parent_id == lead.id for a in agents if a.id in waited)  # a child too
    assert all(a.info.status == AgentStatus.IDLE for a in agents), [a.info for a in agents]
    found = local.nodes(data_dir)
    workers = [n for n in found if not n.head]
    assert len(workers) >= (AGENTS - HEAD_DESKTOPS) // WORKER_DESKTOPS, found
    assert all(n.desktops == WORKER_DESKTOPS for n in workers), found

    # The agents are spread over several nodes (raylets), two at most on each.
    raylets = {a.path: _raylet_of(_desktop_owner_pid(a.path)) for a in agents}
    assert None not in raylets.values(), raylets
    by_node: dict[int | None, int] = {}
    for r in raylets.values():
        by_node[r] = by_node.get(r, 0) + 1
    assert len(by_node) >= 3 and max(by_node.values()) <= WORKER_DESKTOPS, by_node

    # Every agent works on its desktop, on whichever node it landed.
    def work(agent: Any) -> tuple[str, str]:
        shot = agent.screenshot()
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 1000
        assert agent.act({"type": "move", "x": 40, "y": 30}).ok
        done = agent.shell(f"echo hi-from-{agent.info.spec.name} > ~/where.txt && hostname")
        assert done.exit_code == 0, done
        assert agent.read_file("~/where.txt") == f"hi-from-{agent.info.spec.name}\n".encode()
        agent.write_file("/home/agent/note.txt", "written")
        task = agent.assign(
            "a step", script={"steps": [{"type": "shell", "command": "cat ~/note.txt"}]}
        )
        info = task.wait(timeout=120)
        assert info.state == TaskState.SUCCEEDED and "written" in (info.result or ""), info
        assert any(e.task_id == task.id for e in task.events())
        return agent.id, info.result or ""

    with ThreadPoolExecutor(AGENTS) as pool:
        results = list(pool.map(work, agents))
    assert len(results) == AGENTS

    # Fired, the workers sit idle and go; no record is left open.
    fired_at = time.monotonic()
    top_level = [a for a in agents if a.info.parent_id is None]  # the lead's children go too
    assert len(top_level) == 3
    with ThreadPoolExecutor(AGENTS) as pool:
        list(pool.map(lambda a: a.fire(), top_level))
    wait_for(
        "the node count back at the head alone",
        lambda: len(local.nodes(data_dir)) == 1,
        IDLE_TIMEOUT_S + 45,
        1.0,
    )
    shrink_s = time.monotonic() - fired_at
    live = [AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY]
    assert store.list_agents(status=live) == []
    open_tasks = [t for t in store.list_tasks(limit=100) if not t.state.done]
    assert open_tasks == []
    print(f"ready in {ready_s:.1f} s; back to one node {shrink_s:.1f} s after firing")  # noqa: T201

    # A worker comes up again for three agents (the head holds two); `down` then stops
    # every process of the cluster, that worker's raylet with it, without waiting it out.
    with ThreadPoolExecutor(3) as pool:
        again = list(pool.map(hire, ["again-0", "again-1", "again-2"]))
    assert all(a.info.status == AgentStatus.IDLE for a in again)
    assert len(local.nodes(data_dir)) >= 2
    head = cluster.head_pid
    raylets_up = [p for p in _local_head.session_members(head) if _raylet_of(p) == p]
    assert len(raylets_up) >= 2, raylets_up
    t_down = time.monotonic()
    done = subprocess.run(
        [CLI, "down"],
        env={**os.environ, "ORCHESTRATOR_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "stopped" in done.stdout, done
    assert _local_head.session_members(head) == []
    assert time.monotonic() - t_down < 60
    assert [p for p in raylets_up if _alive(p)] == [], [_stat(p) for p in raylets_up]
