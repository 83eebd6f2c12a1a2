"""Claude's Messages API replies to decisions: the computer, bash and text-editor tools.

Pure (no ``anthropic`` import, no I/O): ``parse(reply, mapper)`` is what ``parse_reply``
calls; ``read`` gives the brain more (each ``tool_use`` block's id and the actions it
became). A reply, as the server sent it (a ``message`` object):

- ``tool_use`` blocks of the ``computer`` tool become our actions, coordinates mapped from
  the model's space to screen pixels with ``mapper.point`` (``orchestrator.protocols.
  from_anthropic`` reads the action); ``zoom``'s region becomes a ``Zoom`` of that screen
  rectangle, returned as an image of the model's image size (magnified);
- ``bash`` becomes a ``Shell`` action (``restart`` is answered without acting: every
  command runs in a fresh shell here);
- the text editor (``str_replace_based_edit_tool`` or ``str_replace_editor``) becomes a
  ``Shell`` action doing the edit on the desktop (``_anthropic_tools.editor_command``);
- our ``ask_user`` tool, called alone, is an ``Ask`` of the person (the answer is its
  tool result in the next request); called along with other tools it is ignored, and
  answered so;
- text blocks are the thought when there are tool calls, and the report (``Done``) of a
  reply that calls no tool;
- ``stop_reason: refusal`` is ``Fail`` with the reason (the brain raises ``BrainError``);
- an unknown tool or action, bad input, or a point outside the space is ``Retry`` saying
  what was wrong (every block's problem, by tool_use id).

Example:
    >>> from orchestrator.coords import Mapper
    >>> reply = {"type": "message", "stop_reason": "tool_use", "content": [
    ...     {"type": "text", "text": "Open it."},
    ...     {"type": "tool_use", "id": "t1", "name": "computer",
    ...      "input": {"action": "left_click", "coordinate": [683, 384]}}]}
    >>> decision = parse(reply, Mapper(model_size=(1366, 768), screen_size=(1920, 1080)))
    >>> decision.actions, decision.thought
    ([Click(type='click', x=960, y=540, button='left', keys=[])], 'Open it.')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from .. import actions as a
from ..coords import Mapper, OutOfSpaceError
from ..domain import Act, Ask, Decision, Done, Fail, Retry
from ..protocols import from_anthropic
from ._anthropic_tools import (
    ASK_USER,
    BASH,
    COMPUTER,
    EDITOR_NAMES,
    EditorError,
    editor_command,
)
from ._parse_text import MAX_REFUSAL_CHARS, batch_problem, cut

__all__ = ["Parsed", "ToolUse", "parse", "read"]

_MAX_THOUGHT = 20_000
RESTART_NOTE = "the shell was restarted (every command runs in a fresh shell here)"
_NEEDS_POINT = frozenset(
    {"left_click", "right_click", "middle_click", "double_click", "triple_click", "scroll"}
)

Kind = Literal["computer", "bash", "editor", "ask", "unknown"]
ASK_ALONE = "ignored: call ask_user alone, not along with other tools"
"""The answer to an ``ask_user`` call sent along with other tool calls."""


@dataclass(frozen=True)
class ToolUse:
    """One ``tool_use`` block of a reply and what became of it."""

    id: str
    """The block's id (the ``tool_use_id`` its result answers)."""
    name: str
    """The tool it calls."""
    kind: Kind
    """Which of our tools that is."""
    action: int | None = None
    """Index of the action it became in the decision's actions; None when it became none."""
    error: str | None = None
    """Why it cannot be carried out (the reply is then a ``Retry``)."""
    note: str | None = None
    """The answer to a call that needs no action (a bash restart)."""
    question: str | None = None
    """An ``ask_user`` call's question (its answer is the person's)."""


@dataclass(frozen=True)
class Parsed:
    """A reply read: the decision, its tool calls, and its text."""

    decision: Decision
    uses: list[ToolUse] = field(default_factory=list)
    text: str = ""
    """The text blocks, joined."""


def parse(reply: Any, mapper: Mapper) -> Decision:
    """The decision of a Messages API reply (a dict as sent), in screen pixels."""
    return read(reply, mapper).decision


def read(reply: Any, mapper: Mapper, *, cursor: tuple[int, int] | None = None) -> Parsed:
    """The decision of ``reply`` and each tool call's fate; ``cursor`` (screen pixels) is
    where actions that omit ``coordinate`` act (unknown: they are refused)."""
    if not isinstance(reply, Mapping) or not isinstance(reply.get("content"), list):
        return Parsed(Retry(error="the reply is not a Messages API message (no content list)"))
    blocks = [b for b in reply["content"] if isinstance(b, Mapping)]
    said = "\n".join(
        str(b.get("text") or "") for b in blocks if b.get("type") == "text" and b.get("text")
    ).strip()
    thought = said[:_MAX_THOUGHT] or None
    stop = reply.get("stop_reason")
    if stop == "refusal":
        said = cut(said, MAX_REFUSAL_CHARS)
        return Parsed(Fail(reason=f"the model refused: {said or 'no reason given'}"), text=said)
    uses: list[ToolUse] = []
    acts: list[a.Action] = []
    for i, block in enumerate(b for b in blocks if b.get("type") == "tool_use"):
        use = _convert(block, i, mapper, cursor, len(acts))
        if isinstance(use, tuple):
            use, action = use
            acts.append(action)
        uses.append(use)
    errors = [f"{u.name} call {u.id}: {u.error}" for u in uses if u.error]
    if (too_much := batch_problem(acts)) is not None:
        errors.append(too_much)
    if errors:
        return Parsed(Retry(error="; ".join(errors)[:20_000], thought=thought), uses, said)
    asks = [u for u in uses if u.question is not None]
    if asks and len(asks) == len(uses) == 1:
        return Parsed(Ask(question=asks[0].question or "", thought=thought), uses, said)
    if asks:
        uses = [
            dataclasses.replace(u, question=None, note=ASK_ALONE) if u.question else u for u in uses
        ]
    if uses:
        return Parsed(Act(actions=acts, thought=thought), uses, said)
    if stop == "max_tokens":
        problem = "the reply was cut off at the token limit before it called a tool"
        return Parsed(Retry(error=problem, thought=thought), uses, said)
    if said:
        return Parsed(Done(result=cut(said)), uses, said)
    return Parsed(
        Retry(error="the reply had neither a tool call nor text: act with a tool, or report"),
        uses,
        said,
    )


