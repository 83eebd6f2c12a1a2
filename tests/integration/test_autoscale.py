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

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from orchestrator import _local_head, local
from orchestrator.domain import AgentStatus, TaskState
from orchestrator.local import Autoscale, LocalCluster
from orchestrator.records import SQLiteStore
from orchestrator.sdk import Client
from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")

CLI = str(Path(sys.executable).parent / "orchestrator")
HEAD_DESKTOPS = 2
WORKER_DESKTOPS = 2
AGENTS = 6
"""Four beyond the head's units: two worker nodes."""
IDLE_TIMEOUT_S = 18.0
UP_TIMEOUT_S = 150.0


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
            api_port=free_port(),
            dashboard_port=free_port(),
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


PLACEMENT_SCRIPT = """
import asyncio, json, sys, time
import ray
from ray import serve
from ray.util.state import list_actors
from actors import Runtime
from serve_app import APP_NAME
from serve_app._app import ApiDeployment

address, keys_file = sys.argv[1:3]
runtime = Runtime.connect(address)
asyncio.run(runtime.start_pool(0))  # the warm pool's actor (no agents in it)
# Two replicas while a worker node is up: the second must not land on it either.
serve.run(
    ApiDeployment.options(num_replicas=2, autoscaling_config=None).bind(keys_file),
    name=APP_NAME, route_prefix="/", blocking=False,
)
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    states = serve.status().applications[APP_NAME].deployments["orchestrator-api"]
    if states.replica_states.get("RUNNING", 0) == 2 and len(states.replica_states) == 1:
        break
    time.sleep(0.5)  # polling interval of a deadline-bound wait
HEAD = "node:__internal_head__"
[head] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and HEAD in n["Resources"]]
# This cluster's own GCS address: without it the state API takes whatever cluster this
# machine started last (under the full suite, the session's test cluster).
alive = list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=10000)
print(json.dumps({"head": head, "actors": [[a.class_name, a.node_id] for a in alive]}))
"""
"""Run in the cluster (a driver of its own): the warm pool started, the API at two
replicas; prints the head's node id and every live actor's class and node."""


def _placements(data_dir: Path) -> dict[str, Any]:
    state = json.loads((data_dir / "local.json").read_text())
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(_local_head.driver_env())
    env["ORCHESTRATOR_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-c", PLACEMENT_SCRIPT, state["ray_address"], str(data_dir / "api-keys")],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _listening(pids: list[int]) -> list[tuple[int, str]]:
    """Every listening TCP socket (pid, local address in /proc's hex) of ``pids``."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue  # gone meanwhile
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.append((inodes[fields[9]], fields[1].rsplit(":", 1)[0]))
    return found


LOOPBACK_HEX = {
    "0100007F",  # 127.0.0.1
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}


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
    assert lead.id not in waited  # placed at once on the head: its cold start says nothing
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

    # Every listener of the cluster's processes, the fake workers' raylets, object stores
    # and dashboard agents included, is on loopback.
    listening = _listening(_local_head.session_members(cluster.head_pid))
    assert len(listening) > 10, listening  # the head's and the workers' own
    assert [a for a in listening if a[1] not in LOOPBACK_HEX] == [], listening

    # With workers up, the API's two replicas, Serve's proxies and the warm pool run on the
    # head (a worker goes away when idle; a second proxy would also take the API's port).
    placed = _placements(data_dir)
    on = [(cls, node == placed["head"]) for cls, node in placed["actors"]]
    wanted = {"ServeReplica:orchestrator:orchestrator-api", "ProxyActor", "WarmPool"}
    assert sum(1 for cls, _ in on if cls == "ServeReplica:orchestrator:orchestrator-api") == 2, on
    assert {cls for cls, _ in on} >= wanted, on
    assert all(head for cls, head in on if cls in wanted), on

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
    answers: list[int] = []

    def shrunk() -> bool:
        answers.append(httpx.get(f"{cluster.api_url}/healthz", timeout=10).status_code)
        return len(local.nodes(data_dir)) == 1

    wait_for("the node count back at the head alone", shrunk, IDLE_TIMEOUT_S + 45, 1.0)
    assert answers and set(answers) == {200}, answers  # the API stays up as workers go
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
