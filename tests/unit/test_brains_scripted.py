"""The scripted brain: triage, plan, steps, checks and result templates from a script."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orchestrator import actions as a
from orchestrator.actions import ActionResult, CommandResult
from orchestrator.brains import (
    BrainContext,
    Observation,
    Script,
    ScriptedBrain,
    StepRecord,
    make_brain,
)
from orchestrator.domain import Act, BrainConfig, Decision, Done, Fail
from orchestrator.errors import BrainError, ConfigError

OBS = Observation(screenshot=b"png", media_type="image/png", width=1024, height=768)

NGINX = yaml.safe_load(
    """
    triage: do
    steps:
      - {type: shell, command: "apt-get install -y nginx", user: root, timeout_s: 600}
      - check: {command: "nginx -v", user: root, expect: "nginx/"}
    result: "nginx installed: {{ outputs[-1] }}"
    """
)


def context(**kw: Any) -> BrainContext:
    return BrainContext(task_id="task-1", description="install nginx", role="sysadmin", **kw)


def ran(exit_code: int | None = 0, stdout: str = "", stderr: str = "", **kw: Any) -> ActionResult:
    command = CommandResult(exit_code=exit_code, stdout=stdout, stderr=stderr, **kw)
    return ActionResult(ok=True, command=command)


async def run(
    brain: ScriptedBrain, results: list[list[ActionResult]], ctx: BrainContext | None = None
) -> tuple[list[Decision], Decision]:
    """Drive the step loop like the runner, answering each decision with the next results."""
    ctx = ctx or context()
    decisions = []
    for answer in results:
        decision = await brain.step(ctx, OBS)
        assert isinstance(decision, Act), decision
        decisions.append(decision)
        ctx.history.append(StepRecord(decision, answer))
    return decisions, await brain.step(ctx, OBS)


async def test_triage_follows_the_script() -> None:
    ctx = context()
    assert (await ScriptedBrain({"steps": []}).triage(ctx, OBS)).decision == "do"
    delegating = {"subtasks": [{"id": "a", "role": "r", "description": "d"}]}
    assert (await ScriptedBrain(delegating).triage(ctx, OBS)).decision == "delegate"
    explicit = {"triage": "do", "steps": [{"type": "wait"}]}
    assert (await ScriptedBrain(explicit).triage(ctx, OBS)).decision == "do"


async def test_steps_checks_and_the_result_template() -> None:
    brain = make_brain(BrainConfig(kind="scripted", script=NGINX))
    assert isinstance(brain, ScriptedBrain)

    decisions, final = await run(
        brain,
        [[ran(0, "Setting up nginx ...")], [ran(0, "", "nginx version: nginx/1.22.1")]],
    )

    assert [d.actions for d in decisions] == [
        [a.Shell(command="apt-get install -y nginx", user="root", timeout_s=600)],
        [a.Shell(command="nginx -v", user="root")],
    ]
    assert decisions[0].thought == "script: step 1 of 2"
    assert final == Done(
        result="nginx installed: nginx version: nginx/1.22.1", thought="script finished"
    )


async def test_a_failing_check_fails_the_next_step_with_its_output() -> None:
    _, final = await run(
        ScriptedBrain(NGINX), [[ran(0)], [ran(127, "", "bash: nginx: command not found")]]
    )
    assert isinstance(final, Fail)
    assert final.reason == (
        "step 2: check `nginx -v` failed: it exited with status 127: bash: nginx: command not found"
    )


async def test_a_check_whose_output_lacks_the_expected_text_fails_with_its_message() -> None:
    script = {
        "steps": [
            {"check": {"command": "cat /etc/hostname", "expect": "web", "message": "wrong host"}}
        ]
    }
    _, final = await run(ScriptedBrain(script), [[ran(0, "db-1\n")]])
    assert isinstance(final, Fail)
    assert final.reason == "step 1: wrong host failed: its output lacks 'web': db-1"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ([ran(2, "", "E: Unable to locate package nginxx")], "exited with status 2: E: Unable"),
        ([ran(None, "partial", timed_out=True, duration_s=600)], "timed out after 600 s: partial"),
        ([ActionResult.failure("ssh connection lost")], "shell failed: ssh connection lost"),
        ([], "shell was not carried out"),
    ],
)
async def test_a_failed_shell_step_fails_the_task(answer: list[ActionResult], reason: str) -> None:
    script = {
        "steps": [{"type": "shell", "command": "apt-get install -y nginxx"}, {"type": "wait"}]
    }
    decisions, final = await run(ScriptedBrain(script), [answer])
    assert len(decisions) == 1 and isinstance(final, Fail)
    assert final.reason.startswith("step 1: ") and reason in final.reason


async def test_a_batch_is_one_decision_and_gui_failures_fail_the_task() -> None:
    script = {
        "steps": [
            {"batch": [{"type": "click", "x": 10, "y": 20}, {"type": "type", "text": "hello\n"}]},
            {"type": "keypress", "keys": ["ctrl", "s"]},
        ]
    }
    brain = ScriptedBrain(script)
    ctx = context()
    first = await brain.step(ctx, OBS)
    assert first.actions == [a.Click(x=10, y=20, keys=[]), a.TypeText(text="hello\n")]
    ctx.history.append(StepRecord(first, [ActionResult(ok=True), ActionResult(ok=True)]))
    second = await brain.step(ctx, OBS)
    assert second.actions == [a.KeyPress(keys=["ctrl", "s"])]
    ctx.history.append(StepRecord(second, [ActionResult.failure("unknown key 'ctrl'")]))
    final = await brain.step(ctx, OBS)
    assert isinstance(final, Fail) and final.reason == "step 2: keypress failed: unknown key 'ctrl'"


async def test_placeholders_fill_commands_from_outputs_results_and_the_task() -> None:
    script = {
        "steps": [
            {"type": "shell", "command": "hostname"},
            {"type": "shell", "command": "echo {{ outputs[0] | q }} {{ results.db }}"},
            {"type": "shell", "command": "docker ps --format '{{.Names}}' # {{ task }}"},
        ],
        "result": "{{ results['db'] }} / {{ role }} / {{outputs[1]}}",
    }
    ctx = context(subtask_results={"db": "postgres:5432"})
    decisions, final = await run(
        ScriptedBrain(script),
        [[ran(0, "web host\n")], [ran(0, "web host postgres:5432")], [ran(0, "")]],
        ctx,
    )
    commands = [d.actions[0].command for d in decisions if isinstance(d.actions[0], a.Shell)]
    assert commands == [
        "hostname",
        "echo 'web host' postgres:5432",
        "docker ps --format '{{.Names}}' # install nginx",
    ]
    assert isinstance(final, Done)
    assert final.result == "postgres:5432 / sysadmin / web host postgres:5432"


async def test_a_template_naming_a_missing_value_fails_the_task() -> None:
    script = {"steps": [{"type": "shell", "command": "echo {{ outputs[3] }}"}]}
    final = await ScriptedBrain(script).step(context(), OBS)
    assert isinstance(final, Fail)
    assert final.reason == "step 1: outputs[3] does not exist (0 item(s))"
    brain = ScriptedBrain({"steps": [], "result": "{{ results.nope }}"})
    final = await brain.step(context(subtask_results={"db": "x"}), OBS)
    assert isinstance(final, Fail)
    assert final.reason == "result template: results has no 'nope' (known: db)"


async def test_default_result_is_the_last_output() -> None:
    script = {"steps": [{"type": "shell", "command": "uname -r"}]}
    _, final = await run(ScriptedBrain(script), [[ran(0, "6.1.0\n")]])
    assert final == Done(result="6.1.0", thought="script finished")
    assert await ScriptedBrain({"steps": []}).step(context(), OBS) == Done(
        result="done", thought="script finished"
    )


async def test_delegation_plan_carries_each_specialists_script() -> None:
    script = yaml.safe_load(
        """
        subtasks:
          - id: install
            role: package installer
            description: Install nginx.
            script:
              steps: [{type: shell, command: "apt-get install -y nginx", user: root}]
          - {id: page, role: web designer, description: Write the page., depends_on: [install]}
        check:
          - check: {command: "curl -s localhost", expect: "{{ results.page }}"}
        result: "site: {{ outputs[-1] }} ({{ results.install }})"
        """
    )
    brain = ScriptedBrain(script)
    ctx = context()
    assert (await brain.triage(ctx, OBS)).decision == "delegate"

    plan = await brain.plan(ctx, OBS)

    assert [(s.id, s.role, s.depends_on) for s in plan.subtasks] == [
        ("install", "package installer", []),
        ("page", "web designer", ["install"]),
    ]
    child = plan.subtasks[0].script
    assert child is not None and plan.subtasks[1].script is None
    assert Script.model_validate(child) == Script.model_validate(script["subtasks"][0]["script"])
    assert child == {
        "steps": [{"type": "shell", "command": "apt-get install -y nginx", "user": "root"}]
    }
    assert plan.check == "the script's 1 check step(s)" and brain.wants_check()

    results = {"install": "nginx 1.22", "page": "Hello"}
    decision = await brain.check(ctx, OBS, results)
    assert decision.actions == [a.Shell(command="curl -s localhost")]
    ctx.history.append(StepRecord(decision, [ran(0, "<h1>Hello</h1>")]))
    final = await brain.check(ctx, OBS, results)
    assert final == Done(result="site: <h1>Hello</h1> (nginx 1.22)", thought="script finished")


async def test_delegation_check_fails_when_results_are_not_on_the_page() -> None:
    script = {
        "subtasks": [{"id": "page", "role": "r", "description": "d"}],
        "check": [{"check": {"command": "curl -s localhost", "expect": "{{ results.page }}"}}],
    }
    brain = ScriptedBrain(script)
    ctx = context()
    decision = await brain.check(ctx, OBS, {"page": "Hello"})
    ctx.history.append(StepRecord(decision, [ran(0, "It works!")]))
    final = await brain.check(ctx, OBS, {"page": "Hello"})
    assert isinstance(final, Fail) and "lacks 'Hello'" in final.reason


async def test_delegation_without_check_or_result_wants_no_check() -> None:
    brain = ScriptedBrain({"subtasks": [{"id": "a", "role": "r", "description": "d"}]})
    assert not brain.wants_check()
    assert (await brain.plan(context(), OBS)).check is None


async def test_plan_of_a_doing_script_is_an_error() -> None:
    with pytest.raises(BrainError, match="does not delegate"):
        await ScriptedBrain({"steps": []}).plan(context(), OBS)


async def test_history_without_the_last_steps_results_is_an_error() -> None:
    brain = ScriptedBrain({"steps": [{"type": "wait"}, {"type": "wait"}]})
    await brain.step(context(), OBS)
    with pytest.raises(BrainError, match="does not show what step 1"):
        await brain.step(context(), OBS)


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({"steps": [{"type": "click", "x": 1}]}, "steps.0.action.click.y: Field required"),
        ({"steps": [{"type": "fly"}]}, "steps.0.action: Input tag 'fly' found using 'type'"),
        ({"steps": [{"run": "ls"}]}, "steps.0: a step is an action"),
        ({"steps": [{"check": {"cmd": "ls"}}]}, "steps.0.check.check.command: Field required"),
        ({"steps": [{"batch": []}]}, "steps.0.batch.batch: List should have at least 1 item"),
        ({"steps": [], "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"triage": "delegate"}, "triage is `delegate` but there are no `subtasks`"),
        (
            {
                "steps": [{"type": "wait"}],
                "subtasks": [{"id": "a", "role": "r", "description": "d"}],
            },
            "`steps` are for triage `do`",
        ),
        ({"steps": [], "check": [{"type": "wait"}]}, "`check` is for triage `delegate`"),
        (
            {
                "subtasks": [
                    {"id": "a", "role": "r", "description": "d", "depends_on": ["b"]},
                    {"id": "b", "role": "r", "description": "d", "depends_on": ["a"]},
                ]
            },
            "cycle among ['a', 'b']",
        ),
        (
            {"subtasks": [{"id": "a", "role": "r", "description": "d", "depends_on": ["z"]}]},
            "depends on unknown subtasks ['z']",
        ),
        ({"result": "{{ outputs[-1] + 1 }}"}, "result: Value error, {{ outputs[-1] + 1 }}"),
        ({"steps": [{"type": "shell", "command": "echo {{ task | upper }}"}]}, "unknown filter"),
        (
            {
                "subtasks": [
                    {
                        "id": "a",
                        "role": "r",
                        "description": "d",
                        "script": {"steps": [{"type": "move", "x": "left"}]},
                    }
                ]
            },
            "subtasks.0.script.steps.0.action.move.x: Input should be a valid integer",
        ),
    ],
)
def test_invalid_scripts_are_rejected_with_the_path(script: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid script") as info:
        ScriptedBrain(script)
    assert message in str(info.value)


def test_a_scripted_brain_needs_a_script() -> None:
    with pytest.raises(ConfigError, match="needs a script"):
        make_brain(BrainConfig(kind="scripted"))