def _convert(
    block: Mapping[str, Any],
    i: int,
    mapper: Mapper,
    cursor: tuple[int, int] | None,
    index: int,
) -> ToolUse | tuple[ToolUse, a.Action]:
    use_id = str(block.get("id") or f"toolu_missing_{i}")
    name = str(block.get("name") or "")
    data = block.get("input")
    kind: Kind = (
        "computer"
        if name == COMPUTER
        else "bash"
        if name == BASH
        else "editor"
        if name in EDITOR_NAMES
        else "ask"
        if name == ASK_USER
        else "unknown"
    )
    try:
        if not isinstance(data, Mapping):
            raise ValueError("the input must be a JSON object")
        match kind:
            case "computer":
                action = _computer(data, mapper, cursor)
            case "bash":
                if data.get("restart") is True:
                    return ToolUse(use_id, name, kind, note=RESTART_NOTE)
                command = data.get("command")
                if not isinstance(command, str) or not command.strip():
                    raise ValueError("'command' must be a non-empty string")
                action = a.Shell(command=command)
            case "editor":
                action = editor_command(dict(data), name=name)
            case "ask":
                question = data.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise ValueError("'question' must be a non-empty string")
                return ToolUse(use_id, name, kind, question=question[:20_000])
            case _:
                raise ValueError(
                    f"there is no tool {name!r}; the tools are {COMPUTER}, {BASH}, "
                    f"the text editor and {ASK_USER}"
                )
    except ValidationError as e:
        problems = "; ".join(str(x["msg"]) for x in e.errors(include_url=False))
        return ToolUse(use_id, name, kind, error=f"invalid input: {problems}")
    except (ValueError, EditorError) as e:
        return ToolUse(use_id, name, kind, error=str(e))
    return ToolUse(use_id, name, kind, action=index), action


def _point(value: Any, mapper: Mapper, key: str) -> tuple[int, int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{key!r} must be [x, y], two integers, not {value!r}")
    return mapper.point(value[0], value[1])


def _computer(data: Mapping[str, Any], mapper: Mapper, cursor: tuple[int, int] | None) -> a.Action:
    """One computer action in screen pixels; ``ValueError`` (for the model) when it is bad."""
    kind = data.get("action")
    if kind == "zoom":
        return _zoom(data, mapper)
    mapped = dict(data)
    try:
        for key in ("coordinate", "start_coordinate"):
            if data.get(key) is not None:
                mapped[key] = list(_point(data[key], mapper, key))
    except OutOfSpaceError as e:
        raise ValueError(f"{key!r} {e}") from None
    if kind in _NEEDS_POINT and data.get("coordinate") is None and cursor is None:
        raise ValueError(f"{kind} needs a 'coordinate': where the pointer is is not known yet")
    if kind == "left_click_drag" and data.get("start_coordinate") is None and cursor is None:
        raise ValueError("left_click_drag needs a 'start_coordinate'")
    return from_anthropic(mapped, cursor=cursor)


def _zoom(data: Mapping[str, Any], mapper: Mapper) -> a.Zoom:
    """``zoom`` of region ``[x0, y0, x1, y1]`` (model space) as the screen rectangle under it,
    returned at the model's image size, the region's aspect ratio kept."""
    region = data.get("region")
    if (
        not isinstance(region, list | tuple)
        or len(region) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in region)
    ):
        raise ValueError(f"'region' must be [x0, y0, x1, y1], four integers, not {region!r}")
    x0, y0, x1, y1 = region
    (mw, mh), (sw, sh) = mapper.model_size, mapper.screen_size
    if not (0 <= x0 < x1 <= mw and 0 <= y0 < y1 <= mh):
        raise ValueError(
            f"'region' {list(region)} is not a rectangle within the {mw}x{mh} screenshot: "
            f"need 0 <= x0 < x1 <= {mw} and 0 <= y0 < y1 <= {mh}"
        )
    left, top = math.floor(x0 * sw / mw), math.floor(y0 * sh / mh)
    right = max(left + 1, min(sw, math.ceil(x1 * sw / mw)))
    bottom = max(top + 1, min(sh, math.ceil(y1 * sh / mh)))
    rw, rh = right - left, bottom - top
    scale = min(mw / rw, mh / rh)
    width, height = max(1, round(rw * scale)), max(1, round(rh * scale))
    return a.Zoom(x0=left, y0=top, x1=right, y1=bottom, width=width, height=height)
