"""UI-TARS's text replies (``Thought: ...`` then ``Action: click(start_box='(x,y)')``) as a
decision in screen pixels.

Written for this project after reading the format where its authors define it:
bytedance/UI-TARS ``codes/ui_tars/action_parser.py`` (``parse_action_to_structure_output``,
``parsing_response_to_pyautogui_code``) and its prompts (``COMPUTER_USE``), and
bytedance/UI-TARS-desktop ``packages/ui-tars/action-parser/src/actionParser.ts``.

The reply:

- The thought: the text before the ``Action:`` line (``Action：`` too), its ``Thought:`` label
  dropped (``Reflection:`` / ``Action_Summary:`` texts are kept as written), and the
  ``<think...>``/``<computer_env>`` tags of Doubao's "omni" replies too; an omni reply with
  no action but an ``<answer>...</answer>`` is ``Done`` with that answer (as
  UI-TARS-desktop's ``OmniFormatParser`` reads it: ``finished(content=...)``).
- The actions after it, one call each, separated by blank lines (the reference splits on
  ``)\\n\\n``): ``click``/``left_single``, ``left_double``, ``right_single``, ``hover``,
  ``drag``/``select`` (``start_box``, ``end_box``), ``hotkey(key='ctrl c')`` (keys split on
  spaces), ``press``/``keydown``/``keyup``(``key``), ``type(content='...')`` (``\\n`` in it
  presses Return, as the reference's trailing ``\\n`` does), ``scroll(start_box, direction)``
  (``SCROLL_NOTCHES`` notches; no point: the last point, else the middle of the screen),
  ``wait()`` (``WAIT_S``), ``finished(content=...)`` -> ``Done``, ``call_user()`` -> ``Ask``.
- Points (``start_box``, ``end_box``, ``point``, ``start_point``, ``end_point``):
  ``'(x,y)'``, ``'<|box_start|>(x,y)<|box_end|>'``, ``'<point>x y</point>'``,
  ``'<bbox>x1 y1 x2 y2</bbox>'``, ``'[x1,y1,x2,y2]'`` or ``'(x1,y1)(x2,y2)'`` (a box: its centre),
  in the mapper's model space: pixels of the resized image for UI-TARS-1.5, 0..1000 for
  UI-TARS-1.0 and Doubao (the caller passes ``model_size=(1000, 1000)``).
- Quoted values take Python's escapes (``\\'``, ``\\"``, ``\\n``, ``\\t``, ``\\\\``); a quote the
  model forgot to escape is taken as text unless a ``,`` and the next argument, or the closing
  ``)`` at the end of a line, follows it.

Example:
    >>> from orchestrator.coords import Mapper
    >>> d = parse("Thought: open it\\nAction: left_double(start_box='(644,406)')",
    ...           Mapper((1288, 812), (1280, 800)))
    >>> d.thought, d.actions[0]
    ('open it', DoubleClick(type='double_click', x=640, y=400, button='left', keys=[]))
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from .. import actions as a
from ..coords import Mapper
from ..domain import Ask, Decision, Done
from ._parse import reply_text
from ._parse_text import (
    ActionSequence,
    ReplyError,
    cap,
    decide,
    done,
    retry,
    too_long,
    validation_message,
)

__all__ = ["ACTIONS", "SCROLL_NOTCHES", "WAIT_S", "parse", "parse_calls"]

SCROLL_NOTCHES = 5
"""Wheel notches of one ``scroll``: the reference turns it into ``pyautogui.scroll(±5)``."""
WAIT_S = 5.0
"""A ``wait()``: the prompt tells the model it sleeps 5 s."""

ACTIONS = (
    "click",
    "left_single",
    "left_double",
    "right_single",
    "hover",
    "drag",
    "select",
    "hotkey",
    "press",
    "keydown",
    "keyup",
    "type",
    "scroll",
    "wait",
    "finished",
    "call_user",
)
"""The action names this parser takes."""

_MARKER_LINE = re.compile(r"(?m)^[ \t]*Action[:：][ \t]*")
_MARKER = re.compile(r"Action[:：][ \t]*")
_THOUGHT_LABEL = re.compile(r"^\s*Thought[:：]\s*")
_WRAPPERS = re.compile(r"</?(?:think\w*|thought|computer_env|output)>", re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")
_KEY = re.compile(r"([A-Za-z_]\w*)\s*=\s*")
_CLOSES = re.compile(r"\s*,\s*[A-Za-z_]\w*\s*=|\s*\)[ \t]*(?:\r?\n|$)|\s*$")
_CLOSES_LOOSELY = re.compile(r"\s*[,)]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_START = ("start_box", "point", "start_point")
_END = ("end_box", "end_point")
_DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
_ASK = "The agent needs a person's help to go on."
_FORMAT = "Answer with `Thought: ...` and then `Action: ...`, e.g. Action: click(start_box='(x,y)')"

Call = tuple[str, dict[str, str], str]


def parse(reply: Any, mapper: Mapper, *, cursor: tuple[int, int] | None = None) -> Decision:
    """The decision in a UI-TARS reply (a text, or a chat-completion dict), in screen pixels.

    ``cursor``: the pointer's screen position before the reply, when known (a ``scroll``
    without a point turns the wheel there). Never raises for a bad reply: it is a ``Retry``
    saying what was wrong.
    """
    text = reply_text(reply)
    if text is None or not text.strip():
        return retry(f"the reply has no text. {_FORMAT}")
    if (long := too_long(text)) is not None:
        return long
    thought, body = _split(text)
    if body is None:
        answer = _ANSWER.search(text)
        if answer is not None:  # Doubao's omni reply that answers without acting
            rest = _WRAPPERS.sub("", text[: answer.start()] + text[answer.end() :])
            return done(answer.group(1).strip(), rest)
        return retry(f"the reply has no `Action:` line. {_FORMAT}", thought)
    try:
        calls = parse_calls(body)
        if not calls:
            raise ReplyError(f"no action after `Action:`. {_FORMAT}")
        seq = ActionSequence(mapper, cursor)
        end: Done | Ask | None = None
        end_name = ""
        for name, kwargs, raw in calls:
            if end is not None:
                raise ReplyError(f"{end_name}() must be the last and only action of its reply")
            try:
                end = _apply(seq, name, kwargs, thought)
            except ReplyError as e:
                raise ReplyError(f"in `{_short(raw)}`: {e}") from None
            end_name = name if end is not None else end_name
        return decide(seq.finish(), end, thought, f"{end_name}()")
    except ReplyError as e:
        return retry(str(e), thought)
    except ValidationError as e:
        return retry(f"an action's arguments are not valid ({validation_message(e)})", thought)


def _split(text: str) -> tuple[str | None, str | None]:
    """``(thought, text of the actions)``; the actions are None without an ``Action:`` line,
    unless the whole reply is calls."""
    m = _MARKER_LINE.search(text)
    if m is None:
        found = list(_MARKER.finditer(text))
        m = found[-1] if found else None
    if m is None:
        stripped = text.strip()
        return (None, stripped) if _CALL.match(stripped) else (cap(text), None)
    before = _THOUGHT_LABEL.sub("", _WRAPPERS.sub("", text[: m.start()]), count=1)
    return cap(before), text[m.end() :]


def parse_calls(body: str) -> list[Call]:
    """The calls in the text after ``Action:``, as ``(name, {argument: value}, call text)``; text
    after the last call is ignored. ``ReplyError`` when the first one cannot be read."""
    calls: list[Call] = []
    pos, n = 0, len(body)
    while True:
        while pos < n and body[pos].isspace():
            pos += 1
        label = _MARKER.match(body, pos)  # "Action:" again before a further call
        if label is not None and calls:
            pos = label.end()
        m = _CALL.match(body, pos)
        if m is None:
            if calls:
                return calls
            snippet = body[pos : pos + 80].strip()
            if not snippet:
                return calls
            raise ReplyError(
                f"cannot read the action {snippet!r}: write one call such as "
                f"click(start_box='(x,y)'); valid actions: {', '.join(ACTIONS)}"
            )
        start, name, pos = pos, m.group(1), m.end()
        kwargs, pos = _arguments(body, pos, name)
        calls.append((name, kwargs, body[start:pos]))


def _arguments(body: str, pos: int, name: str) -> tuple[dict[str, str], int]:
    kwargs: dict[str, str] = {}
    n = len(body)
    while True:
        while pos < n and body[pos].isspace():
            pos += 1
        if pos >= n:  # the closing parenthesis is missing: the reference adds it
            return kwargs, pos
        if body[pos] == ")":
            return kwargs, pos + 1
        m = _KEY.match(body, pos)
        if m is None:
            raise ReplyError(
                f"cannot read the arguments of {name}(...) at {body[pos : pos + 60]!r}: "
                "write keyword arguments such as start_box='(x,y)'"
            )
        key, pos = m.group(1), m.end()
        value, pos = _value(body, pos, name)
        kwargs[key] = value
        while pos < n and body[pos].isspace():
            pos += 1
        if pos < n and body[pos] == ",":
            pos += 1


def _short(raw: str) -> str:
    raw = " ".join(raw.split())
    return raw if len(raw) <= 200 else raw[:199] + "…"


def _quoted(body: str, pos: int, closes: re.Pattern[str]) -> tuple[str, int] | None:
    quote, i, out, n = body[pos], pos + 1, [], len(body)
    while i < n:
        c = body[i]
        if c == "\\" and i + 1 < n:
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if c == quote and closes.match(body, i + 1):
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return None


def _value(body: str, pos: int, name: str) -> tuple[str, int]:
    n = len(body)
    if pos < n and body[pos] in "'\"":
        # A quote closes the value where the next argument or the line's closing parenthesis
        # follows it; failing that (text after the call on its line), before any , or ).
        found = _quoted(body, pos, _CLOSES) or _quoted(body, pos, _CLOSES_LOOSELY)
        if found is None:
            raise ReplyError(f"a quoted argument of {name}(...) is not closed")
        return found
    # An unquoted value: a number, or a bracketed point such as (12,34).
    depth, i = 0, pos
    while i < n:
        c = body[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            break
        i += 1
    return body[pos:i].strip(), i


def _point(value: str, key: str, seq: ActionSequence) -> tuple[int, int]:
    cleaned = re.sub(r"<\|box_(?:start|end)\|>|</?(?:point|bbox)>", " ", value)
    problem = f"{key}={_short(value)!r} is not a point: write '(x,y)' or '<point>x y</point>'"
    try:
        nums = [float(v) if "." in v else int(v) for v in _NUMBER.findall(cleaned)]
        if len(nums) == 4:
            x: float = (nums[0] + nums[2]) / 2
            y: float = (nums[1] + nums[3]) / 2
        elif len(nums) == 2:
            x, y = nums
        else:
            raise ReplyError(problem)
    except (ValueError, OverflowError):  # over 4,300 digits; a box too large for a float
        raise ReplyError(problem) from None
    return seq.at(x, y)


def _find(kwargs: dict[str, str], keys: tuple[str, ...]) -> tuple[str, str] | None:
    for k in keys:
        if kwargs.get(k, "").strip():
            return k, kwargs[k]
    return None


def _start(
    kwargs: dict[str, str], seq: ActionSequence, name: str, required: bool = True
) -> tuple[int, int] | None:
    found = _find(kwargs, _START)
    if found is None:
        if required:
            raise ReplyError(f"{name}() needs start_box='(x,y)'")
        return None
    return _point(found[1], found[0], seq)


def _keys(kwargs: dict[str, str], name: str) -> list[str]:
    raw = kwargs.get("key") or kwargs.get(name) or kwargs.get("hotkey") or ""
    keys = raw.split()
    if not keys and raw:  # key=' ': the space bar
        keys = ["space"]
    if not keys:
        raise ReplyError(f"{name}() needs key='...', e.g. {name}(key='ctrl c')")
    return keys


def _apply(
    seq: ActionSequence, name: str, kwargs: dict[str, str], thought: str | None
) -> Done | Ask | None:
    match name:
        case "click" | "left_single":
            seq.click("click", _start(kwargs, seq, name))
        case "left_double":
            seq.click("double_click", _start(kwargs, seq, name))
        case "right_single":
            seq.click("click", _start(kwargs, seq, name), "right")
        case "hover":
            seq.move(_start(kwargs, seq, name))  # type: ignore[arg-type]
        case "drag" | "select":
            start = _start(kwargs, seq, name)
            found = _find(kwargs, _END)
            if found is None:
                raise ReplyError(f"{name}() needs start_box='(x1,y1)' and end_box='(x2,y2)'")
            seq.drag(start, _point(found[1], found[0], seq))
        case "hotkey" | "press":
            seq.press(_keys(kwargs, name))
        case "keydown":
            for key in _keys(kwargs, name):
                seq.key_down(key)
        case "keyup" | "release":
            for key in _keys(kwargs, name):
                seq.key_up(key)
        case "type":
            seq.type(kwargs.get("content", ""))
        case "scroll":
            direction = kwargs.get("direction", "").strip().lower()
            if direction not in _DIRECTIONS:
                raise ReplyError(
                    f"scroll(direction={direction!r}): the direction must be up, down, "
                    "left or right"
                )
            dx, dy = _DIRECTIONS[direction]
            point = _start(kwargs, seq, name, required=False)
            seq.scroll(point, dx * SCROLL_NOTCHES, dy * SCROLL_NOTCHES)
        case "wait":
            seq.add(a.Wait(duration_s=WAIT_S))
        case "finished":
            return done(kwargs.get("content", "").strip())
        case "call_user":
            return Ask(question=cap(thought) or _ASK)
        case _:
            raise ReplyError(f"unknown action {name!r}; valid actions: {', '.join(ACTIONS)}")
    return None
