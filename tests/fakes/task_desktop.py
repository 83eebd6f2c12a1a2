"""Honest in-process stand-ins for the seams of a running task (``actors._task_ports``),
for unit tests that start nothing (no Ray, no Docker):

- ``StandInDesktop``: a ``TaskDesktop`` whose screen is a PIL image (real PNG/JPEG bytes;
  clicks and typing change pixels), whose shell runs real ``bash`` in a private home
  directory, and which records every action it carried out.
- ``StoreRecords``: ``AgentRecords`` over a real ``SQLiteStore``.
- ``LocalHost``: a ``TaskHost`` running each subtask with a nested ``TaskRunner`` and a
  scripted brain on a stand-in desktop of its own (a fresh one for every attempt).
"""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw

from actors._runner import TaskRunner
from actors._task_ports import ParentTask
from orchestrator import actions as a
from orchestrator.brains import make_brain
from orchestrator.domain import (
    AgentInfo,
    BrainConfig,
    Event,
    EventKind,
    Subtask,
    TaskInfo,
    TaskSpec,
    new_id,
)
from orchestrator.records import SQLiteStore
from orchestrator.usage import Usage

__all__ = ["LocalHost", "StandInDesktop", "StoreRecords", "new_task"]


@dataclass(frozen=True)
class Shot:
    """A screenshot of the stand-in."""

    data: bytes
    format: Literal["png", "jpeg"]
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return f"image/{self.format}"


class StandInDesktop:
    """A desktop stand-in implementing ``TaskDesktop`` (see the module docstring)."""

    def __init__(self, size: tuple[int, int] = (64, 48)) -> None:
        self.screen = Image.new("RGB", size, "navy")
        self.home = Path(tempfile.mkdtemp(prefix="standin-home-"))
        self.actions: list[a.Action] = []
        """Every action carried out, in order."""
        self.screenshots = 0
        """How many screenshots were taken."""
        self.settles = 0

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.screen.size
        return (w, h)

    async def screenshot(
        self,
        format: Literal["png", "jpeg"] = "png",
        *,
        quality: int = 85,
        size: tuple[int, int] | None = None,
    ) -> Shot:
        self.screenshots += 1
        out = io.BytesIO()
        image = self.screen if size is None else self.screen.resize(size)
        image.save(out, format=format.upper(), quality=quality)
        return Shot(out.getvalue(), format, *image.size)

    async def act(self, action: a.Action) -> a.ActionResult:
        self.actions.append(action)
        draw = ImageDraw.Draw(self.screen)
        match action:
            case a.Shell():
                t0 = time.monotonic()
                res = await self.run(
                    action.command, timeout=action.timeout_s, cwd=action.cwd, user=action.user
                )
                error = None if res.ok else f"exit status {res.exit_code}"
                ms = (time.monotonic() - t0) * 1000
                return a.ActionResult(ok=res.ok, error=error, command=res, duration_ms=ms)
            case a.Wait():
                await asyncio.sleep(action.duration_s)  # waiting is the action itself
            case a.Click():
                w, h = self.screen.size
                if not (0 <= action.x < w and 0 <= action.y < h):
                    return a.ActionResult.failure(f"({action.x}, {action.y}) is off the screen")
                draw.point((action.x, action.y), fill="white")
            case a.TypeText():
                draw.text((1, 1), action.text, fill="yellow")
            case a.Zoom():
                region = self.screen.crop((action.x0, action.y0, action.x1, action.y1))
                out = io.BytesIO()
                region.resize((action.width, action.height)).save(out, format="PNG")
                return a.ActionResult(ok=True, image=out.getvalue())
        return a.ActionResult(ok=True)

    async def wait_until_settled(
        self, *, quiet_s: float = 0.15, timeout_s: float = 3.0, poll_s: float = 0.03
    ) -> bool:
        self.settles += 1
        return True  # nothing on this screen moves by itself

    async def run(
        self,
        cmd: str,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - the command's own limit
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: Literal["agent", "root"] = "agent",
    ) -> a.CommandResult:
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            cmd,
            cwd=cwd or self.home,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin", **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return a.CommandResult(
                exit_code=None, stdout="", stderr="", timed_out=True, duration_s=timeout
            )
        except BaseException:  # cancelled (a task cancelled mid-command): leave nothing running
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
        return a.CommandResult(
            exit_code=proc.returncode,
            stdout=out.decode(),
            stderr=err.decode(),
            duration_s=time.monotonic() - t0,
        )

    async def download(
        self,
        remote: str,
        local: Path | str,
        *,
        user: Literal["agent", "root"] = "agent",
        max_bytes: int | None = None,
    ) -> None:
        src = self.home / remote.removeprefix("~/")
        if not src.exists():
            raise FileNotFoundError(remote)
        if src.is_dir():
            shutil.copytree(src, local)
        else:
            shutil.copyfile(src, local)


