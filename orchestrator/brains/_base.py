"""The brain interface: what an agent's decision-maker sees, and what it decides.

A task's life, from the brain's side (the runner in ``actors._runner`` drives it):

1. ``triage(ctx, obs)``: do the task myself, or delegate it.
2. ``plan(ctx, obs)`` (delegate only): the subtasks, each naming the expertise it needs.
   Before each, the runner asks ``image_size(screen)`` and sends a screenshot of that size
   (``Observation.screen_size`` is the screen's); every action a brain returns is in screen
   pixels (the brain maps its model's coordinates, ``orchestrator.coords``).
3. ``step(ctx, obs)`` (do only), called in a loop, returns a ``Decision``: ``Act`` (the
   next actions), ``Done`` (the report), ``Fail`` (the reason), ``Ask`` (a question for a
   person), ``AwaitApproval`` (actions a person must approve first) or ``Delegate`` (a plan).
   The runner carries out the actions (or waits for the person), then appends a
   ``StepRecord`` of the decision, the actions' results and the person's answer to
   ``ctx.history`` before it calls ``step`` again with a fresh screenshot. Decisions that
   finish the task never enter the history.
4. ``check(ctx, obs, results)`` (delegate only, when the plan has a check or
   ``wants_check()``): once the subtasks' results are in, verify them on my own desktop.
   It works like ``step``: actions (then it is called again with the history), or finished.

A brain object serves one task: the runner makes one with ``make_brain``, uses it for that
task and then closes it, so a brain may keep per-task state such as the tool-call ids of
the decisions it made. It recognises its own decisions in ``ctx.history`` by identity (the
runner stores the very decision object it was given); a history it did not write
(say, after a restart) is still rendered for the model, with ids of its own making.

Token use of every model call is appended to ``Brain.usage`` and passed to ``on_usage``.

Example:
    >>> import asyncio
    >>> from orchestrator.brains import BrainContext, Observation, make_brain
    >>> from orchestrator.domain import BrainConfig
    >>> brain = make_brain(BrainConfig(kind="scripted", script={"steps": [{"type": "wait"}]}))
    >>> ctx = BrainContext(task_id="task-1", description="wait a bit", role="tester")
    >>> obs = Observation(screenshot=b"...", media_type="image/png", width=1024, height=768)
    >>> asyncio.run(brain.triage(ctx, obs)).decision
    'do'
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from ..actions import Action, ActionResult
from ..domain import Decision, FollowUp, Plan, TokenUsage, Triage

__all__ = ["Brain", "BrainContext", "Observation", "StepRecord", "UsageCallback"]

UsageCallback = Callable[[TokenUsage], None]
"""Called with the token use of every model call, as it happens."""


@dataclass(frozen=True)
class Observation:
    """What the agent sees before a decision: a screenshot of its desktop.

    Example:
        >>> Observation(screenshot=b"\\x89PNG...", media_type="image/png", width=800, height=600)
        Observation(media_type='image/png', width=800, height=600, 7 bytes)
    """

    screenshot: bytes
    """The encoded image."""
    media_type: str
    """``image/png`` or ``image/jpeg``."""
    width: int
    """Width of the image in pixels: the model's coordinate space."""
    height: int
    """Height of the image in pixels."""
    screen_width: int = 0
    """Width of the screen the image shows (0: the image's own width, not scaled)."""
    screen_height: int = 0
    """Height of the screen (0: the image's own height)."""

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image."""
        return (self.width, self.height)

    @property
    def screen_size(self) -> tuple[int, int]:
        """``(width, height)`` of the screen: actions a brain returns are in these pixels."""
        return (self.screen_width or self.width, self.screen_height or self.height)

    def data_url(self) -> str:
        """The image as a ``data:`` URL, the form the OpenAI APIs take images in."""
        return f"data:{self.media_type};base64,{base64.b64encode(self.screenshot).decode()}"

    def __repr__(self) -> str:
        return (
            f"Observation(media_type={self.media_type!r}, width={self.width}, "
            f"height={self.height}, {len(self.screenshot)} bytes)"
        )


@dataclass(frozen=True)
class StepRecord:
    """One step of the loop: a decision with actions, and what those actions did.

    Example:
        >>> from orchestrator.actions import ActionResult, Wait
        >>> from orchestrator.domain import Act
        >>> StepRecord(Act(actions=[Wait()]), [ActionResult(ok=True)]).complete
        True
    """

    decision: Decision
    """The decision as the brain returned it (the same object): an ``Act``, ``Ask`` or
    ``AwaitApproval``."""
    results: list[ActionResult]
    """One result per action carried out, in order. Shorter than ``actions`` when the runner
    stopped at a failed action (the rest were not carried out), or the person refused."""
    answer: str | None = None
    """A person's answer: to an ``Ask`` the text, to an ``AwaitApproval`` ``approved`` or
    ``refused``."""

    @property
    def actions(self) -> list[Action]:
        """The decision's actions (none for an ``Ask``)."""
        return list(getattr(self.decision, "actions", []))

    @property
    def complete(self) -> bool:
        """True when every action of the decision was carried out."""
        return len(self.results) >= len(self.actions)


