"""The domain model of the agent hierarchy: agents, tasks, brains' decisions and events.

Everything that crosses an actor boundary, is stored, or is shown to a user is one of these
pydantic models.
"""

from __future__ import annotations

import secrets
import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .actions import Action
from .brain_config import FAMILIES, BrainConfig, Family, PlannerConfig
from .desktop import DesktopSpec
from .policy import ApprovalPolicy
from .usage import Budget, Usage

__all__ = [
    "OPEN_TASK_STATES",
    "PERSON_WAIT_STATES",
    "Act",
    "AgentInfo",
    "AgentSpec",
    "AgentStatus",
    "AgentTree",
    "Ask",
    "AwaitApproval",
    "BrainConfig",
    "Budget",
    "Decision",
    "Delegate",
    "Done",
    "Event",
    "EventKind",
    "FAMILIES",
    "Fail",
    "Family",
    "FollowUp",
    "Plan",
    "PlannerConfig",
    "Retry",
    "Review",
    "Subtask",
    "TaskInfo",
    "TaskSpec",
    "TaskState",
    "TokenUsage",
    "Triage",
    "Usage",
    "Waiting",
    "new_id",
    "now",
]

Role = Annotated[str, Field(min_length=1, max_length=200)]
MAX_OUTPUTS = 20
OutputPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
"""A path on a desktop: absolute, or relative to the agent's home (``~/`` too)."""
Name = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")]


def new_id(prefix: str) -> str:
    """A short random id such as ``task-3f9a1c0b2e``."""
    return f"{prefix}-{secrets.token_hex(5)}"


def now() -> float:
    """Wall-clock time in seconds since the epoch (what records store)."""
    return time.time()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class AgentSpec(_Model):
    """What to hire: a role (its expertise), a brain and a desktop."""

    name: Name
    """Short name, unique among its siblings; part of the actor's path."""
    role: Role = "generalist"
    """The agent's expertise, in words (shown to its brain)."""
    brain: BrainConfig = Field(default_factory=BrainConfig)
    """Which brain drives the agent."""
    desktop: DesktopSpec = Field(default_factory=DesktopSpec)
    """Its desktop's size, limits and network."""
    policy: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    """Which actions need a person's approval, and what to do with pending safety checks
    (default: none need it; safety checks fail the step). Children it hires inherit it."""


class AgentStatus(StrEnum):
    STARTING = "starting"
    """Hired, queued for a desktop (or its desktop is starting)."""
    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"
    FAILED = "failed"


class AgentInfo(_Model):
    """An agent as stored and shown."""

    id: str
    """Unique id, ``agent-…``."""
    path: str
    """Its place in the tree, ``tenant/user/.../name``; also its Ray actor name."""
    tenant: str
    """The tenant that owns it."""
    parent_id: str | None
    """The agent that hired it; None for a top-level (user) agent."""
    actor: str | None = None
    """Its Ray actor's name: its path, or its pool name when it was hired warm."""
    actor_id: str | None = None
    """Its Ray actor's id (hex): tells its actor from a later agent's of the same name."""
    spec: AgentSpec
    """What it was hired as."""
    status: AgentStatus = AgentStatus.STARTING
    """What it is doing."""
    error: str | None = None
    """Why it failed, when it did."""
    created_at: float = Field(default_factory=now)
    """When it was hired."""
    usage: Usage | None = None
    """What its tasks spent (``GET /v1/agents/{id}``; computed from the records when read,
    never stored)."""
    subtree_usage: Usage | None = None
    """What its tasks and those of every agent below it spent (computed, never stored)."""


