"""Approval policies: which of an agent's actions a person must approve before they run, and
what to do with a model provider's pending safety checks.

An ``ApprovalPolicy`` is part of an ``AgentSpec`` (``spec.policy``). The runner applies it to
every decision of the agent's brain before acting (``apply_policy``): an ``Act`` with an
action a rule names becomes an ``AwaitApproval`` of the *whole* step, so nothing of the step
runs before a person has seen all of it (the screen it was decided on is shown with it).
Approved, the step runs as decided (no second approval); refused, its first action fails
with the person's reason and the brain decides again knowing it.

Rules (``approve``):

- ``"shell"``: any shell command; ``"shell_as_root"``: a shell command run as root;
- ``"type"``: typing text; ``"keypress"``: pressing keys (a chord such as ctrl+s);
- ``{"text_pattern": "<regex>"}``: typing text that matches the regular expression
  (``re.search``, e.g. ``"(?i)password"``), or a shell command that does, or the text a
  command writes (``Shell.writes``: the text editor's content). Consecutive typing actions
  are also matched as one text (a long text is typed in chunks).

A tenant's pattern runs on the host, so its cost is bounded: a repeat inside a repeat, an
alternation inside a repeat and backreferences are refused, and so is a pattern whose
repeats could try more than a few thousand ways at each position (one ``*`` is fine, two are
not: write ``\\s{1,8}``). Text is searched in windows of 4096 characters overlapping by 512
(a match longer than 512 characters across a window's edge may be missed; ``^`` and ``$``
also match at a window's edges), and a text over 100,000 characters is held for approval
unchecked.

There is no rule for "typing into a password field": the desktop cannot tell honestly
which kind of widget has the keyboard focus. X11 only knows the focused *window* (its title
and class, which say "Login" as readily for a search box as for a password), and only an
accessibility bus (AT-SPI) knows the widget's role; the desktop image runs none. A
``text_pattern`` on what is typed is the honest approximation.

Safety checks (``safety_checks``; OpenAI's computer tool sends ``pending_safety_checks``):

- ``"fail"`` (default): the step fails with the checks' codes and messages;
- ``"ask"``: the step waits for a person (``approval_required``, the checks as the reason);
  approved, the checks are acknowledged to the model with the action's outcome;
- ``"acknowledge"``: acknowledged without asking (recorded on the timeline). An operator
  opt-in: refused (``ConfigError``, HTTP 422 at hire) unless
  ``ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS`` is true.

Example:
    >>> from orchestrator.actions import Shell
    >>> from orchestrator.domain import Act
    >>> policy = ApprovalPolicy(approve=["shell_as_root"])
    >>> apply_policy(Act(actions=[Shell(command="id")]), policy).kind
    'act'
    >>> held = apply_policy(Act(actions=[Shell(command="rm -rf /srv", user="root")]), policy)
    >>> held.kind, held.reason
    ('await_approval', "shell as root needs a person's approval: rm -rf /srv")
"""

from __future__ import annotations

import re
import re._constants as _sre  # type: ignore[import-not-found]  # to bound a pattern's cost
import re._parser as _sre_parse  # type: ignore[import-not-found]
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .actions import Action, KeyPress, Shell, TypeText
from .errors import ConfigError

if TYPE_CHECKING:  # domain imports this module (AgentSpec.policy): no import cycle at run time
    from .domain import Decision

__all__ = [
    "ApprovalPolicy",
    "Rule",
    "RuleName",
    "SafetyChecks",
    "TextPattern",
    "apply_policy",
    "check_policy",
    "matching_rule",
]

SafetyChecks = Literal["fail", "ask", "acknowledge"]
"""What to do with a model provider's pending safety checks (see the module docstring)."""

RuleName = Literal["shell", "shell_as_root", "type", "keypress"]
"""An action kind that needs a person's approval."""

_SHOWN_CHARS = 200
"""How much of a command or of typed text the reason quotes."""

