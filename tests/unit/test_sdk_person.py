"""The SDK's part of a person in the loop, sync and async, through the real API app on an
in-process runtime (no Ray, no Docker): ``Task.answer``, ``approve``, ``reject``, ``pause``,
``resume``, what a waiting task shows (``needs_person``, ``waiting``), its screenshot, and
``wait(until_person=True)``; a call that does not fit the task's state is ``ConflictError``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator import actions as a
from orchestrator.domain import TaskState
from orchestrator.records import SQLiteStore
from orchestrator.sdk import AsyncClient, Client, ConflictError, NotFoundError
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import KEY, api

App = tuple[TestClient, LocalRuntime]


@pytest.fixture
def app(store: SQLiteStore) -> Iterator[App]:
    with api(store) as both:
        yield both


class _Via(httpx.BaseTransport):
    """Sends the SDK's requests through the app's TestClient (which runs its own loop)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        r = self.client.request(
            request.method,
            request.url.raw_path.decode(),
            headers=dict(request.headers),
            content=request.read(),
        )
        return httpx.Response(
            r.status_code, headers=list(r.headers.multi_items()), content=r.content
        )


@pytest.fixture
def sdk(app: App) -> Iterator[Client]:
    client, _ = app
    with (
        httpx.Client(transport=_Via(client)) as http,
        Client("http://testserver", KEY, http=http) as c,
    ):
        yield c


def test_a_question_is_seen_and_answered(app: App, sdk: Client) -> None:
    _, rt = app
    task = sdk.create_agent("worker").assign("configure it")
    rt.run(task.id)
    assert not task.refresh().needs_person and task.waiting is None
    blob = rt.store.put_blob(b"\xff\xd8 the screen", "image/jpeg")
    rt.ask(task.id, "Which port?", screenshot=blob)

    assert task.wait(timeout=5, progress=False, until_person=True) is task
    assert task.state == TaskState.INPUT_REQUIRED and task.needs_person
    assert task.waiting is not None and task.waiting.question == "Which port?"
    shot = task.waiting_screenshot()
    assert shot == b"\xff\xd8 the screen" and shot.format == "jpeg"
    with pytest.raises(TimeoutError, match="still input_required"):
        task.wait(timeout=0.3, progress=False)  # by default, a wait goes on until it ends

    assert task.answer("8080").state == TaskState.RUNNING and task.waiting is None
    assert rt.given == [(task.id, "answer", "8080")]
    with pytest.raises(ConflictError, match="not waiting for an answer"):
        task.answer("again")
    with pytest.raises(NotFoundError):
        task.waiting_screenshot()
    rt.finish(task.id, "port 8080")
    assert task.wait(timeout=5, progress=False, until_person=True).result == "port 8080"


def test_approve_reject_pause_and_resume(app: App, sdk: Client) -> None:
    _, rt = app
    task = sdk.create_agent("worker").assign("clean up")
    rt.run(task.id)
    sub = rt.subtask(task.id, sdk.create_agent("helper").id)
    rm = a.Shell(command="rm -rf /srv/old")

    rt.await_approval(task.id, [rm], "deletes files")
    task.wait(timeout=5, progress=False, until_person=True)
    assert task.waiting is not None and task.waiting.actions == [rm]
    with pytest.raises(ConflictError):
        task.answer("yes")
    assert task.approve().state == TaskState.RUNNING
    rt.await_approval(task.id, [rm], "deletes files")
    assert task.reject("not on Fridays").state == TaskState.RUNNING
    assert rt.given == [(task.id, "approve", True), (task.id, "reject", "not on Fridays")]

    assert task.pause().state == TaskState.PAUSED
    assert sdk.task(sub.id).state == TaskState.PAUSED
    assert not task.needs_person  # paused waits for the resume of whoever paused it
    assert task.resume(subtree=False).state == TaskState.RUNNING
    assert sdk.task(sub.id).state == TaskState.PAUSED
    assert task.resume().state == TaskState.RUNNING  # its subtask was still paused
    assert sdk.task(sub.id).state == TaskState.RUNNING
    with pytest.raises(ConflictError, match="not paused"):
        task.resume()


async def test_the_async_task_alike(app: App) -> None:
    client, rt = app
    transport = httpx.ASGITransport(app=client.app)
    async with (
        httpx.AsyncClient(transport=transport) as http,
        AsyncClient("http://testserver", KEY, http=http) as sdk,
    ):
        agent = await sdk.create_agent("worker")
        task = await agent.assign("configure it")
        rt.run(task.id)
        rt.ask(task.id, "Which port?")
        await task.wait(timeout=5, progress=False, until_person=True)
        assert task.waiting is not None and task.waiting.question == "Which port?"
        assert (await task.answer("8080")).state == TaskState.RUNNING
        rt.await_approval(task.id, [a.Wait()], "waits")
        await task.refresh()
        assert (await task.reject("no")).state == TaskState.RUNNING
        rt.await_approval(task.id, [a.Wait()], "waits")
        assert (await task.approve()).state == TaskState.RUNNING
        assert (await task.pause(subtree=False)).state == TaskState.PAUSED
        assert (await task.resume(subtree=False)).state == TaskState.RUNNING
        with pytest.raises(ConflictError):
            await task.approve()
    assert [g[1] for g in rt.given] == ["answer", "reject", "approve", "pause", "resume"]


def test_the_cli_shows_what_tasks_wait_on_and_gives_it(
    app: App, sdk: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from orchestrator import _cli_api
    from orchestrator.cli import main

    _, rt = app
    monkeypatch.setattr(_cli_api, "_client", lambda url, key: _Unclosed(sdk))
    asks = sdk.create_agent("worker").assign("configure it")
    approves = sdk.create_agent("admin").assign("clean up")
    for t in (asks, approves):
        rt.run(t.id)
    rt.ask(asks.id, "Which\nport?")
    rt.await_approval(approves.id, [a.Shell(command="rm -rf /srv/old")], "deletes files")

    def run(*args: str) -> str:
        done = CliRunner().invoke(main, [*args, "--url", "http://testserver", "--api-key", KEY])
        assert done.exit_code == 0, done.output
        return done.output

    listed = run("tasks")
    assert f"{asks.id}  input_required  {asks.info.agent_id}  asks: Which port?" in listed
    assert f"{approves.id}  approval_required  {approves.info.agent_id}  approve? " in listed
    assert "approve? shell rm -rf /srv/old (deletes files)\n" in listed
    assert run("answer", asks.id, "8080") == f"task {asks.id}: running\n"
    assert run("reject", approves.id, "not on Fridays") == f"task {approves.id}: running\n"
    assert run("pause", asks.id, "--task-only") == f"task {asks.id}: paused\n"
    assert run("resume", asks.id) == f"task {asks.id}: running\n"
    rt.await_approval(approves.id, [a.Wait()], "waits")
    assert run("approve", approves.id) == f"task {approves.id}: running\n"
    assert [g[1:] for g in rt.given] == [
        ("answer", "8080"), ("reject", "not on Fridays"), ("pause", None), ("resume", None),
        ("approve", True),
    ]  # fmt: skip
    failed = CliRunner().invoke(main, ["approve", asks.id, "--url", "http://t", "--api-key", KEY])
    assert failed.exit_code != 0 and "not waiting for approval (running)" in failed.output


class _Unclosed:
    """The test's SDK client, handed to a CLI command that closes what it is given."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __enter__(self) -> Client:
        return self.client

    def __exit__(self, *exc: object) -> None:
        return None
