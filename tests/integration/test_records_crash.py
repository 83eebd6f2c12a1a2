"""Crash consistency of the record store (reliability check 9), for real.

Writer processes append events, blobs and task updates in a loop and print each write to
a file only after the call returned (the acknowledgement). The test SIGKILLs them at random
moments, round after round on the same directory, then reopens the store and checks that
every acknowledged record is there and intact, and that nothing is half-written.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.domain import Event
from orchestrator.records import MAX_LIMIT, SQLiteStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import random, sys
from pathlib import Path
from orchestrator.domain import AgentInfo, AgentSpec, Event, EventKind, TaskInfo, TaskSpec
from orchestrator.records import SQLiteStore

data_dir, name, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
out = open(sys.argv[4], "a", buffering=1)  # a line is written (to the kernel) at once
store = SQLiteStore(data_dir)
agent = AgentInfo(id=name, path=f"crash/{name}", tenant="crash", parent_id=None,
                  spec=AgentSpec(name=name))
store.put_agent(agent)
print("agent", name, file=out)
task = TaskInfo(id=f"task-{name}", agent_id=name, spec=TaskSpec(description="crash"))
i = 0
while True:
    i += 1
    blobs = []
    if rng.random() < 0.5:
        size = rng.choice([0, 1_000, 100_000, 400_000])
        address = store.put_blob(rng.randbytes(size), "application/octet-stream")
        print("blob", address, file=out)
        blobs.append(address)
    pad = rng.randrange(0, 20_000)  # large events span several database pages
    event = Event(kind=EventKind.STEP, agent_id=name, task_id=task.id,
                  data={"i": i, "pad": "x" * pad}, blobs=blobs)
    stored = store.append_event(event)
    print("event", stored.seq, i, pad, *blobs, file=out)
    if i % 5 == 0:
        store.put_task(task.model_copy(update={"result": str(i)}))
        print("task", task.id, i, file=out)
"""


@dataclass
class Acked:
    """What one round's writers acknowledged."""

    agents: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    events: dict[int, tuple[str, int, int, list[str]]] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)


def parse(log: Path, name: str, acked: Acked) -> None:
    """Read a writer's acknowledgements; a last line cut short by the kill is ignored."""
    text = log.read_text() if log.exists() else ""
    for line in text.split("\n")[:-1]:  # only lines that ended with a newline
        kind, *rest = line.split()
        if kind == "agent":
            acked.agents.add(rest[0])
        elif kind == "blob":
            acked.blobs.add(rest[0])
        elif kind == "event":
            seq, i, pad, *blobs = rest
            acked.events[int(seq)] = (name, int(i), int(pad), blobs)
        elif kind == "task":
            acked.tasks[rest[0]] = int(rest[1])


@dataclass
class Writer:
    """One writer process and when to kill it."""

    name: str
    log: Path
    proc: subprocess.Popen[bytes]
    kill_at: float | None = None
    """When to kill it; None until its first acknowledgement."""


def run_round(data_dir: Path, logs: Path, round_no: int, rng: random.Random) -> Acked:
    """Start two writers, SIGKILL each at a random moment, return what they acknowledged.

    Most writers are killed a random time after their first acknowledged write (so a slow
    start on a busy machine does not turn the round into a no-op); some are killed a random
    time after they start, maybe while the store recovers or migrates.
    """
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    writers: list[Writer] = []
    for k in range(2):
        name = f"agent-r{round_no}w{k}"
        log, err = logs / f"{name}.log", logs / f"{name}.err"
        cmd = [
            sys.executable,
            "-c",
            WRITER,
            str(data_dir),
            name,
            str(rng.getrandbits(32)),
            str(log),
        ]
        with err.open("wb") as stderr:
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=stderr)
        early = rng.random() < 0.2
        kill_at = time.monotonic() + rng.uniform(0.05, 0.5) if early else None
        writers.append(Writer(name, log, proc, kill_at))
    acked = Acked()
    deadline = time.monotonic() + 30
    while writers:
        now = time.monotonic()
        assert now < deadline, f"writers never acknowledged a write: {[w.name for w in writers]}"
        for w in list(writers):
            if w.proc.poll() is not None:  # it died on its own: a bug, not a crash test
                raise AssertionError(f"{w.name} exited: {w.log.with_suffix('.err').read_text()}")
            if w.kill_at is None and w.log.exists() and "\n" in w.log.read_text():
                w.kill_at = now + rng.uniform(0.02, 0.4)
            if w.kill_at is not None and now >= w.kill_at:
                w.proc.send_signal(signal.SIGKILL)
                w.proc.wait(timeout=10)
                parse(w.log, w.name, acked)
                writers.remove(w)
        time.sleep(0.002)
    return acked


def check_store(data_dir: Path, acked: Acked, seen_before: int, whole: set[Path]) -> int:
    """Assert everything acknowledged is present and intact; returns the highest seq.

    ``whole`` holds the blob files found whole in earlier rounds (they are not hashed again).
    """
    with SQLiteStore(data_dir) as store:  # created here if both writers died early
        db = sqlite3.connect(store.path)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            db.close()
        stored: dict[int, Event] = {}
        while page := store.events(after_seq=max([seen_before, *stored]), limit=MAX_LIMIT):
            stored.update((e.seq or 0, e) for e in page)
        for seq, (name, i, pad, blobs) in acked.events.items():
            event = stored.get(seq)
            assert event is not None, f"acknowledged event {seq} lost"
            assert (event.agent_id, event.data, event.blobs) == (
                name,
                {"i": i, "pad": "x" * pad},
                blobs,
            ), f"event {seq} differs"
            assert seq > seen_before, "a seq was reused after a crash"
        # Every stored record, acknowledged or not, is whole and refers only to whole blobs.
        for event in stored.values():
            for address in event.blobs:
                assert hashlib.sha256(store.get_blob(address)).hexdigest() == address
        for address in acked.blobs:
            assert hashlib.sha256(store.get_blob(address)).hexdigest() == address
        for agent_id in acked.agents:
            assert store.get_agent(agent_id) is not None, f"acknowledged agent {agent_id} lost"
        for task_id, i in acked.tasks.items():
            task = store.get_task(task_id)
            assert task is not None and int(task.result or 0) >= i, f"task {task_id} went back"
        # No blob file is half-written: every one hashes to its name.
        for path in set((data_dir / "blobs").glob("??/*")) - whole:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.parent.name + path.name
            whole.add(path)
        return max([seen_before, *stored])


def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data_dir, logs = tmp_path / "data", tmp_path / "logs"
    logs.mkdir()
    seen = 0
    whole: set[Path] = set()
    total_events = total_blobs = 0
    deadline = time.monotonic() + 120
    for round_no in range(5):
        acked = run_round(data_dir, logs, round_no, rng)
        try:
            seen = check_store(data_dir, acked, seen, whole)
        except AssertionError as e:
            raise AssertionError(f"round {round_no} (seed {seed}): {e}") from e
        total_events += len(acked.events)
        total_blobs += len(acked.blobs)
        assert time.monotonic() < deadline, "the crash rounds took too long"
    assert total_events > 50, f"too few writes acknowledged to mean much (seed {seed})"
    assert total_blobs > 5, f"too few blobs acknowledged to mean much (seed {seed})"

    # Temporary blob files a killed writer left behind are never referenced; once stale,
    # opening the store removes them.
    leftovers = list((data_dir / "blobs" / ".tmp").iterdir())
    old = time.time() - 3600
    for tmp in leftovers:
        os.utime(tmp, (old, old))
    SQLiteStore(data_dir).close()
    assert list((data_dir / "blobs" / ".tmp").iterdir()) == []
