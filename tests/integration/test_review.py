"""``examples/review.yaml`` on the real thing (a local Ray cluster, real agents with real
desktops, scripted brains): the lead's writer drafts a README, an editor on a desktop of its
own reviews the copy, sends it back once with feedback, and passes the writer's follow-up,
made by the same agent on the same desktop. The run is printed as ``orchestrator run``
prints it (``run_workflow``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors import run_workflow
from orchestrator.domain import EventKind, TaskState
from orchestrator.workflow import load_workflow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "review.yaml"
FEEDBACK = "no '## Usage' section: add one with an example command"
PASSED = "has a Usage section with an example"
FINAL = "# hello\n\nGreets people by name.\n\n## Usage\n\n    hello --name Ada\n"


async def test_the_review_example_fails_once_then_passes(agents: Any, tmp_path: Path) -> None:
    rt = agents.runtime
    wf = load_workflow(EXAMPLE)
    desktop = wf.agent.desktop.model_copy(update={"image": agents.session.image})
    wf = wf.model_copy(
        update={"tenant": agents.tenant, "agent": wf.agent.model_copy(update={"desktop": desktop})}
    )
    lines: list[str] = []
    done = await run_workflow(rt, wf, out_dir=tmp_path / "out", say=lines.append, keep=True)
    agents.created.append(await rt.agent(done.agent_id))  # fired when the test ends
    printed = "\n".join(lines)
    print(printed)  # noqa: T201 - the run as `orchestrator run` prints it (pytest -s)
    assert done.state == TaskState.SUCCEEDED, printed[-4000:]

    # every round on the lead's timeline
    log = [
        e.data
        for e in await agents.events(task_id=done.id)
        if e.kind == EventKind.LOG and "event" in e.data
    ]
    assert [(d["event"], d["round"]) for d in log] == [
        ("review_started", 1),
        ("review_verdict", 1),
        ("follow_up_started", 2),
        ("review_started", 2),
        ("review_verdict", 2),
    ], printed[-4000:]
    assert (log[1]["verdict"], log[1]["feedback"]) == ("fail", FEEDBACK)
    assert (log[4]["verdict"], log[4]["feedback"]) == ("pass", PASSED)
    assert "readme: round 1: FAIL: no '## Usage'" in printed  # the timeline as printed
    assert "readme: round 2: PASS" in printed

    # the same writer (agent and desktop) did both rounds; one editor reviewed both
    subs = await agents.subtasks(done.id)
    assert [s.state for s in subs] == [TaskState.SUCCEEDED] * 4
    writer_id, editor_id = subs[0].agent_id, subs[1].agent_id
    assert [s.agent_id for s in subs] == [writer_id, editor_id, writer_id, editor_id]
    assert subs[2].spec.follow_up is not None and subs[2].spec.follow_up.task_id == subs[0].id
    assert subs[2].spec.follow_up.feedback == FEEDBACK
    assert subs[2].result == f"round 2: fixed ({FEEDBACK})"
    writer, editor = await rt.agent(writer_id), await rt.agent(editor_id)
    assert (writer.spec.role, editor.spec.role) == ("technical writer", "technical editor")
    writer_boxes = agents.containers(writer.path)
    assert len(writer_boxes) == 1  # one desktop for both rounds
    assert writer_boxes[0]["Labels"]["orchestrator.agent"] == writer_id
    editor_boxes = {c["Id"] for c in agents.containers(editor.path)}
    assert writer_boxes[0]["Id"] not in editor_boxes

    # the file: on the writer's desktop, on the editor's (its copy), and kept with the task
    _, on_writer = await agents.actor(writer.path).read_path.remote("docs/README.md")
    _, on_editor = await agents.actor(editor.path).read_path.remote("~/review/docs/README.md")
    assert on_writer.decode() == on_editor.decode() == FINAL
    (kept,) = [e for e in await agents.events(task_id=subs[2].id) if e.kind == EventKind.FILE]
    assert kept.data["path"] == "docs/README.md"
    assert (await rt.blob(kept.blobs[0])).decode() == FINAL
    assert done.result == f"README reviewed: round 2: fixed ({FEEDBACK})"