class TaskState(StrEnum):
    """Where a task stands. Open states (``OPEN_TASK_STATES``) may still change; the three
    ended ones never do.

    Example:
        >>> TaskState.INPUT_REQUIRED.open, TaskState.CANCELLED.done
        (True, True)
    """

    PENDING = "pending"
    """Accepted, not started yet."""
    RUNNING = "running"
    """The agent works on it."""
    WAITING = "waiting"
    """Waiting on subtasks."""
    INPUT_REQUIRED = "input_required"
    """Waiting for a person's answer to the agent's question."""
    APPROVAL_REQUIRED = "approval_required"
    """Waiting for a person to approve (or refuse) the agent's next actions."""
    PAUSED = "paused"
    """Paused by a person; it goes on when resumed."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        """True once the task has ended (succeeded, failed or cancelled): final."""
        return self in _ENDED

    @property
    def open(self) -> bool:
        """True while the task may still change state (the opposite of ``done``)."""
        return not self.done

    @property
    def waits_for_person(self) -> bool:
        """True in the states where a person must act (time there is not the agent's)."""
        return self in PERSON_WAIT_STATES


_ENDED = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
OPEN_TASK_STATES: tuple[TaskState, ...] = tuple(s for s in TaskState if s not in _ENDED)
"""Every state of a task that has not ended, in declaration order (for queries and checks)."""
PERSON_WAIT_STATES: tuple[TaskState, ...] = (
    TaskState.INPUT_REQUIRED,
    TaskState.APPROVAL_REQUIRED,
    TaskState.PAUSED,
)
"""The open states in which a task waits for a person: they have their own timeout and do
not count against the task's deadline or step budget."""


class FollowUp(_Model):
    """What makes a task a review round's follow-up: the same specialist, on the same desktop,
    goes on from the task it did (its step history) with the reviewer's feedback."""

    task_id: str
    """The task this one follows (its history starts this one's)."""
    round: Annotated[int, Field(ge=2, le=5)]
    """The review round this follow-up is for (the first round is the original task)."""
    feedback: Annotated[str, Field(max_length=20_000)]
    """What the reviewer found wrong."""


class TaskSpec(_Model):
    """A task given to an agent."""

    description: Annotated[str, Field(min_length=1, max_length=20_000)]
    """What to do, in words."""
    step_budget: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Most observe-decide-act steps the agent may take on its own desktop."""
    deadline_s: Annotated[float, Field(gt=0, le=86_400)] = 1800.0
    """Seconds until the task fails as overdue."""
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 2
    """How often a failed subtask is tried before the parent gives up on it."""
    inputs: dict[str, str] = Field(default_factory=dict)
    """Results of the subtasks this one depends on, by subtask id."""
    script: dict[str, Any] | None = None
    """For scripted brains: the plan to follow for this task (see ``orchestrator.brains``)."""
    outputs: Annotated[list[OutputPath], Field(max_length=MAX_OUTPUTS)] = Field(
        default_factory=list
    )
    """Files or directories on the agent's desktop to keep when the task ends (succeeded or
    failed): each is stored with the records and is part of the task's artifacts."""
    budget: Budget | None = None
    """Limits for this task's whole subtree (it and its subtasks, recursively): exceeded,
    the task and every open subtask are cancelled with the reason (``orchestrator.usage``)."""
    follow_up: FollowUp | None = None
    """Set on a review round's follow-up task (see ``Review``)."""


class Waiting(_Model):
    """What a task waiting for a person (``input_required``, ``approval_required``) needs."""

    question: str | None = None
    """The agent's question (``input_required``)."""
    actions: list[Action] = Field(default_factory=list)
    """The actions awaiting approval (``approval_required``), and ``reason`` why."""
    reason: str | None = None
    screenshot: str | None = None
    """The blob address of the screen it decided on (``GET /v1/tasks/{id}/waiting/screenshot``)."""


class TaskInfo(_Model):
    """A task as stored and shown."""

    id: str
    agent_id: str
    parent_task_id: str | None = None
    spec: TaskSpec
    state: TaskState = TaskState.PENDING
    result: str | None = None
    """What the agent reports when it succeeds."""
    error: str | None = None
    """Why it failed or was cancelled."""
    subtask_ids: list[str] = Field(default_factory=list)
    waiting: Waiting | None = None
    """While the task waits for a person's answer or approval: what it waits on."""
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    usage: Usage | None = None
    """What the task itself spent: its model calls, steps and running time (computed from
    its events when read through the runtime, ``GET /v1/tasks/{id}``; never stored)."""
    subtree_usage: Usage | None = None
    """What it and all its subtasks, recursively, spent (computed like ``usage``)."""


