"""Streams both clients share: a task's live events (Server-Sent Events, resumed after a
dropped connection) and large downloads written to files."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from ..domain import Event
from ._errors import UnavailableError, error_from
from ._http import TRANSFER_S, Retry, calls, send_async, send_sync

__all__ = [
    "SseDecoder",
    "download_async",
    "download_sync",
    "events_async",
    "events_sync",
    "save_remote",
    "upload_files",
]

STREAM_READ_S = 60.0
"""Longest silence on an event stream before it counts as dropped (the API sends a comment
every 15 s while nothing happens)."""
RECONNECTS = 5
"""Failed connections in a row after which a stream gives up."""
HEALTHY_S = 10.0
"""A connection that lasted this long worked: its end starts the count of failures anew
(a quiet task's stream may be cut by a proxy or a replaced replica any number of times)."""


class SseDecoder:
    """Server-Sent Events, a line at a time: ``feed`` returns an ``Event`` when one is complete."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return Event.model_validate_json(data)
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # id/event/retry: the event's own seq is its id


def _stream_args(task_id: str, cursor: int) -> dict[str, Any]:
    return {
        "method": "GET",
        "url": f"/v1/tasks/{task_id}/events/stream",
        "params": {"after_seq": cursor},
        "headers": {"Accept": "text/event-stream"},
        "timeout": httpx.Timeout(30.0, read=STREAM_READ_S),
    }


def _pause(response: httpx.Response | None, retry: Retry, attempt: int) -> float:
    if response is not None:
        delay = retry.delay(response, attempt)
        if delay is not None:
            return delay
    return float(min(retry.backoff_s * 2**attempt, retry.max_wait_s))


def events_sync(
    http: httpx.Client, retry: Retry, task_id: str, after_seq: int = 0
) -> Iterator[Event]:
    """The task's events after ``after_seq`` as they are recorded, until it is finished."""
    cursor, failures = after_seq, 0
    while True:
        opened = time.monotonic()
        try:
            with http.stream(**_stream_args(task_id, cursor)) as r:
                if r.status_code in (429, 503) and failures < RECONNECTS:
                    r.read()
                    failures += 1
                    time.sleep(_pause(r, retry, failures - 1))
                    continue
                if not r.is_success:
                    r.read()
                    raise error_from(r)
                decoder = SseDecoder()
                for line in r.iter_lines():
                    event = decoder.feed(line)
                    if event is not None:
                        failures = 0
                        cursor = max(cursor, event.seq or cursor)
                        yield event
        except httpx.TransportError as e:
            failures = _failed(failures, opened, e)
            time.sleep(_pause(None, retry, failures - 1))
            continue
        # The API ends a stream once the task is finished and every event was sent, or
        # when it cannot read the records for a while: only the first ends this one.
        if send_sync(http, retry, calls.task(task_id)).state.done:
            return
        failures = _failed(failures, opened, None)
        time.sleep(_pause(None, retry, failures - 1))


def _failed(failures: int, opened: float, error: httpx.TransportError | None) -> int:
    """The count of failed connections after one more ended (raises past ``RECONNECTS``)."""
    if time.monotonic() - opened >= HEALTHY_S:
        failures = 0
    failures += 1
    if failures <= RECONNECTS:
        return failures
    if error is None:
        raise UnavailableError(503, "stream_lost", "the event stream keeps ending early")
    raise UnavailableError(503, "stream_lost", f"event stream lost: {error}") from error


async def events_async(
    http: httpx.AsyncClient, retry: Retry, task_id: str, after_seq: int = 0
) -> AsyncIterator[Event]:
    """``events_sync``, awaited."""
    cursor, failures = after_seq, 0
    while True:
        opened = time.monotonic()
        try:
            async with http.stream(**_stream_args(task_id, cursor)) as r:
                if r.status_code in (429, 503) and failures < RECONNECTS:
                    await r.aread()
                    failures += 1
                    await asyncio.sleep(_pause(r, retry, failures - 1))
                    continue
                if not r.is_success:
                    await r.aread()
                    raise error_from(r)
                decoder = SseDecoder()
                async for line in r.aiter_lines():
                    event = decoder.feed(line)
                    if event is not None:
                        failures = 0
                        cursor = max(cursor, event.seq or cursor)
                        yield event
        except httpx.TransportError as e:
            failures = _failed(failures, opened, e)
            await asyncio.sleep(_pause(None, retry, failures - 1))
            continue
        if (await send_async(http, retry, calls.task(task_id))).state.done:
            return
        failures = _failed(failures, opened, None)
        await asyncio.sleep(_pause(None, retry, failures - 1))


def _partial(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def download_sync(http: httpx.Client, retry: Retry, url: str, dest: Path) -> Path:
    """GET ``url`` into the file ``dest`` (written whole or not at all); 429/503 and a
    failed connection are retried as every GET is."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _partial(dest)
    attempt = 0
    try:
        while True:
            try:
                with http.stream("GET", url, timeout=httpx.Timeout(30.0, read=TRANSFER_S)) as r:
                    if not r.is_success:
                        r.read()
                        delay = retry.after(r, attempt)
                        if delay is None:
                            raise error_from(r)
                    else:
                        with part.open("wb") as f:
                            for chunk in r.iter_bytes():
                                f.write(chunk)
                        os.replace(part, dest)
                        return dest
            except httpx.TransportError as e:
                delay = retry.after(e, attempt)
                if delay is None:
                    raise UnavailableError(0, "unreachable", f"GET {url}: {e}") from e
            attempt += 1
            time.sleep(delay)
    finally:
        part.unlink(missing_ok=True)


async def download_async(http: httpx.AsyncClient, retry: Retry, url: str, dest: Path) -> Path:
    """``download_sync``, awaited (the file is written in a thread)."""
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    part = _partial(dest)
    attempt = 0
    try:
        while True:
            timeout = httpx.Timeout(30.0, read=TRANSFER_S)
            try:
                async with http.stream("GET", url, timeout=timeout) as r:
                    if not r.is_success:
                        await r.aread()
                        delay = retry.after(r, attempt)
                        if delay is None:
                            raise error_from(r)
                    else:
                        f = await asyncio.to_thread(part.open, "wb")
                        try:
                            async for chunk in r.aiter_bytes():
                                await asyncio.to_thread(f.write, chunk)
                        finally:
                            f.close()
                        await asyncio.to_thread(os.replace, part, dest)
                        return dest
            except httpx.TransportError as e:
                delay = retry.after(e, attempt)
                if delay is None:
                    raise UnavailableError(0, "unreachable", f"GET {url}: {e}") from e
            attempt += 1
            await asyncio.sleep(delay)
    finally:
        await asyncio.to_thread(part.unlink, missing_ok=True)


def save_remote(data: bytes, is_dir: bool, dest: Path) -> Path:
    """Write a file read from a desktop to ``dest``; a directory's tarball is unpacked into
    ``dest`` (nothing in it can land outside ``dest``: the ``data`` extraction filter)."""
    if not is_dir:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = _partial(dest)
        part.write_bytes(data)
        os.replace(part, dest)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        top = members[0].name.split("/")[0] if members else ""
        for m in members:  # the tarball holds <name>/...: put its contents into dest
            parts = m.name.split("/")
            m.name = "/".join(parts[1:]) if parts[0] == top and len(parts) > 1 else ""
        tar.extractall(dest, members=[m for m in members if m.name], filter="data")
    return dest


def upload_files(local: Path, remote: str) -> Iterator[tuple[Path, str]]:
    """``(local file, remote path)`` of every file to upload for ``local`` (a file or a
    directory tree; links are not followed)."""
    if local.is_file():
        yield local, remote
        return
    if not local.is_dir():
        raise FileNotFoundError(f"no such local file or directory: {local}")
    base = remote.rstrip("/")
    for f in sorted(local.rglob("*")):
        if f.is_file() and not f.is_symlink():
            yield f, f"{base}/{f.relative_to(local).as_posix()}"
