"""Bytes through the real API and SDK: files on a desktop (upload, download, directories,
limits, refusals), a task's kept outputs and its artifacts zip, live event streams (SSE),
and workflows started from the SDK. Real Serve, real agents, real desktops."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.domain import EventKind, TaskSpec, TaskState
from orchestrator.sdk import (
    Agent,
    ApiError,
    AsyncClient,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
)
from tests.integration.test_sdk import TENANT, Server, server

pytestmark = pytest.mark.integration

__all__ = ["server"]  # the imported module fixture

OUT = "/home/agent/out"
MAKE_OUTPUTS = {
    "steps": [
        {
            "type": "shell",
            "command": f"mkdir -p {OUT}/sub && printf report > {OUT}/report.txt && "
            f"head -c 3000 /dev/urandom > {OUT}/sub/blob.bin && echo made",
        }
    ]
}


@pytest.fixture(scope="module")
def desk(server: Server) -> Iterator[Agent]:
    with server.client() as c:
        agent = c.create_agent("files-desk", role="tester", desktop={"image": server.image})
        try:
            yield agent
        finally:
            try:
                agent.fire()
            except ApiError:
                pass


def test_upload_then_read_it_back_on_the_desktop(desk: Agent, tmp_path: Path) -> None:
    data = secrets.token_bytes(3 << 20)  # over the API's 1 MiB limit for other bodies
    assert desk.write_file("~/up/big.bin", data) == len(data)
    digest = desk.shell("sha256sum ~/up/big.bin && stat -c %U ~/up/big.bin").stdout.split()
    assert digest[0] == hashlib.sha256(data).hexdigest() and digest[-1] == "agent"
    got = desk.read_file("/home/agent/up/big.bin")
    assert bytes(got) == data and not got.is_dir and got.filename == "big.bin"

    # a directory: up as a tree, down as a tree (through a gzipped tarball)
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top.txt").write_text("top")
    (src / "a" / "b" / "deep.txt").write_text("deep")
    assert desk.upload(src, "~/tree") == len("top") + len("deep")
    back = desk.download("~/tree", tmp_path / "back")
    assert (back / "top.txt").read_text() == "top"
    assert (back / "a" / "b" / "deep.txt").read_text() == "deep"
    raw = desk.read_file("~/tree")
    assert raw.is_dir and raw.filename == "tree.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        assert "tree/a/b/deep.txt" in tar.getnames()

    # as root: a root-owned file
    desk.write_file("/opt/root-only.txt", "secret", user="root")
    assert desk.shell("stat -c %U /opt/root-only.txt").stdout.strip() == "root"


def test_file_errors(server: Server, desk: Agent) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        desk.read_file("/nonexistent/file")
    with pytest.raises(ForbiddenError) as refused:
        desk.read_file("/etc/shadow")
    assert refused.value.status == 403
    with pytest.raises(ForbiddenError):
        desk.write_file("/etc/passwd-not-mine", "x")  # agent cannot write /etc
    with pytest.raises(InvalidRequestError, match="path"):
        desk.read_file("")
    with httpx.Client(base_url=server.url, timeout=60) as h:
        auth = {"Authorization": f"Bearer {server.key}"}
        url = f"/v1/agents/{desk.id}/files"
        big = h.put(url, params={"path": "x"}, content=b"\0" * ((64 << 20) + 1), headers=auth)
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        # the upload's larger limit is for the upload route only
        shell = h.post(
            f"/v1/agents/{desk.id}/shell",
            content=b"{" + b" " * (2 << 20) + b"}",
            headers={**auth, "Content-Type": "application/json"},
        )
        assert shell.status_code == 413
        assert h.get(url, params={"path": "/etc/hostname"}).status_code == 401
        other = h.get(url, params={"path": "/etc/hostname"}, headers={"Authorization": "Bearer x"})
        assert other.status_code == 401


def test_other_tenant_gets_404_on_files_and_artifacts(server: Server, desk: Agent) -> None:
    task = desk.assign("echo", script={"steps": [{"type": "shell", "command": "echo x"}]})
    task.wait(timeout=60, progress=False)
    # A second tenant's key is not configured on this deployment: any other key is 401; the
    # tenant isolation of these routes (404) is checked in test_serve_api with two tenants.
    with httpx.Client(base_url=server.url, timeout=60) as h:
        r = h.get(f"/v1/tasks/{task.id}/artifacts", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        auth = {"Authorization": f"Bearer {server.key}"}
        assert h.get("/v1/tasks/task-unknown/artifacts", headers=auth).status_code == 404
        assert h.get("/v1/agents/agent-unknown/files?path=x", headers=auth).status_code == 404


def test_outputs_are_kept_and_the_artifacts_zip_holds_everything(
    desk: Agent, tmp_path: Path
) -> None:
    spec = TaskSpec(
        description="make outputs",
        script=MAKE_OUTPUTS,
        outputs=[f"{OUT}/report.txt", f"{OUT}/sub", "/no/such/output"],
    )
    task = desk.assign(spec).wait(timeout=120, progress=False)
    assert task.state == TaskState.SUCCEEDED, task.error
    events = list(task.events())
    files = [e for e in events if e.kind == EventKind.FILE]
    assert sorted(e.data["path"] for e in files) == [f"{OUT}/report.txt", f"{OUT}/sub/blob.bin"]
    logs = [e.data.get("msg", "") for e in events if e.kind == EventKind.LOG]
    assert any("/no/such/output: no such file" in m for m in logs), logs
    # kept before the final state: the file events come before the final task event
    final = max(e.seq or 0 for e in events if e.kind == EventKind.TASK)
    assert all((e.seq or 0) < final for e in files)

    blob = desk.read_file(f"{OUT}/sub/blob.bin")
    desk.shell(f"rm -rf {OUT}")  # the artifacts come from the records, not the desktop
    path = task.download_artifacts(tmp_path / "a.zip")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"manifest.json", "task.json", "result.txt", "events.jsonl"} <= names
        assert f"tasks/{task.id}.json" in names
        assert z.read(f"files/{task.id}/home/agent/out/report.txt") == b"report"
        assert z.read(f"files/{task.id}/home/agent/out/sub/blob.bin") == bytes(blob)
        assert z.read("result.txt").decode() == "made"
        shots = [n for n in names if n.startswith("screenshots/")]
        assert shots and all(z.read(n)[:2] == b"\xff\xd8" for n in shots)  # JPEG
        lines = [json.loads(x) for x in z.read("events.jsonl").decode().splitlines()]
        assert [x["seq"] for x in lines] == [e.seq for e in events]
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["task_id"] == task.id and manifest["state"] == "succeeded"
        for entry in manifest["entries"]:
            assert hashlib.sha256(z.read(entry["name"])).hexdigest() == entry["sha256"]
        assert z.testzip() is None


def test_stream_follows_a_task_live_to_its_end(desk: Agent) -> None:
    slow = {
        "steps": [
            {"type": "shell", "command": "echo one"},
            {"type": "shell", "command": "sleep 1.5; echo two"},
        ]
    }
    task = desk.assign("slow", script=slow)
    seen = list(task.stream())
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seen[-1].kind == EventKind.TASK and seen[-1].data["state"] == "succeeded"
    assert [e.seq for e in task.events()] == seqs  # everything, exactly once
    # resuming after a seq gives the rest only
    rest = list(task.stream(after_seq=seqs[2]))
    assert [e.seq for e in rest] == seqs[3:]


async def test_async_files_stream_and_artifacts(
    server: Server, desk: Agent, tmp_path: Path
) -> None:
    async with server.async_client() as c:
        agent = await c.agent(desk.id)
        assert await agent.write_file("~/async.txt", "hi") == 2
        assert bytes(await agent.read_file("~/async.txt")) == b"hi"
        task = await agent.assign(
            "echo", script={"steps": [{"type": "shell", "command": "echo a"}]}
        )
        kinds = [e.kind async for e in task.stream()]
        assert kinds[-1] == EventKind.TASK
        zipped = await task.download_artifacts(tmp_path / "t.zip")
        with zipfile.ZipFile(zipped) as z:
            assert z.read("result.txt") == b"a"
        assert isinstance(c, AsyncClient)


def test_start_workflow_from_the_sdk(server: Server, tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "agent:\n"
        "  name: wf-user\n"
        "  role: operator\n"
        f"  desktop: {{image: {server.image}}}\n"
        "task:\n"
        "  description: say hi\n"
        "  script:\n"
        "    steps:\n"
        "      - {type: shell, command: echo wf-done}\n"
    )
    with server.client() as c:
        task = c.start_workflow(wf).wait(timeout=120, progress=False)
        try:
            assert task.state == TaskState.SUCCEEDED and task.result == "wf-done"
            agent = c.agent(task.info.agent_id)
            assert agent.path == f"{TENANT}/wf-user"
        finally:
            c.agent(task.info.agent_id).fire()
