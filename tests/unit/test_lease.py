"""A person's lease on a desktop: the book's rules on a fake clock, and the agent side
(``AgentLease``) pausing and resuming an agent's tasks, with the hand-back note and expiry."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from actors._lease import AgentLease
from actors._person_waits import PersonWaits
from orchestrator.actions import ActionResult, CommandResult
from orchestrator.brains import BrainContext, Observation, OpenAIBrain, StepRecord
from orchestrator.domain import BrainConfig, TaskInfo, TaskSpec, TaskState
from orchestrator.errors import AgentError
from orchestrator.lease import DEFAULT_LEASE_TTL_S, LeaseBook, hand_back_text
from tests.fakes.openai_server import (
    FakeOpenAIServer,
    chat_tool_calls,
    computer_call_item,
    message_item,
    responses_reply,
    tool_call,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_lease_is_held_until_it_expires() -> None:
    clock = Clock()
    book = LeaseBook("agent-1", clock=clock)
    lease = book.take("key:alice")
    assert lease.expires_at == 1000.0 + DEFAULT_LEASE_TTL_S
    assert book.holds("key:alice") and not book.holds("key:bob")
    clock.now += DEFAULT_LEASE_TTL_S - 1
    assert book.current() == lease
    clock.now += 1
    assert book.current() is None and not book.holds("key:alice")
    assert book.expire() == lease
    assert book.expire() is None


def test_another_holder_is_refused_while_held_and_may_take_it_after_expiry() -> None:
    clock = Clock()
    book = LeaseBook("agent-1", clock=clock)
    book.take("key:alice", ttl_s=60)
    with pytest.raises(AgentError, match="taken over by key:alice"):
        book.take("session:bob", ttl_s=60)
    with pytest.raises(AgentError, match="does not hold"):
        book.hand_back("session:bob", "mine now")
    clock.now += 60
    taken = book.take("session:bob", ttl_s=30)
    assert taken.holder == "session:bob" and book.holds("session:bob")


def test_the_same_holder_renews_the_same_lease() -> None:
    clock = Clock()
    book = LeaseBook("agent-1", clock=clock)
    first = book.take("key:alice", ttl_s=60, task_id="task-1")
    clock.now += 50
    renewed = book.take("key:alice", ttl_s=60)
    assert (renewed.id, renewed.task_id, renewed.taken_at) == (first.id, "task-1", 1000.0)
    assert renewed.expires_at == 1110.0


def test_hand_back_ends_the_lease_with_the_note() -> None:
    clock = Clock()
    book = LeaseBook("agent-1", clock=clock)
    book.take("key:alice", ttl_s=60)
    clock.now += 10
    ended = book.hand_back("key:alice", "logged in for you")
    assert (ended.note, ended.expires_at) == ("logged in for you", 1010.0)
    assert book.current() is None
    with pytest.raises(AgentError):
        book.hand_back("key:alice", "again")


@pytest.mark.parametrize("ttl_s", [0, -1, 12 * 3600 + 1])
def test_a_lease_length_out_of_range_is_refused(ttl_s: float) -> None:
    with pytest.raises(AgentError, match="a lease lasts"):
        LeaseBook("agent-1").take("key:alice", ttl_s=ttl_s)


class Tasks:
    """The agent's tasks as a lease sees them, noting each pause and resume."""

    def __init__(self, *states: TaskState) -> None:
        self.tasks = {
            f"task-{i}": TaskInfo(
                id=f"task-{i}", agent_id="agent-1", spec=TaskSpec(description="x"), state=s
            )
            for i, s in enumerate(states)
        }
        self.calls: list[tuple[str, str, str | None]] = []

    def open_tasks(self) -> list[TaskInfo]:
        return [t for t in self.tasks.values() if t.state.open]

    async def pause(self, task_id: str, by: str | None = None) -> TaskInfo:
        self.calls.append(("pause", task_id, by))
        return self.tasks[task_id]

    async def resume(self, task_id: str, note: str | None = None) -> TaskInfo:
        self.calls.append(("resume", task_id, note))
        return self.tasks[task_id]


