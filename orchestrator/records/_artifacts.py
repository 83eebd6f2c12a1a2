"""A task's artifacts as one zip: its result, its subtasks, its timeline, the screenshots
of every step and the files it kept, all read from the records (so they outlive the agents).

Layout of the archive::

    manifest.json                 what is inside: names, sizes, sha256, the task's state
    task.json                     the task (TaskInfo)
    result.txt / error.txt        its result, or why it failed
    tasks/<task id>.json          the task and every subtask under it, recursively
    events.jsonl                  every event of those tasks, in order
    screenshots/<seq>-<task id>.jpg   the screenshot of each recorded step
    files/<task id>/<path>        files kept from the desktops (``TaskSpec.outputs``)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
import time
import zipfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

from ..domain import Event, EventKind, TaskInfo

__all__ = ["MAX_TASKS", "safe_name", "write_artifacts"]

MAX_TASKS = 10_000
"""Most tasks of one tree put in an archive (a guard against a runaway plan)."""
EVENTS_PAGE = 1000


def safe_name(path: str) -> str:
    """A desktop path as a relative name inside the archive (no ``..``, no leading ``/``)."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p not in ("", ".", "..")]
    if parts and parts[0] == "~":
        parts = parts[1:]
    return "/".join(parts) or "_"


class _Zip:
    def __init__(self, out: IO[bytes]) -> None:
        self.zf = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.entries: list[dict[str, Any]] = []
        self.names: set[str] = set()

    async def add(self, name: str, data: bytes, kind: str, *, compress: bool = True) -> None:
        base, n = name, 1
        while name in self.names:  # two kept files with the same name: keep both
            n += 1
            stem, dot, ext = base.rpartition(".")
            name = f"{stem}-{n}.{ext}" if dot and "/" not in ext else f"{base}-{n}"
        self.names.add(name)
        info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        await asyncio.to_thread(self.zf.writestr, info, data)
        digest = hashlib.sha256(data).hexdigest()
        self.entries.append({"name": name, "kind": kind, "size": len(data), "sha256": digest})

    def close(self) -> None:
        self.zf.close()


async def write_artifacts(
    task: TaskInfo,
    get_task: Callable[[str], Awaitable[TaskInfo]],
    events: Callable[[str, int, int], Awaitable[list[Event]]],
    get_blob: Callable[[str], Awaitable[bytes]],
    out: IO[bytes],
) -> int:
    """Write the zip of ``task``'s artifacts to ``out``; returns the number of entries.

    ``get_task(id)``, ``events(task_id, after_seq, limit)`` and ``get_blob(address)`` read
    the records (in the API, through the recorder): any reader of a ``RecordStore`` will do.
    """
    z = _Zip(out)
    try:
        tasks = [task]
        seen = {task.id}
        i = 0
        while i < len(tasks) and len(tasks) < MAX_TASKS:
            for sid in tasks[i].subtask_ids:
                if sid not in seen:
                    seen.add(sid)
                    tasks.append(await get_task(sid))
            i += 1
        await z.add("task.json", task.model_dump_json(indent=2).encode(), "task")
        if task.result is not None:
            await z.add("result.txt", task.result.encode(), "result")
        if task.error is not None:
            await z.add("error.txt", task.error.encode(), "error")
        for t in tasks:
            await z.add(f"tasks/{t.id}.json", t.model_dump_json(indent=2).encode(), "task")
        timeline: list[Event] = []
        for t in tasks:
            cursor = 0
            while True:
                page = await events(t.id, cursor, EVENTS_PAGE)
                timeline.extend(page)
                if len(page) < EVENTS_PAGE:
                    break
                cursor = max(e.seq or cursor for e in page)
        timeline.sort(key=lambda e: e.seq or 0)
        lines = "".join(e.model_dump_json() + "\n" for e in timeline)
        await z.add("events.jsonl", lines.encode(), "events")
        for e in timeline:
            for address in e.blobs:
                data = await get_blob(address)
                if e.kind == EventKind.FILE:
                    path = str(e.data.get("path") or address)
                    await z.add(f"files/{e.task_id}/{safe_name(path)}", data, "file")
                else:
                    ext = "png" if data.startswith(b"\x89PNG") else "jpg"
                    name = f"screenshots/{e.seq or 0:06d}-{e.task_id}.{ext}"
                    await z.add(name, data, "screenshot", compress=False)
        manifest = {
            "task_id": task.id,
            "state": task.state.value,
            "tasks": len(tasks),
            "events": len(timeline),
            "created_at": time.time(),
            "entries": z.entries,
        }
        z.zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        return len(z.entries) + 1
    finally:
        z.close()
