"""The SDK (``orchestrator.sdk``) through real HTTP: a Ray Serve deployment on 127.0.0.1 in
the session's Ray cluster (as in ``test_serve_api``), a real agent with a real desktop, used
through both ``Client`` and ``AsyncClient``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orchestrator import errors
from orchestrator.actions import Click
from orchestrator.domain import AgentStatus, EventKind, TaskState
from orchestrator.sdk import (
    Agent,
    ApiError,
    AsyncClient,
    AuthError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    Screenshot,
)
from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

TENANT = "t-sdk"
ECHO = {"steps": [{"type": "shell", "command": "echo hello-from-sdk"}]}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Server:
    url: str
    key: str
    image: str

    def client(self, key: str | None = None) -> Client:
        return Client(self.url, key or self.key, timeout=60)

    def async_client(self, key: str | None = None) -> AsyncClient:
        return AsyncClient(self.url, key or self.key, timeout=60)


@pytest.fixture(scope="module")
def server(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve on a free loopback port for this module, with one tenant's key."""
    from ray import serve

    from serve_app import deploy

    key = secrets.token_urlsafe(24)
    keys_file = tmp_path_factory.mktemp("sdk") / "api-keys"
    keys_file.write_text(f"{TENANT}:{key}\n")
    url = deploy(port=free_port(), keys_file=str(keys_file))
    try:
        deadline = time.monotonic() + 60
        with Client(url, key, timeout=5) as c:
            while True:
                try:
                    if c.healthy():
                        break
                except (httpx.TransportError, ApiError):
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.1)  # polling interval of a deadline-bound wait
        yield Server(url=url, key=key, image=ray_session.image)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def desk(server: Server) -> Iterator[Agent]:
    """A top-level agent created through the SDK; fired at the end if a test did not."""
    with server.client() as c:
        agent = c.create_agent("sdk-desk", role="tester", desktop={"image": server.image})
        try:
            yield agent
        finally:
            try:
                c.agent(agent.id).fire()
            except ApiError:
                pass


# ---------------------------------------------------------------------- Client


def test_create_agent_and_find_it(server: Server, desk: Agent) -> None:
    assert desk.path == f"{TENANT}/sdk-desk" and desk.info.status == AgentStatus.IDLE
    with server.client() as c:
        assert desk.id in [a.id for a in c.agents()]
        again = c.agent(desk.id)
        assert again.path == desk.path and again.info.spec.role == "tester"
        tree = again.tree()
        assert tree.agent.id == desk.id and tree.children == []
        with pytest.raises(ConflictError) as err:  # the same name again
            c.create_agent("sdk-desk", desktop={"image": server.image})
        assert err.value.status == 409 and isinstance(err.value, errors.AgentError)


