"""Garbage collection of records on a real local cluster: the recorder removes old runs at
start (and says so in its log), a run pinned through the API stays, and `orchestrator gc`
removes what ended before its cutoff while the cluster runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    AgentStatus,
    Event,
    EventKind,
    TaskInfo,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.records import SQLiteStore
from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "orchestrator")
OLD = time.time() - 40 * 86_400.0
"""Older than the default retention (30 days)."""
ECHO = {"steps": [{"type": "shell", "command": "echo hi"}]}


def _old_run(store: SQLiteStore, shot: bytes) -> tuple[TaskInfo, str]:
    agent = AgentInfo(
        id=new_id("agent"),
        path=f"old/{new_id('a')}",
        tenant="old",
        parent_id=None,
        spec=AgentSpec(name="a", role="x"),
        status=AgentStatus.STOPPED,
        created_at=OLD,
    )
    store.put_agent(agent)
    task = TaskInfo(
        id=new_id("task"),
        agent_id=agent.id,
        spec=TaskSpec(description="long ago"),
        state=TaskState.SUCCEEDED,
        created_at=OLD,
        updated_at=OLD,
    )
    store.put_task(task)
    address = store.put_blob(shot, "image/png")
    event = Event(kind=EventKind.STEP, agent_id=agent.id, task_id=task.id, at=OLD, blobs=[address])
    store.append_event(event)
    path = store.data_dir / "blobs" / address[:2] / address[2:]
    os.utime(path, (OLD, OLD))
    return task, address


class Cluster:
    def __init__(self, data_dir: Path, image: str) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(ORCHESTRATOR_DATA_DIR=str(data_dir), ORCHESTRATOR_DESKTOP_IMAGE=image)
        self.port = free_port()

    def cli(self, *args: str, timeout_s: float = 60) -> str:
        done = subprocess.run(
            [CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.data_dir)


@pytest.fixture
def cluster(tmp_path: Path, desktop_image: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "data", desktop_image)
    yield c
    subprocess.run([CLI, "down"], env=c.env, capture_output=True, timeout=180)


def _until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.2)  # polling interval of a deadline-bound wait


def test_the_recorder_collects_at_start_and_gc_spares_pinned_runs(cluster: Cluster) -> None:
    with cluster.store() as store:
        old, old_blob = _old_run(store, b"an old screenshot")
        pinned, pinned_blob = _old_run(store, b"a pinned screenshot")
        assert store.pin_task(pinned.id)

    args = ["--port", str(cluster.port), "--dashboard-port", str(free_port())]
    cluster.cli("up", *args, "--desktops", "2", timeout_s=240)

    def old_gone() -> bool:
        with cluster.store() as s:
            return s.get_task(old.id) is None

    _until(old_gone, 60, "the recorder removes the old run at start")
    with cluster.store() as store:
        assert store.blob_path(old_blob) is None
        assert store.get_task(pinned.id) is not None
        assert store.get_blob(pinned_blob) == b"a pinned screenshot"
    from orchestrator._local_head import ray_temp_dir

    logs = ray_temp_dir(cluster.data_dir.resolve()) / "session_latest" / "logs"
    lines = [
        line
        for f in logs.glob("worker-*")
        for line in f.read_text(errors="replace").splitlines()
        if "records older than 30 days" in line
    ]
    assert any("removed 1 task(s)" in line for line in lines), lines

    # Through the API: a run pinned by its owner stays, an unpinned one goes.
    from orchestrator.sdk import Client, NotFoundError
    from orchestrator.sdk._http import calls

    api = Client(
        f"http://127.0.0.1:{cluster.port}", (cluster.data_dir / "api-key").read_text().strip()
    )
    agent = api.create_agent("gc-owner", role="tester")
    keep = agent.assign("kept", script=ECHO).wait()
    drop = agent.assign("dropped", script=ECHO).wait()
    assert keep.pin() is keep
    with pytest.raises(NotFoundError):
        api.call(calls.pin("task-nope", True))
    agent.fire()

    dry = cluster.cli("gc", "--older-than", "0s", "--dry-run")
    assert "would remove" in dry
    out = cluster.cli("gc", "--older-than", "0s")
    assert "  tasks     1\n" in out and "  agents    0\n" in out, out
    with cluster.store() as store:
        assert store.get_task(drop.id) is None
        assert store.get_task(keep.id) is not None and store.get_agent(agent.id) is not None
    keep.pin(False)
    out = cluster.cli("gc", "--older-than", "0s")
    assert "  tasks     1\n" in out and "  agents    1\n" in out, out
    with cluster.store() as store:
        assert store.get_task(keep.id) is None and store.get_agent(agent.id) is None
