"""Review rounds (``actors._review``) in process: a delegating agent (``AgentTasks``) gives a
subtask to a specialist, a reviewer on a desktop of its own checks the specialist's file
(copied over by the delegating agent) and sends it back with feedback; the same specialist
goes on from its history on the same desktop until the reviewer passes it (or the rounds run
out). Children are ``LocalAgent``s on stand-in desktops running real bash."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors._review import read_verdict
from orchestrator.brains import BrainContext, Observation, ScriptedBrain
from orchestrator.domain import (
    AgentInfo,
    AgentSpec,
    BrainConfig,
    EventKind,
    FollowUp,
    TaskInfo,
    TaskSpec,
    TaskState,
)
from orchestrator.errors import ConfigError
from orchestrator.records import SQLiteStore
from tests.fakes.openai_server import FakeOpenAIServer, chat_json, chat_tool_calls, tool_call
from tests.fakes.task_desktop import StoreRecords
from tests.unit.test_runner_agent import LocalAgent, Slot, _Method, until

WRITE = {"type": "shell", "command": "printf 'hello\\n' > greeting.txt"}
REWRITE = {
    "type": "shell",
    "command": "printf 'hello, {{ feedback }} (round {{ round }})\\n' > greeting.txt",
}
CHECK_NAME = (
    "grep -q Ada ~/review/greeting.txt && echo 'greets Ada' || "
    "{ echo 'name the reader: Ada'; exit 1; }"
)


class ReviewAgent(LocalAgent):
    """A ``LocalAgent`` whose children's handles also read and write files and pause."""

    async def hire(self, spec: AgentSpec) -> AgentInfo:
        child = ReviewAgent(self.records, spec, path=f"{self.info.path}/{spec.name}")
        child.assign_gate = self.assign_gate
        self.hired.append(child)
        handle = type("Handle", (), {})()
        handle.assign = _Method(child.gated_assign)
        handle.wait_task = _Method(child.tasks.wait)
        handle.cancel_task = _Method(child.tasks.cancel)
        handle.pause = _Method(child.tasks.pause)
        handle.resume = _Method(child.tasks.resume)
        handle.read_path = _Method(child.read_path)
        handle.write_file = _Method(child.write_file)
        self.children[child.info.id] = Slot(child.info, handle)
        return child.info

    async def read_path(self, path: str) -> tuple[bool, bytes]:
        return False, (self.desktop.home / path.removeprefix("~/")).read_bytes()

    async def write_file(self, path: str, data: bytes) -> int:
        dest = self.desktop.home / path.removeprefix("~/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return len(data)


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def boss(records: StoreRecords) -> Iterator[ReviewAgent]:
    a = ReviewAgent(records, AgentSpec(name="boss", role="lead"))
    yield a
    a.close()


def plan(review_steps: list[Any], rounds: int = 2, **specialist: Any) -> dict[str, Any]:
    script = {"steps": [WRITE], "follow_up": [REWRITE], "result": "wrote it", **specialist}
    return {
        "subtasks": [
            {
                "id": "greet",
                "role": "writer",
                "description": "Write a greeting to ~/greeting.txt.",
                "outputs": ["greeting.txt"],
                "script": script,
                "review": {
                    "role": "editor",
                    "rounds": rounds,
                    "instructions": "It must greet the reader by name.",
                    "script": {"steps": review_steps},
                },
            }
        ]
    }


def review_log(records: StoreRecords, task_id: str) -> list[dict[str, Any]]:
    events = records.store.events(task_id=task_id, limit=1000, kinds=[EventKind.LOG])
    return [e.data for e in events if "event" in e.data]


async def run(boss: ReviewAgent, script: dict[str, Any], **spec: Any) -> TaskInfo:
    task = await boss.tasks.assign(TaskSpec(description="greet", script=script, **spec))
    return await boss.tasks.wait(task.id)


async def test_feedback_goes_back_to_the_same_specialist_until_the_review_passes(
    boss: ReviewAgent, records: StoreRecords
) -> None:
    ended = await run(boss, plan([{"verdict": {"command": CHECK_NAME}}]))
    assert ended.state == TaskState.SUCCEEDED, ended.error
    writer, editor = boss.hired  # one specialist and one reviewer, nobody else
    assert (writer.info.spec.role, editor.info.spec.role) == ("writer", "editor")
    text = (writer.desktop.home / "greeting.txt").read_text()
    assert text == "hello, name the reader: Ada (round 2)\n"
    # the reviewer read a copy of the file on its own desktop
    assert (editor.desktop.home / "review" / "greeting.txt").read_text() == text
    log = review_log(records, ended.id)
    assert [(d["event"], d["round"]) for d in log] == [
        ("review_started", 1),
        ("review_verdict", 1),
        ("follow_up_started", 2),
        ("review_started", 2),
        ("review_verdict", 2),
    ]
    assert (log[1]["verdict"], log[1]["feedback"]) == ("fail", "name the reader: Ada")
    assert (log[4]["verdict"], log[4]["feedback"]) == ("pass", "greets Ada")
    assert {d["specialist"] for d in log} == {writer.info.id}
    assert {d["reviewer"] for d in log if "reviewer" in d} == {editor.info.id}
    # the parent's subtasks: work, review, follow-up, review; the follow-up on the same agent
    subs = [boss.tasks.records.store.get_task(i) for i in ended.subtask_ids]
    assert [s.agent_id for s in subs if s] == [writer.info.id, editor.info.id] * 2
    first, follow = subs[0], subs[2]
    assert first is not None and follow is not None
    assert follow.spec.follow_up == FollowUp(
        task_id=first.id, round=2, feedback="name the reader: Ada"
    )
    assert "name the reader: Ada" in follow.spec.description
    # the follow-up went on from the first round's history: its steps come after those
    first_steps = writer.tasks._histories[first.id]
    assert writer.tasks._histories[follow.id][: len(first_steps)] == first_steps
    assert len(writer.tasks._histories[follow.id]) == len(first_steps) + 1
    assert ended.result == "greet: wrote it"


async def test_a_review_that_never_passes_fails_the_subtask_with_the_last_feedback(
    boss: ReviewAgent,
) -> None:
    never = {"verdict": {"command": "echo 'still too short'; exit 3"}}
    ended = await run(boss, plan([never], rounds=2), max_attempts=1)
    assert ended.state == TaskState.FAILED
    assert ended.error is not None
    assert "did not pass the review of a editor in 2 round(s): still too short" in ended.error
    assert len(ended.subtask_ids) == 4


async def test_a_failed_review_retries_on_a_fresh_specialist_with_rounds_of_its_own(
    boss: ReviewAgent, tmp_path: Path
) -> None:
    # the first writer fails its only review round; the fresh one writes Ada at once
    tried = tmp_path / "tried"
    once = f"if test -e {tried}; then echo Ada; else touch {tried}; echo nobody; fi"
    script = plan([{"verdict": {"command": CHECK_NAME}}], rounds=1)
    spec = script["subtasks"][0]["script"]
    spec["steps"] = [{"type": "shell", "command": f"({once}) > greeting.txt"}]
    ended = await run(boss, script, max_attempts=2)
    assert ended.state == TaskState.SUCCEEDED, ended.error
    assert [c.info.spec.role for c in boss.hired] == ["writer", "editor", "writer"]


async def test_a_reviewer_without_a_verdict_ends_the_review(boss: ReviewAgent) -> None:
    script = plan([{"type": "shell", "command": "echo looks fine to me"}])
    script["subtasks"][0]["review"]["script"]["result"] = "looks fine to me"
    ended = await run(boss, script, max_attempts=1)
    assert ended.state == TaskState.FAILED
    assert ended.error is not None and "the reviewer gave no verdict" in ended.error


def test_verdicts_are_read_from_a_first_line_or_json() -> None:
    assert read_verdict("PASS") is not None and read_verdict("PASS").passed  # type: ignore[union-attr]
    v = read_verdict("FAIL: too short\nadd a name")
    assert v is not None and (v.passed, v.feedback) == (False, "too short\nadd a name")
    v = read_verdict('{"verdict": "fail", "feedback": "no title"}')
    assert v is not None and (v.passed, v.feedback) == (False, "no title")
    v = read_verdict("**Passed.** All good.")
    assert v is not None and (v.passed, v.feedback) == (True, "All good.")
    assert read_verdict("I think it is fine") is None
    assert read_verdict('{"verdict": "maybe"}') is None


def test_a_verdict_step_must_end_the_script() -> None:
    with pytest.raises(ConfigError, match="must be the last"):
        ScriptedBrain({"steps": [{"verdict": {"command": "true"}}, {"type": "wait"}]})
    with pytest.raises(ConfigError, match="no `result`"):
        ScriptedBrain({"steps": [{"verdict": {"command": "true"}}], "result": "x"})


async def test_a_scripted_follow_up_runs_its_follow_up_steps_with_the_feedback() -> None:
    brain = ScriptedBrain({"steps": [WRITE], "follow_up": [REWRITE]})
    obs = Observation(screenshot=b"", media_type="image/png", width=1, height=1)
    ctx = BrainContext(task_id="t", description="d", role="writer")
    ctx.follow_up = FollowUp(task_id="t0", round=3, feedback="add a name")
    decision = await brain.step(ctx, obs)
    assert decision.kind == "act"
    assert decision.actions[0].command == (  # type: ignore[union-attr]
        "printf 'hello, add a name (round 3)\\n' > greeting.txt"
    )


def test_a_model_plan_may_give_a_subtask_a_reviewer() -> None:
    from orchestrator.brains._structured import PlanReply, plan_from, strict_schema

    sub = {"id": "a", "role": "writer", "description": "d", "depends_on": []}
    reviewed = {
        **sub,
        "outputs": ["notes.md"],
        "review": {"role": "editor", "rounds": 3, "instructions": "typos"},
    }
    reply = {"subtasks": [reviewed, {**sub, "id": "b"}], "check": None}
    plan = plan_from(PlanReply.model_validate(reply))
    first, second = plan.subtasks
    assert first.outputs == ["notes.md"] and first.review is not None
    assert (first.review.role, first.review.rounds, first.review.instructions) == (
        "editor",
        3,
        "typos",
    )
    assert second.review is None and second.outputs == []
    with pytest.raises(ValueError, match="rounds"):
        plan_from(
            PlanReply.model_validate(
                {
                    "subtasks": [
                        {
                            **reviewed,
                            "review": {"role": "editor", "rounds": 9, "instructions": None},
                        }
                    ],
                    "check": None,
                }
            )
        )
    # strict mode: the schema asks for every field, these too
    schema = strict_schema(PlanReply)["$defs"]
    assert schema["SubtaskReply"]["required"][-2:] == ["outputs", "review"]
    assert schema["ReviewReply"]["required"] == ["role", "rounds", "instructions"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


async def test_a_model_reviewer_reports_its_verdict_in_its_final_report(
    records: StoreRecords, fake: FakeOpenAIServer
) -> None:
    # The lead and its specialist follow scripts; the editor it hires has the lead's model
    # brain (chat-tools against the fake server) and reviews on its own desktop.
    brain = BrainConfig(kind="openai", model="gpt-4o", base_url=fake.base_url)
    lead = ReviewAgent(records, AgentSpec(name="boss", role="lead", brain=brain))
    try:
        script = plan([])
        del script["subtasks"][0]["review"]["script"]  # the editor's own brain decides
        fake.add(
            chat_json({"decision": "do", "reason": "a quick read"}),
            chat_tool_calls(tool_call("done", {"result": "FAIL: name the reader: Ada"})),
            chat_json({"decision": "do", "reason": "a quick read"}),
            chat_tool_calls(tool_call("done", {"result": "PASS\nreads well"})),
        )
        ended = await run(lead, script)
        assert ended.state == TaskState.SUCCEEDED, ended.error
        writer, editor = lead.hired
        text = (writer.desktop.home / "greeting.txt").read_text()
        assert text == "hello, name the reader: Ada (round 2)\n"
        log = review_log(records, ended.id)
        verdicts = [(d["verdict"], d["feedback"]) for d in log if d["event"] == "review_verdict"]
        assert verdicts == [("fail", "name the reader: Ada"), ("pass", "reads well")]
        # what the model was asked: the subtask, the report, the copy on its desktop, the format
        asked = json.dumps(fake.bodies()[0])
        for said in (
            "Write a greeting",
            "It must greet the reader by name",
            "~/review/greeting.txt",
        ):
            assert said in asked
        assert "PASS" in asked and "FAIL: what must change" in asked
        assert fake.pending == 0
    finally:
        lead.close()


def test_the_review_example_is_a_valid_workflow() -> None:
    from orchestrator.brains import Script
    from orchestrator.workflow import load_workflow

    wf = load_workflow(Path(__file__).resolve().parents[2] / "examples" / "review.yaml")
    assert wf.task.script is not None
    (sub,) = Script.model_validate(wf.task.script).subtasks
    assert sub.review is not None and sub.review.rounds == 2 and sub.outputs == ["docs/README.md"]
    assert sub.script is not None and sub.script.follow_up


async def test_cancelling_during_a_review_cancels_it_and_lets_the_children_go(
    boss: ReviewAgent, tmp_path: Path
) -> None:
    gate = tmp_path / "never"
    slow = {"verdict": {"command": f"while [ ! -e {gate} ]; do sleep 0.01; done"}}
    task = await boss.tasks.assign(TaskSpec(description="greet", script=plan([slow])))
    await until(lambda: len(boss.hired) == 2 and bool(boss.hired[1].desktop.actions))
    assert len(boss.tasks._held) == 2  # the writer and the editor, held for the rounds
    ended = await boss.tasks.cancel(task.id)
    assert ended.state == TaskState.CANCELLED
    editor = boss.hired[1]
    (review_id,) = editor.tasks._kept
    assert editor.tasks.get(review_id).state == TaskState.CANCELLED
    assert boss.tasks._held == set()