def test_scripted_task_waits_to_its_result_and_pages_events(
    server: Server, desk: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    task = desk.assign("echo", script=ECHO)
    assert task.state.value in ("pending", "running")
    assert task.wait(timeout=60) is task
    assert task.state == TaskState.SUCCEEDED and task.result == "hello-from-sdk"
    assert task.id in capsys.readouterr().err  # the progress line (no tqdm here)

    with server.client() as c:
        assert c.task(task.id).result == "hello-from-sdk"
    small = list(task.events(page_size=2))
    assert [e.seq for e in small] == [e.seq for e in task.events(page_size=1000)]
    seqs = [e.seq or 0 for e in small]
    assert seqs == sorted(set(seqs)) and all(e.task_id == task.id for e in small)
    states = [e.data["state"] for e in small if e.kind == EventKind.TASK]
    assert states[0] == "pending" and states[-1] == "succeeded", states
    assert any(e.kind == EventKind.STEP for e in small)
    page = task.events_page(after_seq=seqs[-1])
    assert page.events == [] and page.next_after_seq == seqs[-1] and not page.has_more
    assert task.cancel().state == TaskState.SUCCEEDED  # finished: stays as it was
    assert desk.assign("quiet", script=ECHO).wait(progress=False).result == "hello-from-sdk"
    assert capsys.readouterr().err == ""


def test_screenshot_actions_and_shell(desk: Agent) -> None:
    shot = desk.screenshot()
    assert isinstance(shot, Screenshot) and isinstance(shot, bytes)
    assert shot[:8] == PNG_MAGIC and shot._repr_png_() == bytes(shot)
    jpeg = desk.screenshot("jpeg", quality=50)
    assert jpeg[:2] == b"\xff\xd8" and jpeg._repr_png_() is None and jpeg._repr_jpeg_()

    ok = desk.act(Click(x=100, y=100))
    assert ok.ok and ok.cursor is not None and (ok.cursor.x, ok.cursor.y) == (100, 100)
    bad = desk.act({"type": "click", "x": 5000, "y": 10})
    assert not bad.ok and bad.error == "x=5000 is outside the screen (0..1279)"

    res = desk.shell("echo out; echo err >&2; exit 3")
    assert (res.exit_code, res.stdout, res.stderr) == (3, "out\n", "err\n") and not res.ok
    assert desk.shell("id -un", user="root").stdout.strip() == "root"


def test_live_view_link_and_task_pages(server: Server, desk: Agent) -> None:
    url = desk.live_view()
    assert url.startswith("http://127.0.0.1:") and "#" in url  # the password: a fragment
    page = httpx.get(url.split("#")[0], timeout=10)
    assert page.status_code == 200 and "novnc" in page.text.lower()
    desk.assign("echo", script=ECHO).wait(progress=False)
    desk.assign("echo", script=ECHO).wait(progress=False)
    with server.client() as c:
        first = c.tasks(state=TaskState.SUCCEEDED, agent_id=desk.id, limit=1)
        second = c.tasks(state="succeeded", agent_id=desk.id, limit=1, offset=1)
        assert len(first) == len(second) == 1 and first[0].id != second[0].id
        assert first[0].info.created_at >= second[0].info.created_at  # newest first


def test_errors_are_typed(server: Server, desk: Agent) -> None:
    with server.client() as c:
        with pytest.raises(NotFoundError) as nf:
            c.agent("agent-0000000000")
        assert isinstance(nf.value, errors.NotFoundError)
        assert (nf.value.status, nf.value.code) == (404, "not_found")
        assert nf.value.message == "no agent agent-0000000000"
        with pytest.raises(errors.NotFoundError):
            c.task("task-0000000000")
        with pytest.raises(InvalidRequestError) as bad:
            desk.shell("true", timeout_s=-1)
        assert bad.value.status == 422 and "timeout_s" in bad.value.message
    for key in ("not-a-key", server.key + "x"):
        with server.client(key) as c, pytest.raises(AuthError) as auth:
            c.agents()
        assert (auth.value.status, auth.value.code) == (401, "unauthorized")
        assert isinstance(auth.value, errors.OrchestratorError)


# ---------------------------------------------------------------------- AsyncClient


async def test_async_client_end_to_end(server: Server, desk: Agent) -> None:
    async with server.async_client() as c:
        agent = await c.agent(desk.id)
        assert agent.path == desk.path and desk.id in [a.id for a in await c.agents()]

        task = await agent.assign("echo", script=ECHO)
        await task.wait(timeout=60, progress=False)
        assert task.state == TaskState.SUCCEEDED and task.result == "hello-from-sdk"
        assert (await c.task(task.id)).result == "hello-from-sdk"
        small = [e.seq async for e in task.events(page_size=2)]
        assert small == [e.seq for e in (await task.events_page(limit=1000)).events]

        assert (await agent.screenshot())[:8] == PNG_MAGIC
        assert (await agent.act({"type": "move", "x": 10, "y": 20})).ok
        assert not (await agent.act(Click(x=10, y=9000))).ok
        assert (await agent.shell("echo async")).stdout == "async\n"

        child = await agent.hire("sdk-helper", role="helper", desktop={"image": server.image})
        assert child.info.parent_id == agent.id and child.path == f"{desk.path}/sdk-helper"
        assert [t.agent.id for t in (await agent.tree()).children] == [child.id]
        await child.fire()
        assert (await child.refresh()).info.status == AgentStatus.STOPPED
        assert (await agent.tree()).children == []

        with pytest.raises(NotFoundError):
            await c.agent("agent-0000000000")
    async with server.async_client("not-a-key") as bad:
        with pytest.raises(AuthError):
            await bad.agents()


# ---------------------------------------------------------------------- fire (last)


def test_fire(server: Server, desk: Agent) -> None:
    desk.fire()
    assert desk.refresh().info.status == AgentStatus.STOPPED
    with pytest.raises(NotFoundError):
        desk.screenshot()
    with server.client() as c, pytest.raises(NotFoundError):
        c.agent(desk.id).fire()


def test_cli_commands_read_the_api(server: Server, tmp_path: Any) -> None:
    """`orchestrator status|agents|tasks|watch|screenshot` through the same real API."""
    from click.testing import CliRunner

    from orchestrator.cli import main

    with server.client() as api:
        agent = api.create_agent("cli-user", role="operator")
        try:
            task = agent.assign("echo", script=ECHO)
            env = {"ORCHESTRATOR_API_URL": server.url, "ORCHESTRATOR_API_KEY": server.key}
            run = CliRunner().invoke

            watched = run(main, ["watch", task.id], env=env)
            assert watched.exit_code == 0, watched.output
            assert "hello-from-sdk" in watched.output and "succeeded" in watched.output

            status = run(main, ["status"], env=env)
            assert status.exit_code == 0 and "ok" in status.output, status.output
            listed = run(main, ["agents"], env=env)
            assert agent.id in listed.output and "cli-user" in listed.output, listed.output
            tasks = run(main, ["tasks", "--state", "succeeded"], env=env)
            assert task.id in tasks.output, tasks.output

            out = tmp_path / "screen.png"
            shot = run(main, ["screenshot", agent.id, "-o", str(out)], env=env)
            assert shot.exit_code == 0, shot.output
            assert out.read_bytes().startswith(PNG_MAGIC)

            bad = run(main, ["agents"], env={**env, "ORCHESTRATOR_API_KEY": "wrong"})
            assert bad.exit_code == 1 and "error:" in bad.output, bad.output
        finally:
            agent.fire()