async def test_taking_over_pauses_the_running_task_and_hand_back_resumes_it_with_the_note() -> None:
    tasks = Tasks(TaskState.RUNNING, TaskState.PAUSED, TaskState.SUCCEEDED, TaskState.PENDING)
    del tasks.tasks["task-3"]  # given to the agent later
    said: list[tuple[str | None, dict[str, Any]]] = []

    async def say(task_id: str | None, data: dict[str, Any]) -> None:
        said.append((task_id, data))

    lease = AgentLease("agent-1", tasks, say)
    taken = await lease.take("key:alice", 60)
    assert taken.task_id == "task-0"
    # the task a person had paused already stays theirs; the ended one is left alone
    assert tasks.calls == [("pause", "task-0", "taken over by key:alice")]
    with pytest.raises(AgentError):
        lease.check_input("key:bob")
    lease.check_input("key:alice")
    tasks.tasks["task-3"] = tasks.tasks["task-0"].model_copy(update={"id": "task-3"})
    await lease.adopt("task-3")  # a task given meanwhile starts paused too
    await lease.hand_back("key:alice", "I closed the dialog")
    note = hand_back_text("I closed the dialog")
    assert tasks.calls[-2:] == [("resume", "task-0", note), ("resume", "task-3", note)]
    assert said[0] == (
        "task-0",
        {"lease": "taken", "holder": "key:alice", "expires_at": taken.expires_at},
    )
    assert said[-1] == (
        "task-0",
        {"lease": "handed back", "holder": "key:alice", "note": "I closed the dialog"},
    )
    lease.check_input("key:bob")  # free again


async def test_an_expired_lease_hands_back_by_itself() -> None:
    tasks = Tasks(TaskState.RUNNING)
    expired = asyncio.Event()

    async def say(task_id: str | None, data: dict[str, Any]) -> None:
        if data.get("lease") == "expired":
            expired.set()

    lease = AgentLease("agent-1", tasks, say)
    await lease.take("key:alice", 0.2)
    async with asyncio.timeout(5):
        await expired.wait()
    assert tasks.calls[-1] == ("resume", "task-0", hand_back_text(None))
    assert lease.current() is None
    await lease.close()


async def test_renewing_moves_the_expiry() -> None:
    tasks = Tasks(TaskState.RUNNING)

    async def say(task_id: str | None, data: dict[str, Any]) -> None:
        return None

    lease = AgentLease("agent-1", tasks, say)
    await lease.take("key:alice", 0.3)
    first_timer = lease._timer
    assert first_timer is not None
    await lease.take("key:alice", 30)  # renewed before the first end: that timer stops
    await asyncio.wait({first_timer}, timeout=5)
    assert first_timer.cancelled()
    assert lease.holds("key:alice")
    assert [c[0] for c in tasks.calls] == ["pause"]
    await lease.close()


async def test_a_task_the_lease_paused_resumes_only_when_the_lease_ends() -> None:
    tasks = Tasks(TaskState.RUNNING, TaskState.PAUSED)

    async def say(task_id: str | None, data: dict[str, Any]) -> None:
        return None

    lease = AgentLease("agent-1", tasks, say)
    await lease.take("key:alice", 60)
    with pytest.raises(AgentError, match="handed back"):
        lease.check_resume("task-0")  # someone's POST .../resume: 409
    lease.check_resume("task-1")  # a person paused that one before: theirs to resume
    await lease.hand_back("key:alice", "done")
    lease.check_resume("task-0")  # the lease ended: free to resume
    assert tasks.calls[-1] == ("resume", "task-0", hand_back_text("done"))
    await lease.close()


