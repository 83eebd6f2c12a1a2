"""A task run by the real TaskRunner with Claude's brain against the fake Messages API, on the
stand-in desktop (a 1920x1080 screen shown to the model as 1366x768): the editor writes a
file, bash reads it, a click lands on the screen pixel under the model's point, and the
report ends the task."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image

from actors._runner import TaskRunner
from orchestrator import actions as a
from orchestrator.brains import make_brain
from orchestrator.domain import BrainConfig, TaskSpec, TaskState
from orchestrator.records import SQLiteStore
from tests.fakes.anthropic_server import (
    FakeAnthropicServer,
    bash,
    computer,
    editor,
    message,
    text,
    text_message,
)
from tests.fakes.task_desktop import LocalHost, StandInDesktop, StoreRecords, new_task


@pytest.fixture
def desk() -> Iterator[StandInDesktop]:
    d = StandInDesktop((1920, 1080))
    yield d
    d.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server


async def test_claude_does_a_task_on_the_stand_in_desktop(
    store: SQLiteStore, desk: StandInDesktop, fake: FakeAnthropicServer
) -> None:
    records = StoreRecords(store)
    note = desk.home / "note.txt"
    fake.add(
        text_message(json.dumps({"decision": "do", "reason": "one small file"})),
        message(
            text("Write the note, read it back, click the middle."),
            editor("create", str(note), file_text="hello from claude\n", id="e1"),
            bash(f"cat {note}", id="b1"),
            computer("left_click", coordinate=[683, 384], id="c1"),
        ),
        text_message(f"Wrote {note}."),
    )
    task = await new_task(records, TaskSpec(description="write a note"))
    brain = make_brain(
        BrainConfig(kind="anthropic", model="claude-sonnet-4-5", base_url=fake.base_url)
    )
    runner = TaskRunner(task, "writer", "t/u/writer", desk, brain, LocalHost(records), records)
    try:
        ended = await runner.run()
    finally:
        await brain.close()

    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, f"Wrote {note}.")
    assert note.read_text() == "hello from claude\n"
    assert [type(x) for x in desk.actions] == [a.Shell, a.Shell, a.Click]
    assert desk.actions[2] == a.Click(x=960, y=540)  # the middle of 1366x768 on 1920x1080
    assert desk.screen.getpixel((960, 540)) == (255, 255, 255)
    bodies = fake.bodies()
    for body in bodies:  # every screenshot in Claude's space
        for block in body["messages"][0]["content"]:
            if block["type"] == "image":
                with Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))) as shot:
                    assert shot.size == (1366, 768)
    results = {
        b["tool_use_id"]: b for b in bodies[2]["messages"][-1]["content"] if "tool_use_id" in b
    }
    assert "File created successfully" in results["e1"]["content"][0]["text"]
    assert results["b1"]["content"] == [{"type": "text", "text": "hello from claude"}]
    assert [b["type"] for b in results["c1"]["content"]] == ["text", "image"]
    assert bodies[2]["tools"][0]["display_width_px"] == 1366