class AgentTree(_Model):
    """An agent, what it is working on, and its children, recursively."""

    agent: AgentInfo
    tasks: list[TaskInfo] = Field(default_factory=list)
    """Its unfinished tasks."""
    children: list[AgentTree] = Field(default_factory=list)


class Triage(_Model):
    """A brain's first decision on a task: do it alone, or delegate it."""

    decision: Literal["do", "delegate"]
    """``do``: act on my own desktop; ``delegate``: split into subtasks for specialists."""
    reason: Annotated[str, Field(max_length=4000)] = ""
    """Why, in a sentence."""


class Review(_Model):
    """A reviewer for a subtask: once the specialist succeeds, a reviewer (an idle child with
    ``role``, or a new hire, on its own desktop, with copies of the subtask's ``outputs``)
    passes the result or gives feedback; feedback goes back to the same specialist as a
    follow-up (``FollowUp``), for up to ``rounds`` rounds (see ``actors._review``)."""

    role: Role
    """The reviewer's expertise."""
    rounds: Annotated[int, Field(ge=1, le=5)] = 2
    """Most review rounds; still failing after the last, the attempt at the subtask fails."""
    instructions: Annotated[str, Field(max_length=20_000)] | None = None
    """What to check."""
    script: dict[str, Any] | None = None
    """For scripted brains: the reviewer's own plan (it ends with a ``verdict`` step)."""


class Subtask(_Model):
    """One part of a plan, naming the expertise it needs."""

    id: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")]
    """Unique within the plan; referenced by ``depends_on``."""
    description: Annotated[str, Field(min_length=1, max_length=20_000)]
    """What the specialist must do."""
    role: Role
    """The expertise it needs (a specialist with this role is reused or hired)."""
    depends_on: list[str] = Field(default_factory=list)
    """Subtasks that must succeed first (their results are passed along)."""
    script: dict[str, Any] | None = None
    """For scripted brains: the specialist's own plan."""
    outputs: Annotated[list[OutputPath], Field(max_length=MAX_OUTPUTS)] = Field(
        default_factory=list
    )
    """Files the specialist produces: kept with its task, and copied to a reviewer's desktop."""
    review: Review | None = None
    """A reviewer who checks the result before it counts (none: it counts at once)."""


class Plan(_Model):
    """How a task is split: subtasks run in parallel unless one depends on another."""

    subtasks: Annotated[list[Subtask], Field(min_length=1, max_length=32)]
    """The subtasks."""
    check: Annotated[str, Field(max_length=20_000)] | None = None
    """What to verify on the delegating agent's own desktop once all results are in."""


_Thought = Annotated[str, Field(max_length=20_000)] | None

MAX_ACTIONS = 100
"""The most actions one decision carries out (``Act``, ``AwaitApproval``)."""
MAX_RESULT_CHARS = 20_000
"""The longest ``Done.result`` and ``Fail.reason`` (parsers cut a model's text to it)."""


class Act(_Model):
    """Carry out these actions now, in order, then decide again on a fresh screenshot."""

    kind: Literal["act"] = "act"
    actions: Annotated[list[Action], Field(max_length=MAX_ACTIONS)] = Field(default_factory=list)
    """The actions (none: just look again)."""
    thought: _Thought = None
    """The brain's reasoning, recorded on the timeline."""


class Done(_Model):
    """The task is finished, successfully."""

    kind: Literal["done"] = "done"
    result: Annotated[str, Field(max_length=MAX_RESULT_CHARS)] = ""
    """The report."""
    thought: _Thought = None
    """The brain's reasoning, recorded on the timeline."""