_WINDOW = 4096
"""Text is searched in windows of this many characters..."""
_OVERLAP = 512
"""...overlapping by this many (a match up to this long across an edge is found)."""
_MAX_TEXT = 100_000
"""A longer text is not searched: it is held for approval (a person reads it)."""
_MAX_WAYS = 4 * (_WINDOW + 1)
"""The most ways a pattern's repeats may try at one position (an unbounded repeat counts
as a window's length): one ``*``, not two."""
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT)


def _ways(items: Any, in_repeat: bool) -> int:
    """How many ways the parsed pattern's repeats can try at one position (an upper bound of
    its backtracking); ``ValueError`` for what can backtrack exponentially."""
    ways = 1
    for op, av in items:
        if op in _REPEATS:
            _lo, hi, sub = av
            many = hi > 1
            if many and in_repeat:
                raise ValueError("a repeat inside a repeat can take exponential time")
            if many and _branches(sub):
                raise ValueError("an alternation inside a repeat can take exponential time")
            ways *= (min(hi, _WINDOW) + 1) * _ways(sub, in_repeat or many)
        elif op in (_sre.SUBPATTERN, _sre.ATOMIC_GROUP):
            ways *= _ways(av[-1], in_repeat)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            ways *= _ways(av[1], in_repeat)
        elif op == _sre.BRANCH:
            ways *= sum(_ways(branch, in_repeat) for branch in av[1])
        elif op in (_sre.GROUPREF, _sre.GROUPREF_EXISTS):
            raise ValueError("backreferences are not allowed")
        if ways > _MAX_WAYS:
            raise ValueError(
                "the pattern's repeats could try too many ways at each position: use at "
                "most one unbounded repeat (* or +) and bound the others (\\s{1,8})"
            )
    return ways


def _branches(items: Any) -> bool:
    """Whether the parsed pattern has an alternation anywhere in it."""
    for op, av in items:
        if op == _sre.BRANCH:
            return True
        if op in (_sre.SUBPATTERN, _sre.ATOMIC_GROUP, *_REPEATS) and _branches(av[-1]):
            return True
        if op in (_sre.ASSERT, _sre.ASSERT_NOT) and _branches(av[1]):
            return True
    return False


def _windows(text: str) -> list[str]:
    """``text`` in overlapping windows of ``_WINDOW`` characters (one if it is short)."""
    step = _WINDOW - _OVERLAP
    return [text[i : i + _WINDOW] for i in range(0, max(1, len(text) - _OVERLAP), step)]


class TextPattern(BaseModel):
    """Typed text, or a shell command, matching a regular expression needs approval.

    Example:
        >>> TextPattern(text_pattern="(?i)passw").matches("my Password")
        True
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    text_pattern: Annotated[str, Field(min_length=1, max_length=500)]
    """A Python regular expression, searched (``re.search``) in the text or the command; its
    cost is bounded (see the module docstring: no nested repeats, at most one ``*``)."""

    @field_validator("text_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
            _ways(_sre_parse.parse(value), in_repeat=False)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        except RecursionError:
            raise ValueError("the pattern is nested too deeply") from None
        return value

    def matches(self, text: str) -> bool:
        """Whether ``text`` matches the pattern (searched in overlapping windows); a text
        over 100,000 characters counts as matching: it is too long to check, a person
        reads it."""
        if len(text) > _MAX_TEXT:
            return True
        pattern = re.compile(self.text_pattern)
        return any(pattern.search(window) is not None for window in _windows(text))


Rule = RuleName | TextPattern
"""One rule of ``ApprovalPolicy.approve``: a ``RuleName`` or a ``TextPattern``."""


class ApprovalPolicy(BaseModel):
    """What an agent may do without a person, part of its ``AgentSpec``.

    Default: nothing needs approval, and pending safety checks fail the step.

    Example:
        >>> ApprovalPolicy.model_validate(
        ...     {"approve": ["shell_as_root", {"text_pattern": "(?i)password"}]}
        ... ).approve[1].text_pattern
        '(?i)password'
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    safety_checks: SafetyChecks = "fail"
    """Pending safety checks: ``fail`` the step, ``ask`` a person, or ``acknowledge`` them
    (an operator opt-in: ``ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS``)."""
    approve: Annotated[list[Rule], Field(max_length=32)] = Field(default_factory=list)
    """Actions that need a person's approval before they run (see the module docstring)."""


