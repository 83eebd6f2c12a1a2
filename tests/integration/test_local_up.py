"""`orchestrator up` / `down` and `start_local()` on the real thing: a Ray head of its own
(in processes of its own: the test session's cluster is not touched), the API on Serve, an
agent with a real desktop, and everything gone after `down`."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import _local_head, local
from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "orchestrator")
UP_TIMEOUT_S = 150
"""A cold start: a Ray head, the recorder and Serve (about 20-30 s on 2 cores)."""


class Env:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port = free_port()
        self.dashboard_port = free_port()
        self.vars = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "ORCHESTRATOR_API_URL", "ORCHESTRATOR_API_KEY")
        }
        self.vars["ORCHESTRATOR_DATA_DIR"] = str(data_dir)

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [CLI, *args],
            env=self.vars,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def up(self) -> subprocess.CompletedProcess[str]:
        args = ["up", "--port", str(self.api_port), "--dashboard-port", str(self.dashboard_port)]
        return self.cli(*args, "--desktops", "2", timeout_s=UP_TIMEOUT_S)

    def python(self, code: str, timeout_s: float = 120) -> Any:
        """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=self.vars,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "data")
    try:
        yield e
    finally:
        local.down(e.data_dir, timeout_s=90)  # whatever happened: a no-op after `down`
        shutil.rmtree(_local_head.ray_temp_dir(e.data_dir.resolve()), ignore_errors=True)


def _containers(path: str) -> list[dict[str, Any]]:
    from orchestrator._docker import client

    found = client().api.containers(all=True, filters={"label": "orchestrator.desktop"})
    return [c for c in found if c["Labels"].get("orchestrator.path") == path]


def _pid_of(owner: str) -> int:
    return int(owner.rsplit(":", 2)[1])


LOOPBACK = {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"}


def _listeners(pids: list[int]) -> list[tuple[str, str, str]]:
    """(process, address, port) of every TCP or UDP socket ``pids`` listen on (``ss``)."""
    done = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True, check=True)
    found = []
    for line in done.stdout.splitlines():
        fields = line.split()
        for name, pid_text in re.findall(r'"([^"]*)",pid=(\d+)', fields[-1]):
            if (pid := int(pid_text)) in pids:
                addr, port = fields[4].rsplit(":", 1)
                found.append((f"{name}[{pid}]", addr.split("%")[0], port))
    return found