async def test_releasing_a_lease_whose_holder_signed_out_resumes_its_tasks() -> None:
    tasks = Tasks(TaskState.RUNNING)
    said: list[dict[str, Any]] = []

    async def say(task_id: str | None, data: dict[str, Any]) -> None:
        said.append(data)

    lease = AgentLease("agent-1", tasks, say)
    auth: dict[str, str | None] = {"tenant": "t", "session_id": "s1"}
    taken = await lease.take("session:abc", 600, auth)
    assert taken.holder_auth == auth and "holder_auth" not in taken.model_dump()
    assert await lease.release("lease-not-this-one", "holder signed out") is None
    assert lease.holds("session:abc")
    ended = await lease.release(taken.id, "holder signed out")
    assert ended is not None and ended.id == taken.id
    assert lease.current() is None and lease._timer is None
    assert tasks.calls[-1] == ("resume", "task-0", hand_back_text(None))
    assert said[-1] == {"lease": "holder signed out", "holder": "session:abc"}
    assert (await lease.take("key:bob", 60)).holder == "key:bob"  # the next one gets it
    await lease.close()


async def test_expiry_resumes_the_tasks_even_when_the_books_clock_lags_the_loop() -> None:
    """The timer used to sleep by the wall clock and give up when the book (another clock)
    did not agree yet: the tasks then stayed paused for good."""
    tasks = Tasks(TaskState.RUNNING)
    expired = asyncio.Event()

    async def say(task_id: str | None, data: dict[str, Any]) -> None:
        if data.get("lease") == "expired":
            expired.set()

    lagging = LeaseBook("agent-1", clock=lambda: time.time() - 0.5)
    lease = AgentLease("agent-1", tasks, say, book=lagging)
    await lease.take("key:alice", 0.3)
    async with asyncio.timeout(5):
        await expired.wait()
    assert tasks.calls[-1] == ("resume", "task-0", hand_back_text(None))
    assert lease.current() is None
    await lease.close()


class _Paused(PersonWaits):
    """A task paused by a takeover, as the runner holds it (the person-wait half only)."""

    def __init__(self, history: list[StepRecord]) -> None:
        self.task = TaskInfo(
            id="task-1", agent_id="agent-1", spec=TaskSpec(description="x"), state=TaskState.PAUSED
        )
        self.history = history
        self._pause_asked = False
        self._person = asyncio.get_running_loop().create_future()


def _screen(n: int) -> Observation:
    return Observation(
        screenshot=f"jpeg-{n}".encode(), media_type="image/jpeg", width=1280, height=800
    )


@pytest.mark.parametrize("mode", ["chat", "responses"])
async def test_the_hand_back_note_is_in_the_brains_next_request(mode: str) -> None:
    note = "I closed the update dialog"
    async with FakeOpenAIServer() as fake:
        if mode == "chat":
            first = chat_tool_calls(tool_call("shell", {"command": "echo hi"}, id="sh1"))
            last = chat_tool_calls(tool_call("done", {"result": "ok"}))
        else:
            first = responses_reply(
                computer_call_item(
                    {"type": "click", "button": "left", "x": 4, "y": 7}, call_id="c1"
                ),
                id="resp_1",
            )
            last = responses_reply(message_item("ok"), id="resp_2")
        fake.add(first, last)
        model = "gpt-test" if mode == "chat" else "computer-use-preview"
        brain = OpenAIBrain(
            BrainConfig(kind="openai", model=model, mode=mode), client=fake.client()
        )
        ctx = BrainContext(task_id="task-1", description="Do it.", role="user", agent_path="t/u/a")
        decided = await brain.step(ctx, _screen(1))
        shell_ok = ActionResult(ok=True, command=CommandResult(exit_code=0, stdout="hi", stderr=""))
        ctx.history.append(
            StepRecord(decided, [shell_ok] if mode == "chat" else [ActionResult(ok=True)])
        )
        paused = _Paused(ctx.history)
        await paused.resume(hand_back_text(note))  # the lease's hand-back
        assert paused._person is not None and paused._person.result() == hand_back_text(note)
        await brain.step(ctx, _screen(2))
        await brain.close()
        sent = json.dumps(fake.requests[-1].body)
        assert hand_back_text(note) in sent, sent[-2000:]