def matching_rule(action: Action, policy: ApprovalPolicy) -> str | None:
    """The first rule of ``policy`` that ``action`` falls under, in words; None if none.

    Example:
        >>> from orchestrator.actions import TypeText
        >>> matching_rule(TypeText(text="hunter2"), ApprovalPolicy(approve=["type"]))
        'typing'
    """
    for rule in policy.approve:
        match rule:
            case "shell" if isinstance(action, Shell):
                return "a shell command"
            case "shell_as_root" if isinstance(action, Shell) and action.user == "root":
                return "shell as root"
            case "type" if isinstance(action, TypeText):
                return "typing"
            case "keypress" if isinstance(action, KeyPress):
                return "a key press"
            case TextPattern() if isinstance(action, TypeText) and rule.matches(action.text):
                return f"typing text matching {rule.text_pattern!r}"
            case TextPattern() if isinstance(action, Shell) and rule.matches(action.command):
                return f"a command matching {rule.text_pattern!r}"
            case TextPattern() if (
                isinstance(action, Shell) and action.writes and rule.matches(action.writes)
            ):
                return f"a command writing text matching {rule.text_pattern!r}"
    return None


def _typed_runs(actions: list[Action]) -> list[str]:
    """The joined text of each run of two or more consecutive ``TypeText`` actions."""
    runs: list[list[str]] = [[]]
    for action in actions:
        if isinstance(action, TypeText):
            runs[-1].append(action.text)
        elif runs[-1]:
            runs.append([])
    return ["".join(run) for run in runs if len(run) > 1]


def _shown(action: Action) -> str:
    text = action.command if isinstance(action, Shell) else getattr(action, "text", None)
    if isinstance(action, Shell) and action.writes is not None:
        text = f"a command writing: {action.writes}"
    if isinstance(action, KeyPress):
        text = "+".join(action.keys)
    if text is None:
        return action.type
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def apply_policy(decision: Decision, policy: ApprovalPolicy) -> Decision:
    """``decision`` as the policy lets it run: an ``Act`` with an action a rule names becomes
    an ``AwaitApproval`` of all its actions (the reason names each rule and action that
    matched); every other decision is returned as it is (the same object).

    Pure: the runner calls it on every decision of the brain before acting.
    """
    from .domain import Act, AwaitApproval  # domain imports this module

    if not isinstance(decision, Act) or not policy.approve:
        return decision
    why = [
        f"{rule} needs a person's approval: {_shown(action)}"
        for action in decision.actions
        if (rule := matching_rule(action, policy)) is not None
    ]
    why += [
        f"typing text matching {rule.text_pattern!r} needs a person's approval: {_cut(text)}"
        for text in _typed_runs(list(decision.actions))
        for rule in policy.approve
        if isinstance(rule, TextPattern) and rule.matches(text)
    ]
    if not why:
        return decision
    return AwaitApproval(
        actions=list(decision.actions), reason="; ".join(why)[:20_000], thought=decision.thought
    )


def check_policy(policy: ApprovalPolicy, *, allow_acknowledge: bool) -> None:
    """``ConfigError`` when the policy asks for what the operator does not allow: safety
    checks acknowledged without a person, unless ``allow_acknowledge``
    (``ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS``).

    Example:
        >>> check_policy(ApprovalPolicy(safety_checks="acknowledge"), allow_acknowledge=False)
        Traceback (most recent call last):
        ...
        orchestrator.errors.ConfigError: policy.safety_checks 'acknowledge' ...
    """
    if policy.safety_checks == "acknowledge" and not allow_acknowledge:
        raise ConfigError(
            "policy.safety_checks 'acknowledge' is not allowed on this cluster: the operator "
            "must set ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS=true (or use 'ask' or 'fail')"
        )
