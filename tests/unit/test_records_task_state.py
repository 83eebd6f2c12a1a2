"""The record store keeps a task's state and its last state event in agreement (issue 9, R1;
reliability.md check 13): the two are written in one transaction, an ended task is never
changed, and a state never changes without its event."""

from __future__ import annotations

import random
import threading

import pytest

from orchestrator.domain import Event, EventKind, TaskInfo, TaskSpec, TaskState, new_id
from orchestrator.errors import RecordError
from orchestrator.records import SQLiteStore


def _task(state: TaskState = TaskState.PENDING, **kw: object) -> TaskInfo:
    return TaskInfo(
        id=new_id("task"), agent_id="agent-1", spec=TaskSpec(description="x"), state=state, **kw
    )


def _said(task: TaskInfo) -> Event:
    """The state event announcing ``task``'s state."""
    return Event(
        kind=EventKind.TASK,
        agent_id=task.agent_id,
        task_id=task.id,
        data={"state": task.state.value, "error": task.error},
    )


def _in(task: TaskInfo, state: TaskState, **kw: object) -> TaskInfo:
    return task.model_copy(update={"state": state, **kw})


def _last_state(store: SQLiteStore, task_id: str) -> str | None:
    states = [e.data["state"] for e in store.events(task_id=task_id, limit=1000)]
    return states[-1] if states else None


def test_state_and_event_are_written_together(store: SQLiteStore) -> None:
    t = _task()
    assert store.put_task(t, _said(t)) == t
    running = _in(t, TaskState.RUNNING)
    store.put_task(running, _said(running))
    assert store.get_task(t.id) == running
    assert [e.data["state"] for e in store.events(task_id=t.id)] == ["pending", "running"]


def test_a_failed_event_write_leaves_the_state_unchanged(store: SQLiteStore) -> None:
    t = _task()
    store.put_task(t, _said(t))
    failed = _in(t, TaskState.FAILED, error="boom")
    bad = _said(failed).model_copy(update={"blobs": ["0" * 64]})  # a blob the store lacks
    with pytest.raises(RecordError, match="blobs"):
        store.put_task(failed, bad)
    assert store.get_task(t.id) == t  # rolled back with the event
    assert _last_state(store, t.id) == "pending"


def test_an_ended_task_is_never_changed(store: SQLiteStore) -> None:
    t = _task()
    store.put_task(t, _said(t))
    failed = _in(t, TaskState.FAILED, error="deadline passed")
    assert store.put_task(failed, _said(failed)) == failed
    # a late write of an earlier state (a cancelled call that lands after the end) is dropped,
    # with its event, and the caller is told what is stored
    late = _in(t, TaskState.RUNNING)
    assert store.put_task(late, _said(late)) == failed
    assert store.put_task(late) == failed
    cancelled = _in(t, TaskState.CANCELLED, error="cancelled")
    assert store.put_task(cancelled, _said(cancelled)) == failed  # the first end stands
    assert store.get_task(t.id) == failed
    assert [e.data["state"] for e in store.events(task_id=t.id)] == ["pending", "failed"]


def test_a_retried_write_stores_its_event_once(store: SQLiteStore) -> None:
    t = _task()
    store.put_task(t, _said(t))
    running = _in(t, TaskState.RUNNING)
    event = _said(running)
    store.put_task(running, event)
    store.put_task(running, event)  # the recorder retried the call after a restart
    assert [e.data["state"] for e in store.events(task_id=t.id)] == ["pending", "running"]


def test_a_state_changes_only_with_its_event(store: SQLiteStore) -> None:
    t = _task()
    store.put_task(t, _said(t))
    with pytest.raises(RecordError, match="only together with the event"):
        store.put_task(_in(t, TaskState.RUNNING))
    # without an event the rest may change (the agent adds subtasks to a waiting task)
    store.put_task(t.model_copy(update={"subtask_ids": ["task-sub"]}))
    assert store.get_task(t.id).subtask_ids == ["task-sub"]  # type: ignore[union-attr]
    # the event must announce this task's new state
    running = _in(t, TaskState.RUNNING)
    for wrong in (
        _said(t),  # the old state
        _said(running).model_copy(update={"task_id": "task-other"}),
        _said(running).model_copy(update={"kind": EventKind.LOG}),
    ):
        with pytest.raises(RecordError, match="state event"):
            store.put_task(running, wrong)
    assert store.get_task(t.id).state == TaskState.PENDING  # type: ignore[union-attr]


def test_a_stored_task_state_is_announced_only_with_the_state(store: SQLiteStore) -> None:
    t = _task()
    store.put_task(t, _said(t))
    with pytest.raises(RecordError, match="put_task"):
        store.append_event(_said(_in(t, TaskState.FAILED)))
    assert _last_state(store, t.id) == "pending"
    # other task events, and events of tasks the store does not hold, are appended as ever
    store.append_event(Event(kind=EventKind.TASK, task_id=t.id, data={"note": "x"}))
    store.append_event(_said(_task(TaskState.FAILED)))


def test_racing_writers_never_leave_a_disagreement(store: SQLiteStore) -> None:
    """The R1 window: a task's early states and its end written from racing threads, in any
    order (as a cancelled call's write lands whenever it lands)."""
    rng = random.Random(13)
    tasks = [_task() for _ in range(60)]
    for t in tasks:
        store.put_task(t, _said(t))
    writes: list[TaskInfo] = []
    for t in tasks:
        end = rng.choice([TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED])
        writes += [_in(t, TaskState.RUNNING), _in(t, TaskState.WAITING), _in(t, end)]
    rng.shuffle(writes)
    errors: list[BaseException] = []

    def writer(chunk: list[TaskInfo]) -> None:
        for w in chunk:
            try:
                store.put_task(w, _said(w))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

    threads = [threading.Thread(target=writer, args=(writes[i::6],)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for t in tasks:
        stored = store.get_task(t.id)
        assert stored is not None and stored.state.done
        assert stored.state.value == _last_state(store, t.id)
