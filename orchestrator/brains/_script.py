"""The format of a script: an agent's explicit plan, validated with pydantic.

A script is a dict (usually YAML) in ``BrainConfig.script`` or ``TaskSpec.script``::

    # an agent that does the work itself
    triage: do                  # optional: `delegate` when `subtasks` is given, else `do`
    steps:                      # run in order; each step is one decision of the step loop
      - {type: shell, command: "apt-get install -y nginx", user: root, timeout_s: 600}
      - check: {command: "nginx -v", user: root, expect: "nginx/"}
      - batch:                  # several actions in one decision
          - {type: click, x: 100, y: 200}
          - {type: type, text: "hello\\n"}
    result: "nginx installed: {{ outputs[-1] }}"   # the report; default: the last output

    # an agent that delegates
    subtasks:                   # Subtask fields; `script` is the specialist's own script
      - id: install
        role: package installer
        description: Install nginx.
        script: {steps: [{type: shell, command: "apt-get install -y nginx", user: root}]}
      - id: page
        role: web designer
        description: Write the home page.
        depends_on: [install]
        script: {steps: [{type: shell, command: "echo hi > /var/www/html/index.html"}]}
    check:                      # steps on the delegating agent's own desktop, at the end
      - check: {command: "curl -s localhost", expect: hi}
    result: "site up: {{ results.page }}"

    # a subtask with a reviewer (review rounds, see ``actors._review``)
    subtasks:
      - id: write
        role: writer
        description: Write ~/hello.txt.
        outputs: [hello.txt]            # copied to ~/review/ on the reviewer's desktop
        script:
          steps: [{type: shell, command: "echo draft > hello.txt"}]
          follow_up:                    # a follow-up round's steps (default: `steps` again)
            - {type: shell, command: "echo 'round {{ round }}: {{ feedback }}' > hello.txt"}
        review:
          role: editor
          rounds: 2
          instructions: The greeting must say hello.
          script:                       # the reviewer's script ends with its verdict
            steps:
              - verdict: {command: "grep -q hello ~/review/hello.txt || echo 'say hello'"}

Steps:

- an action: any ``orchestrator.actions`` action as a dict, ``{type: ..., ...}``;
- ``{check: {command, user, timeout_s, cwd, expect, message}}``: a shell command that must
  exit 0 (and print ``expect``, when given), else the task fails with ``message`` (default:
  the command) and the command's output;
- ``{batch: [action, ...]}``: several actions in one decision;
- ``{ask: "question"}``: ask a person and wait (``input_required``); the answer is the
  step's output (``{{ outputs[-1] }}``);
- ``{approve: "why", actions: [action, ...]}``: wait (``approval_required``) until a person
  approves the actions, then carry them out; refused, the task fails;
- ``{verdict: {command, user, timeout_s, cwd}}`` (a reviewer's last step): a shell command
  whose exit status is the verdict: 0 reports ``PASS`` (its output: notes), anything else
  ``FAIL: <its output>`` (the feedback); the task succeeds either way (a command that times
  out or is killed fails it). The script's report is the verdict (no ``result``).

A review round's follow-up (``TaskSpec.follow_up``) runs ``follow_up`` when the script has
it (else ``steps`` again); ``{{ feedback }}`` and ``{{ round }}`` are the reviewer's
feedback and the round (empty and ``1`` in the first round).

A shell action that exits non-zero or times out fails the task too (as ``set -e`` would;
append ``|| true`` to allow it), and so does any action the desktop could not carry out.

``result``, check commands and the string fields of actions (``command``, ``text``,
``cwd``) may hold ``{{ ... }}`` placeholders (see ``_template``), filled in when the step
runs. Everything is validated when the brain is made: an error names the path of the bad
field, e.g. ``steps.1.action.click.x: Field required``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from ..actions import Action
from ._template import check_template

__all__ = [
    "ApproveStep",
    "AskStep",
    "BatchStep",
    "CheckStep",
    "Script",
    "ScriptCheck",
    "ScriptReview",
    "ScriptSubtask",
    "Step",
    "VerdictStep",
]

TEMPLATED_FIELDS = ("command", "text", "cwd")
"""Fields of actions whose strings may hold placeholders."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _templated_action(action: Action) -> Action:
    for name in TEMPLATED_FIELDS:
        value = getattr(action, name, None)
        if isinstance(value, str):
            try:
                check_template(value)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
    return action