def test_up_start_local_and_down(env: Env, desktop_image: str) -> None:
    t0 = time.monotonic()
    out = env.up().stdout
    t_up = time.monotonic() - t0
    cluster = local.current(env.data_dir)
    assert cluster is not None
    key_file = env.data_dir / local.CLIENT_KEY_FILE
    assert cluster.api_url == f"http://127.0.0.1:{env.api_port}" in out
    assert f"http://127.0.0.1:{env.dashboard_port}" in out and str(key_file) in out
    assert cluster.api_key not in out
    assert cluster.ray_address.startswith("127.0.0.1:")
    for name in (local.CLIENT_KEY_FILE, local.KEYS_FILE, local.STATE_FILE):
        assert stat.S_IMODE((env.data_dir / name).stat().st_mode) == 0o600, name
    assert cluster.api_key not in (env.data_dir / local.LOG_FILE).read_text()
    head = cluster.head_pid
    members = _local_head.session_members(head)
    assert len(members) > 3  # the head, its GCS, raylet, workers ...

    # The CLI finds the cluster without --url / --api-key.
    status = env.cli("status").stdout
    assert f"api {cluster.api_url}: ok" in status

    # `orchestrator run` runs in this cluster, in its tenant; each run's timeline is its own
    # (the records hold the earlier run's events too).
    plan = env.data_dir.parent / "hello.yaml"
    plan.write_text(
        "tenant: elsewhere\n"
        f"agent: {{name: hello, role: greeter, desktop: {{image: {desktop_image}}}}}\n"
        "task:\n  description: say hello\n  script:\n"
        "    steps: [{type: shell, command: echo hello-from-run}]\n"
    )
    runs = [env.cli("run", str(plan), "--out", str(env.data_dir.parent / "out")) for _ in "ab"]
    paths = []
    for done in runs:
        assert "running on the local cluster" in done.stderr
        assert "SUCCEEDED" in done.stdout and "hello-from-run" in done.stdout, done.stdout
        created = done.stdout.split("creating ", 1)[1].split(" ", 1)[0]
        assert created.startswith("default/hello-"), done.stdout
        paths.append(created)
    assert paths[0] != paths[1] and paths[0] not in runs[1].stdout, runs[1].stdout
    tasks = env.cli("tasks").stdout
    assert tasks.count("hello-from-run") == 2, tasks

    # `up` again: the same cluster, at once.
    t1 = time.monotonic()
    again = env.up()
    assert time.monotonic() - t1 < 15
    assert "running already" in again.stderr and cluster.api_url in again.stdout
    assert local.current(env.data_dir) == cluster

    # start_local() in a notebook-like process: an agent with a real desktop, named in the
    # new cluster's namespace.
    name = f"lc-{uuid.uuid4().hex[:8]}"
    found = env.python(
        f"""
import json, os
from orchestrator.local import LOOPBACK_ENV
os.environ.update(LOOPBACK_ENV, RAY_AUTH_MODE="token")
from orchestrator.sdk import start_local
api = start_local(api_port={env.api_port}, dashboard_port={env.dashboard_port})
agent = api.create_agent({name!r}, role="tester", desktop={{"image": {desktop_image!r}}})
task = agent.assign("echo", script={{"steps": [{{"type": "shell", "command": "echo up-ok"}}]}})
result = task.wait(timeout=60).result
import ray
ray.init(address={cluster.ray_address!r}, namespace="orchestrator", log_to_driver=False)
names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
         if a["namespace"] == "orchestrator"]
print(json.dumps({{"path": agent.path, "result": result, "names": names}}))
"""
    )
    path = f"default/{name}"
    assert found["path"] == path and "up-ok" in found["result"]
    assert path in found["names"] and "_system/recorder" in found["names"]
    desks = _containers(path)
    assert len(desks) == 1
    owner_pid = _pid_of(desks[0]["Labels"]["orchestrator.owner"])
    assert owner_pid in _local_head.session_members(head)  # a worker of this cluster

    # Check 11: every port the cluster opened (the head, GCS, raylet, dashboard, Serve's
    # proxy and replica, the workers of the recorder and the agent) is on loopback.
    listening = _listeners(_local_head.session_members(head))
    assert any(port == str(env.api_port) for _, _, port in listening), listening
    exposed = [x for x in listening if x[1] not in LOOPBACK]
    assert exposed == [], f"listening beyond loopback: {exposed}"

    # `down`: the head's processes, Serve and the desktop are gone; the keys stay.
    t2 = time.monotonic()
    assert "stopped" in env.cli("down", timeout_s=150).stdout
    t_down = time.monotonic() - t2
    assert _local_head.session_members(head) == []
    assert not any(p in _local_head.session_members(head) for p in members)
    assert _containers(path) == []
    assert not (env.data_dir / local.STATE_FILE).exists()
    assert (env.data_dir / local.CLIENT_KEY_FILE).read_text().strip() == cluster.api_key
    assert local.current(env.data_dir) is None
    assert not cluster.healthy()

    # A second `down` is harmless.
    assert "no local cluster" in env.cli("down").stdout
    assert t_up < UP_TIMEOUT_S and t_down < 60, (t_up, t_down)


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat_line.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def test_a_cluster_of_init_ray_listens_only_on_loopback(tmp_path: Path) -> None:
    """Check 11 for the cluster `init_ray` starts (`orchestrator run` without `up`, notebooks,
    the tests): its GCS, raylet and workers listened on every interface, as Ray had read
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import, before init_ray set it."""
    code = (
        "import sys, ray\n"
        "from actors import init_ray\n"
        "init_ray(desktops=1)\n"
        "ray.get(ray.remote(lambda: 1).remote())\n"  # a worker process too
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["ORCHESTRATOR_DATA_DIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        listeners = _listeners(_descendants(proc.pid))
        assert len(listeners) > 3, listeners  # GCS, raylet, worker ...
        assert all(addr in LOOPBACK for _, addr, _ in listeners), listeners
    finally:
        proc.communicate("", timeout=60)