class Fail(_Model):
    """The brain gives up: the task fails with the reason."""

    kind: Literal["fail"] = "fail"
    reason: Annotated[str, Field(max_length=MAX_RESULT_CHARS)] = "the agent gave up"
    """Why, shown to users and parents."""
    thought: _Thought = None
    """The brain's reasoning, recorded on the timeline."""


class Ask(_Model):
    """Ask a person: the task waits (``input_required``) for an answer, then goes on."""

    kind: Literal["ask"] = "ask"
    question: Annotated[str, Field(min_length=1, max_length=20_000)]
    """The question, shown to the person."""
    thought: _Thought = None
    """The brain's reasoning, recorded on the timeline."""


class AwaitApproval(_Model):
    """Ask a person to approve ``actions`` first: the task waits (``approval_required``);
    approved, they are carried out; refused, the brain decides again knowing it."""

    kind: Literal["await_approval"] = "await_approval"
    actions: Annotated[list[Action], Field(min_length=1, max_length=MAX_ACTIONS)]
    """The actions awaiting approval."""
    reason: Annotated[str, Field(max_length=20_000)] = ""
    """Why they need a person's approval."""
    thought: _Thought = None
    """The brain's reasoning, recorded on the timeline."""


class Delegate(_Model):
    """Split the task into subtasks for specialists (children)."""

    kind: Literal["delegate"] = "delegate"
    plan: Plan
    """The subtasks and the final check."""
    thought: _Thought = None
    """The brain's reasoning, recorded on the timeline."""


class Retry(_Model):
    """The model's reply could not be used; ``error`` says why. A brain sends it back to the
    model and asks again (up to ``BrainConfig.max_retries``): brains consume these, and one
    that reaches the runner fails the task with the error."""

    kind: Literal["retry"] = "retry"
    error: Annotated[str, Field(min_length=1, max_length=20_000)]
    """What was wrong with the reply, in words the model can act on."""
    thought: _Thought = None
    """The reasoning the reply carried, if any."""


Decision = Annotated[
    Act | Done | Fail | Ask | AwaitApproval | Delegate | Retry, Field(discriminator="kind")
]
"""A brain's decision in the loop: one of ``Act``, ``Done``, ``Fail``, ``Ask``,
``AwaitApproval``, ``Delegate`` or ``Retry``, told apart by ``kind``.

Example:
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(Decision).validate_python({"kind": "fail", "reason": "no network"})
    Fail(kind='fail', reason='no network', thought=None)
"""


class TokenUsage(_Model):
    """Tokens a model call used."""

    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    cached_input_tokens: int = 0
    """The part of ``input_tokens`` read from the provider's prompt cache, when the brain
    reports it (priced at ``Price.cached_input``)."""


class EventKind(StrEnum):
    AGENT = "agent"
    """An agent was hired, changed status, or was fired."""
    TASK = "task"
    """A task changed state."""
    STEP = "step"
    """One action on a desktop: the action, its result, a screenshot reference."""
    MESSAGE = "message"
    """A message between a parent and a child."""
    MODEL = "model"
    """A model call: what was decided and the tokens it used."""
    LOG = "log"
    """Anything else worth showing on the timeline."""
    FILE = "file"
    """A file a task produced (one of its ``outputs``), stored as a blob: ``data`` has its
    ``path`` on the desktop and ``size``."""


class Event(_Model):
    """One entry on the timeline; stored before the thing it records counts as done."""

    id: str = Field(default_factory=lambda: new_id("event"))
    """Unique id: storing the same event twice (a retried call) keeps one copy."""
    seq: int | None = None
    """Position in the store (assigned on write)."""
    kind: EventKind
    agent_id: str | None = None
    task_id: str | None = None
    at: float = Field(default_factory=now)
    data: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific payload (JSON-serialisable)."""
    blobs: list[str] = Field(default_factory=list)
    """Content addresses (sha256 hex) of screenshots or files this event refers to."""