_Template = Annotated[str, AfterValidator(check_template)]
ActionStep = Annotated[Action, AfterValidator(_templated_action)]


class ScriptCheck(_Model):
    """A shell command that must succeed for the task to go on."""

    command: Annotated[_Template, Field(min_length=1, max_length=100_000)]
    """The command line, run by bash; it must exit 0."""
    user: Literal["agent", "root"] = "agent"
    """Run as the desktop user or as root."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Kill the command (and fail the check) after this many seconds."""
    cwd: _Template | None = None
    """Working directory; the user's home when omitted."""
    expect: _Template | None = None
    """Text the output (stdout then stderr) must contain."""
    message: Annotated[str, Field(max_length=2000)] | None = None
    """The reason the task fails with when the check fails; default: the command."""


class CheckStep(_Model):
    """A step that checks something with a shell command."""

    check: ScriptCheck


class BatchStep(_Model):
    """A step of several actions carried out in one decision."""

    batch: Annotated[list[ActionStep], Field(min_length=1, max_length=64)]


class AskStep(_Model):
    """A step that asks a person a question and waits for the answer."""

    ask: Annotated[_Template, Field(min_length=1, max_length=20_000)]
    """The question (a template)."""


class ApproveStep(_Model):
    """A step of actions a person must approve before they are carried out."""

    approve: Annotated[str, Field(max_length=20_000)]
    """Why they need approval, shown to the person."""
    actions: Annotated[list[ActionStep], Field(min_length=1, max_length=64)]
    """The actions, carried out in one decision once approved."""


class ScriptVerdict(_Model):
    """A reviewer's verdict: a shell command whose exit status decides."""

    command: Annotated[_Template, Field(min_length=1, max_length=100_000)]
    """The command line, run by bash: exit 0 passes; its output is the notes or feedback."""
    user: Literal["agent", "root"] = "agent"
    """Run as the desktop user or as root."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Kill the command (and fail the review task) after this many seconds."""
    cwd: _Template | None = None
    """Working directory; the user's home when omitted."""


class VerdictStep(_Model):
    """A reviewer's last step: its verdict (``PASS`` or ``FAIL: feedback``) is the report."""

    verdict: ScriptVerdict


_KINDS = {
    "check": CheckStep,
    "batch": BatchStep,
    "ask": AskStep,
    "approve": ApproveStep,
    "verdict": VerdictStep,
}


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _KINDS:
            if key in value:
                return key
        return "action" if "type" in value else None
    for key, model in _KINDS.items():
        if isinstance(value, model):
            return key
    return "action" if isinstance(value, BaseModel) else None


Step = Annotated[
    Annotated[ActionStep, Tag("action")]
    | Annotated[CheckStep, Tag("check")]
    | Annotated[BatchStep, Tag("batch")]
    | Annotated[AskStep, Tag("ask")]
    | Annotated[ApproveStep, Tag("approve")]
    | Annotated[VerdictStep, Tag("verdict")],
    Discriminator(
        _step_kind,
        custom_error_type="script_step",
        custom_error_message=(
            "a step is an action ({type: ..., ...}), a {check: {command: ...}}, a "
            "{batch: [actions]}, an {ask: question}, an {approve: why, actions: [actions]} "
            "or a {verdict: {command: ...}}"
        ),
    ),
]
"""One step of a script: an action, a check, a batch of actions, a question, actions
awaiting approval or a reviewer's verdict."""


class ScriptReview(_Model):
    """A reviewer for a subtask (``orchestrator.domain.Review``), with its own script."""

    role: Annotated[str, Field(min_length=1, max_length=200)]
    """The reviewer's expertise."""
    rounds: Annotated[int, Field(ge=1, le=5)] = 2
    """Most review rounds."""
    instructions: Annotated[str, Field(max_length=20_000)] | None = None
    """What to check."""
    script: Script | None = None
    """The reviewer's script (it ends with a ``verdict`` step); without one, its brain
    decides (a model reviewer reports ``PASS`` or ``FAIL: feedback``)."""