@dataclass
class BrainContext:
    """What the brain knows about the task it decides on.

    Example:
        >>> BrainContext(task_id="task-1", description="install nginx", role="sysadmin").history
        []
    """

    task_id: str
    """The task's id."""
    description: str
    """What to do, in words."""
    role: str
    """The agent's expertise."""
    agent_path: str = ""
    """The agent's place in the tree (``tenant/user/.../name``)."""
    subtask_results: dict[str, str] = field(default_factory=dict)
    """Results of the subtasks this task builds on, by subtask id: the prerequisites of a
    specialist's task, or the delegating agent's own subtasks once they are done."""
    history: list[StepRecord] = field(default_factory=list)
    """The steps taken on this task so far, oldest first (a review round's follow-up starts
    with the steps of the task it follows)."""
    follow_up: FollowUp | None = None
    """On a review round's follow-up: the round and the reviewer's feedback."""


class Brain(ABC):
    """Decides what an agent does: triage, plan, and the actions of each step.

    Subclasses implement the four decisions; ``close`` releases what they hold (a model
    client's connections). Errors a model causes (no usable answer after retries, a
    refusal, an unreachable endpoint) are raised as ``BrainError``.
    """

    def __init__(self, *, on_usage: UsageCallback | None = None) -> None:
        self.usage: list[TokenUsage] = []
        """Token use of every model call this brain made, in order."""
        self._on_usage = on_usage
        self._notes: list[str] = []

    @abstractmethod
    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        """Decide whether to do the task myself or delegate it."""

    @abstractmethod
    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        """Split a delegated task into subtasks for specialists."""

    @abstractmethod
    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        """The next decision on my task: act, ask, await approval, delegate, or end it."""

    @abstractmethod
    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        """Verify the subtasks' ``results`` (by subtask id) on my own desktop: actions to
        take (then I am called again, with the history), or ``Done``/``Fail`` with the
        report (a ``Delegate`` here fails the task)."""

    def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
        """The ``(width, height)`` of the screenshots this brain's model is sent for a screen
        of ``screen`` pixels (its coordinate space's). The runner sends screenshots of this
        size and the brain returns actions in screen pixels. Default: the screen's size."""
        return screen

    def wants_check(self) -> bool:
        """True when ``check`` should run after the subtasks even if the plan has none."""
        return False

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections and other resources; the brain is not used afterwards."""

    def take_notes(self) -> list[str]:
        """What the brain did on its own since last asked, for the timeline (e.g. safety
        checks it acknowledged as its policy allows); the runner records each after a
        decision."""
        notes, self._notes = self._notes, []
        return notes

    def _note(self, text: str) -> None:
        self._notes.append(text)

    def _record_usage(self, usage: TokenUsage) -> None:
        self.usage.append(usage)
        if self._on_usage is not None:
            self._on_usage(usage)
