"""Routes that move bytes: files on an agent's desktop (download and upload) and a task's
artifacts (a zip of its result, subtasks, timeline, screenshots and kept files)."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations (see _app).
import asyncio
import logging
import posixpath
import tempfile
from collections.abc import AsyncIterator, Awaitable
from typing import IO, Annotated, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.domain import Event, TaskInfo
from orchestrator.records import media_type, write_artifacts

from ._front import Caller, Rt, Tenant

__all__ = ["MAX_UPLOAD_BYTES", "UPLOAD_PATH", "FileWritten", "router"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_UPLOAD_BYTES = 64 << 20
"""Largest file upload (64 MiB); other bodies keep the API's 1 MiB limit."""
UPLOAD_PATH = r"^/v1/agents/[^/]+/files$"
"""The route whose PUT bodies may be up to ``MAX_UPLOAD_BYTES``."""
CHUNK = 1 << 20
SPOOL_BYTES = 16 << 20
"""Archives up to this size are built in memory, larger ones in a temporary file."""

DesktopPath = Annotated[
    str,
    Query(
        min_length=1,
        max_length=4096,
        pattern=r"^[^\x00]+$",
        description="A path on the desktop: absolute, or relative to the user's home.",
    ),
]
User = Annotated[Literal["agent", "root"], Query(description="Read or write as this user.")]


class FileWritten(BaseModel):
    """A file written on a desktop."""

    model_config = ConfigDict(extra="forbid")

    path: str
    size: Annotated[int, Field(ge=0)]


def _filename(path: str) -> str:
    name = posixpath.basename(path.rstrip("/")) or "file"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200] or "file"


async def _on_desktop(path: str, call: Awaitable[T]) -> T:
    """Await an agent's file call; the desktop's refusals in the API's terms."""
    try:
        return await call
    except FileNotFoundError:
        raise HTTPException(404, f"no such file or directory on the desktop: {path}") from None
    except PermissionError as e:
        raise HTTPException(403, f"the desktop refused access to {path}: {e}") from None
    except (ValueError, IsADirectoryError, NotADirectoryError) as e:
        raise HTTPException(422, f"query field 'path': {e}") from None
    except OSError as e:
        raise HTTPException(409, f"{path} on the desktop: {e}") from None


async def _stream(spool: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(spool.read, CHUNK):
            yield chunk
    finally:
        spool.close()


router = APIRouter(prefix="/v1")


@router.get(
    "/agents/{agent_id}/files",
    tags=["desktop"],
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}, "application/gzip": {}}},
        403: {"description": "the desktop refused the read"},
    },
)
async def download(
    rt: Rt, tenant: Tenant, agent_id: str, path: DesktopPath, user: User = "agent"
) -> Response:
    """A file from the agent's desktop; a directory comes as a gzipped tarball
    (``X-Orchestrator-Kind: directory``)."""
    ref = await rt.agent_ref(agent_id, tenant)
    is_dir, data = await _on_desktop(path, ref.read_path(path, user))
    name = _filename(path)
    if is_dir:
        ctype, name, kind = "application/gzip", f"{name}.tar.gz", "directory"
    else:
        ctype, kind = media_type(path), "file"
    return Response(
        content=data,
        media_type=ctype,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Orchestrator-Kind": kind,
            "Cache-Control": "no-store",
        },
    )


@router.put(
    "/agents/{agent_id}/files",
    status_code=201,
    tags=["desktop"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    responses={403: {"description": "the desktop refused the write"}},
)
async def upload(
    rt: Rt, caller: Caller, agent_id: str, path: DesktopPath, request: Request, user: User = "agent"
) -> FileWritten:
    """Write the request body (raw bytes, up to 64 MiB) to ``path`` on the desktop:
    missing parents are created, an existing file is replaced. 409 while someone else
    holds the desktop's lease."""
    ref = await rt.agent_ref(agent_id, caller.tenant)
    data = await request.body()
    size = await _on_desktop(path, ref.write_file(path, data, user, caller.holder))
    return FileWritten(path=path, size=size)


@router.get(
    "/tasks/{task_id}/artifacts",
    tags=["tasks"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
async def artifacts(rt: Rt, tenant: Tenant, task_id: str) -> StreamingResponse:
    """A zip of the task's result, its subtasks, its events, every step's screenshot and
    the files it kept (``outputs``); see ``manifest.json`` inside."""
    task = await rt.task(task_id, tenant)

    async def get_task(tid: str) -> TaskInfo:
        return await rt.task(tid)

    async def events(tid: str, after: int, limit: int) -> list[Event]:
        return await rt.events(task_id=tid, after_seq=after, limit=limit)

    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - streamed
    try:
        await write_artifacts(task, get_task, events, rt.blob, spool)
        await asyncio.to_thread(spool.seek, 0)
    except BaseException:
        spool.close()
        raise
    return StreamingResponse(
        _stream(spool),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{task.id}-artifacts.zip"',
            "Cache-Control": "no-store",
        },
    )