class StoreRecords:
    """``AgentRecords`` over a real ``SQLiteStore`` (in a test's temporary directory)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def put_task(self, task: TaskInfo, event: Event | None = None) -> TaskInfo:
        return self.store.put_task(task, event)

    async def append_event(self, event: Event, blob: tuple[bytes, str] | None = None) -> None:
        if blob is not None:
            event = event.model_copy(update={"blobs": [self.store.put_blob(*blob)]})
        self.store.append_event(event)

    async def put_agent(self, info: AgentInfo) -> None:
        self.store.put_agent(info)

    async def get_task(self, task_id: str) -> TaskInfo | None:
        return self.store.get_task(task_id)

    async def task_usage(self, task_ids: list[str]) -> dict[str, tuple[Usage, Usage]]:
        return self.store.task_usage(task_ids)

    async def admit_task(self, task: TaskInfo) -> None:
        self.store.admit_task(task)

    def states(self, task_id: str) -> list[str]:
        """The states the task's ``task`` events announced, in order."""
        events = self.store.events(task_id=task_id, limit=1000, kinds=[EventKind.TASK])
        return [e.data["state"] for e in events]


async def new_task(records: StoreRecords, spec: TaskSpec, **kw: object) -> TaskInfo:
    """A pending task, recorded like ``AgentTasks.assign`` records it."""
    task = TaskInfo(id=new_id("task"), agent_id=new_id("agent"), spec=spec, **kw)
    said = Event(
        kind=EventKind.TASK, agent_id=task.agent_id, task_id=task.id, data={"state": "pending"}
    )
    return await records.put_task(task, said)


@dataclass
class LocalHost:
    """A ``TaskHost`` that runs each subtask in this process (see the module docstring)."""

    records: StoreRecords
    broken: set[str] = field(default_factory=set)
    """Roles whose first specialist's desktop is broken (``~/broken`` exists): a script
    that checks for it fails there and succeeds on a fresh specialist."""
    attempts: list[tuple[str, int]] = field(default_factory=list)
    children: list[TaskInfo] = field(default_factory=list)
    """Every child task as it ended (or as it stood when cancelled)."""
    desktops: list[StandInDesktop] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a subtask has started running."""

    async def run_subtask(
        self, parent: ParentTask, subtask: Subtask, spec: TaskSpec, attempt: int
    ) -> TaskInfo:
        self.attempts.append((subtask.id, attempt))
        desk = StandInDesktop()
        self.desktops.append(desk)
        if subtask.role in self.broken and attempt == 1:
            (desk.home / "broken").write_text("yes")
        child = await new_task(self.records, spec, parent_task_id=parent.task.id)
        await parent.add_subtask(child)
        brain = make_brain(BrainConfig(kind="scripted", script=spec.script or {"steps": []}))
        runner = TaskRunner(
            child, subtask.role, f"t/u/{subtask.id}", desk, brain, self, self.records
        )
        self.started.set()
        try:
            ended = await runner.run()
        except asyncio.CancelledError:
            self.children.append(runner.task)
            raise
        self.children.append(ended)
        return ended
