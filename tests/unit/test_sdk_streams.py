"""The SDK's pure parts: SSE decoding, retry rules, saving desktop files and directories."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import pytest

from orchestrator.domain import Event, EventKind
from orchestrator.sdk import Retry
from orchestrator.sdk._http import RemoteFile, workflow_text
from orchestrator.sdk._stream import SseDecoder, save_remote, upload_files


def _event(seq: int) -> Event:
    return Event(seq=seq, kind=EventKind.LOG, task_id="task-1", data={"msg": f"m{seq}"})


def test_sse_decoder_yields_complete_events_and_skips_comments() -> None:
    d = SseDecoder()
    wire = (
        ": stream of task task-1\n\n"
        f"id: 1\ndata: {_event(1).model_dump_json()}\n\n"
        ": keep-alive\n\n"
        f"id: 2\r\ndata:{_event(2).model_dump_json()}\r\n\r\n"
    )
    got = [e for line in wire.splitlines() if (e := d.feed(line)) is not None]
    assert [(e.seq, e.data["msg"]) for e in got] == [(1, "m1"), (2, "m2")]


def test_sse_decoder_joins_multi_line_data() -> None:
    d = SseDecoder()
    body = _event(3).model_dump_json(indent=1).splitlines()
    for line in body:
        assert d.feed("data: " + line) is None
    event = d.feed("")
    assert event is not None and event.seq == 3


def _answer(status: int, method: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, request=httpx.Request(method, "http://127.0.0.1/x")
    )


def test_retry_rules() -> None:
    r = Retry(attempts=2, backoff_s=0.5, max_wait_s=10)
    assert r.delay(_answer(429, "POST", {"Retry-After": "3"}), 0) == 3
    assert r.delay(_answer(503, "GET"), 1) == 1.0  # backoff doubles
    assert r.delay(_answer(503, "GET"), 2) is None  # out of attempts
    assert r.delay(_answer(503, "POST"), 0) is None  # may have done its work: not repeated
    assert r.delay(_answer(500, "GET"), 0) is None
    assert r.delay(_answer(429, "GET", {"Retry-After": "999"}), 0) == 10  # capped


def _tarball(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_save_remote_unpacks_a_directory_into_dest(tmp_path: Path) -> None:
    data = _tarball({"tree/a.txt": b"a", "tree/sub/b.txt": b"b"})
    out = save_remote(RemoteFile(data, True, "tree.tar.gz"), True, tmp_path / "copy")
    assert (out / "a.txt").read_bytes() == b"a" and (out / "sub" / "b.txt").read_bytes() == b"b"
    f = save_remote(b"plain", False, tmp_path / "deep" / "f.bin")
    assert f.read_bytes() == b"plain" and not list(f.parent.glob(".*part"))


def test_save_remote_refuses_paths_out_of_dest(tmp_path: Path) -> None:
    evil = _tarball({"tree/../../escaped.txt": b"x"})
    with pytest.raises(tarfile.TarError):
        save_remote(evil, True, tmp_path / "d")
    assert not (tmp_path / "escaped.txt").exists()


def test_upload_files_walks_a_tree(tmp_path: Path) -> None:
    (tmp_path / "t" / "s").mkdir(parents=True)
    (tmp_path / "t" / "x").write_text("1")
    (tmp_path / "t" / "s" / "y").write_text("2")
    (tmp_path / "t" / "link").symlink_to("/etc/passwd")
    got = [(p.name, r) for p, r in upload_files(tmp_path / "t", "~/dst/")]
    assert got == [("y", "~/dst/s/y"), ("x", "~/dst/x")]
    with pytest.raises(FileNotFoundError):
        list(upload_files(tmp_path / "missing", "x"))


def test_workflow_text_from_a_path_or_text(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text("agent: {name: a}\n")
    assert workflow_text(f) == workflow_text(str(f)) == "agent: {name: a}\n"
    assert workflow_text("agent: {name: b}\ntask: {description: x}\n").startswith("agent")
