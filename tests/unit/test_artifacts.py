"""The artifacts zip, written from a real record store (SQLite and blobs on disk)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

from orchestrator.domain import Event, EventKind, TaskInfo, TaskSpec, TaskState
from orchestrator.records import SQLiteStore, write_artifacts
from orchestrator.records._artifacts import safe_name

JPEG = b"\xff\xd8\xff\xe0fake-jpeg"


def test_safe_name_keeps_paths_inside() -> None:
    assert safe_name("/home/agent/out/r.txt") == "home/agent/out/r.txt"
    assert safe_name("~/out/../r.txt") == "r.txt"
    assert safe_name("../../etc/passwd") == "etc/passwd"
    assert safe_name("/") == "_"


async def test_zip_of_a_task_tree(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "records")
    spec = TaskSpec(description="parent")
    child = TaskInfo(
        id="task-child",
        agent_id="agent-2",
        parent_task_id="task-root",
        spec=spec,
        state=TaskState.SUCCEEDED,
        result="child done",
    )
    root = TaskInfo(
        id="task-root",
        agent_id="agent-1",
        spec=spec,
        state=TaskState.SUCCEEDED,
        result="all done",
        subtask_ids=["task-child"],
    )
    for t in (root, child):
        store.put_task(t)
    shot = store.put_blob(JPEG, "image/jpeg")
    kept = store.put_blob(b"report", "text/plain")
    same_name = store.put_blob(b"other", "text/plain")
    store.append_event(Event(kind=EventKind.STEP, task_id="task-root", blobs=[shot]))
    store.append_event(
        Event(
            kind=EventKind.FILE,
            task_id="task-child",
            data={"path": "/home/agent/r.txt"},
            blobs=[kept],
        )
    )
    store.append_event(
        Event(
            kind=EventKind.FILE,
            task_id="task-child",
            data={"path": "/home/agent/r.txt"},
            blobs=[same_name],
        )
    )
    store.append_event(Event(kind=EventKind.TASK, task_id="task-root", data={"state": "x"}))

    async def get_task(tid: str) -> TaskInfo:
        t = store.get_task(tid)
        assert t is not None
        return t

    async def events(tid: str, after: int, limit: int) -> list[Event]:
        return store.events(task_id=tid, after_seq=after, limit=limit)

    async def blob(address: str) -> bytes:
        return store.get_blob(address)

    out = io.BytesIO()
    await write_artifacts(root, get_task, events, blob, out)
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as z:
        names = z.namelist()
        assert z.read("result.txt") == b"all done"
        assert {"tasks/task-root.json", "tasks/task-child.json"} <= set(names)
        assert z.read("files/task-child/home/agent/r.txt") == b"report"
        assert z.read("files/task-child/home/agent/r-2.txt") == b"other"  # both kept
        shots = [n for n in names if n.startswith("screenshots/")]
        assert len(shots) == 1 and z.read(shots[0]) == JPEG
        assert len(z.read("events.jsonl").splitlines()) == 4
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["tasks"] == 2 and manifest["events"] == 4
        for entry in manifest["entries"]:
            assert hashlib.sha256(z.read(entry["name"])).hexdigest() == entry["sha256"]
    store.close()