class ScriptSubtask(_Model):
    """A subtask of a delegating script, with the specialist's own script."""

    id: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")]
    """Unique within the script; referenced by ``depends_on`` and ``{{ results.<id> }}``."""
    role: Annotated[str, Field(min_length=1, max_length=200)]
    """The expertise it needs."""
    description: Annotated[str, Field(min_length=1, max_length=20_000)]
    """What the specialist must do."""
    depends_on: list[str] = Field(default_factory=list)
    """Subtasks that must succeed first."""
    script: Script | None = None
    """The specialist's script; without one, the specialist's own brain decides."""
    outputs: Annotated[list[str], Field(max_length=20)] = Field(default_factory=list)
    """Files the specialist produces: kept with its task, copied to a reviewer's desktop."""
    review: ScriptReview | None = None
    """A reviewer who checks the result before it counts."""


class Script(_Model):
    """An agent's explicit plan (see the module docstring for the format)."""

    triage: Literal["do", "delegate"] | None = None
    """``do`` or ``delegate``; default: ``delegate`` when there are subtasks, else ``do``."""
    steps: list[Step] = Field(default_factory=list)
    """For ``do``: the steps on my desktop, in order."""
    result: _Template | None = None
    """The report when done (a template); default: the last command's output for ``do``,
    the subtasks' results for ``delegate``."""
    subtasks: Annotated[list[ScriptSubtask], Field(max_length=32)] = Field(default_factory=list)
    """For ``delegate``: the subtasks, run in parallel unless one depends on another."""
    check: list[Step] = Field(default_factory=list)
    """For ``delegate``: steps on my own desktop once all subtasks' results are in."""
    follow_up: list[Step] = Field(default_factory=list)
    """For ``do``: the steps of a review round's follow-up (default: ``steps`` again)."""

    @property
    def decision(self) -> Literal["do", "delegate"]:
        """The triage this script makes."""
        if self.triage is not None:
            return self.triage
        return "delegate" if self.subtasks else "do"

    @model_validator(mode="after")
    def _consistent(self) -> Script:
        if self.decision == "delegate":
            if not self.subtasks:
                raise ValueError("triage is `delegate` but there are no `subtasks`")
            if self.steps:
                raise ValueError(
                    "`steps` are for triage `do`; a delegating agent's own steps go in `check`"
                )
        else:
            if self.subtasks:
                raise ValueError("`subtasks` need triage `delegate`")
            if self.check:
                raise ValueError("`check` is for triage `delegate`; put checks in `steps`")
        if self.decision == "delegate" and self.follow_up:
            raise ValueError("`follow_up` steps are for triage `do`")
        for name, steps in (("steps", self.steps), ("follow_up", self.follow_up)):
            verdicts = [i for i, step in enumerate(steps) if isinstance(step, VerdictStep)]
            if verdicts and verdicts != [len(steps) - 1]:
                raise ValueError(f"a `verdict` step must be the last of `{name}` (and the only)")
            if verdicts and self.result is not None:
                raise ValueError("a script with a `verdict` step reports the verdict: no `result`")
        if any(isinstance(step, VerdictStep) for step in self.check):
            raise ValueError("a `verdict` step belongs in `steps`, not `check`")
        ids = [st.id for st in self.subtasks]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"subtask ids must be unique; repeated: {repeated}")
        deps = {st.id: st.depends_on for st in self.subtasks}
        for sid, needs in deps.items():
            unknown = [d for d in needs if d not in deps]
            if unknown:
                raise ValueError(f"subtask {sid} depends on unknown subtasks {unknown}")
        done: set[str] = set()
        while len(done) < len(deps):
            ready = {i for i, d in deps.items() if i not in done and set(d) <= done}
            if not ready:
                raise ValueError(
                    f"subtask dependencies form a cycle among {sorted(set(deps) - done)}"
                )
            done |= ready
        return self


ScriptReview.model_rebuild()
ScriptSubtask.model_rebuild()
