"""Qwen2.5-VL / Qwen3-VL replies (``<tool_call>{"name": "computer_use", ...}</tool_call>``
inside the text) as a decision in screen pixels.

Written for this project after reading the ``computer_use`` function where its authors define
it: QwenLM/Qwen2.5-VL and QwenLM/Qwen3-VL ``cookbooks/utils/agent_function_call.py`` (the
``ComputerUse`` tool: its actions, arguments and what each one does with pyautogui; and
``MobileUse``), the computer-use and mobile-agent cookbooks that call them, and the replies
recorded in them (``tests/fixtures/replay/qwen-vl-*``).

The reply:

- Tool calls: ``<tool_call>{"name": "computer_use", "arguments": {"action": ...}}</tool_call>``,
  several in order; a missing ``</tool_call>`` is tolerated, and so is a bare JSON object
  (``{"name": ..., "arguments": ...}`` or just the arguments, ``{"action": ...}``) without tags.
  ``arguments`` may itself be a JSON string.
- The thought: the text outside the calls (``<think>`` tags dropped).
- Actions: ``key(keys)`` (one chord), ``type(text)`` (a literal ``\\n`` with no real newline
  presses Return, as the reference does), ``mouse_move``, ``left_click``, ``right_click``,
  ``middle_click``, ``double_click``, ``triple_click`` (``coordinate``; without it: the last
  point of the reply or the known cursor), ``left_click_drag(coordinate)`` (from the last
  point, else from wherever the pointer is), ``scroll``/``hscroll(pixels, coordinate?)``,
  ``wait(time)``, ``terminate(status)`` -> ``Done``/``Fail``, ``answer(text)`` -> ``Done``.
- Scrolling: ``pixels`` > 0 scrolls up (``hscroll``: right), as in the reference, which
  hands the number to ``pyautogui.scroll`` (wheel notches on X11); models write both small
  counts (``-5``) and pixel distances (``-500``), so ``notches`` takes up to
  ``SCROLL_DIRECT_NOTCHES`` as notches and a larger number as pixels at
  ``SCROLL_PX_PER_NOTCH`` (never fewer than ``SCROLL_DIRECT_NOTCHES`` then).
- ``mobile_use`` calls (Qwen's mobile-agent cookbooks) are acted out where a desktop has the
  same thing (see ``_apply_mobile``).
- Coordinates ``[x, y]`` are in the mapper's model space: pixels of the resized image for
  Qwen2.5-VL, 0..1000 for Qwen3-VL (the caller passes ``model_size=(1000, 1000)``).

Example:
    >>> from orchestrator.coords import Mapper
    >>> text = ('I will open it.\\n<tool_call>\\n{"name": "computer_use", "arguments": '
    ...         '{"action": "left_click", "coordinate": [500, 500]}}\\n</tool_call>')
    >>> d = parse(text, Mapper((1000, 1000), (1920, 1080)))
    >>> d.thought, d.actions[0]
    ('I will open it.', Click(type='click', x=960, y=540, button='left', keys=[]))
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from ..coords import Mapper
from ..domain import Decision, Done, Fail
from ._parse import reply_text
from ._parse_text import (
    ActionSequence,
    ReplyError,
    cap,
    decide,
    done,
    fail,
    finite,
    retry,
    too_long,
    validation_message,
)

__all__ = [
    "ACTIONS",
    "SCROLL_DIRECT_NOTCHES",
    "SCROLL_PX_PER_NOTCH",
    "WAIT_S",
    "notches",
    "parse",
    "tool_calls",
]

ACTIONS = (
    "key",
    "type",
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "scroll",
    "hscroll",
    "wait",
    "terminate",
    "answer",
)
"""The ``computer_use`` actions this parser takes."""

SCROLL_DIRECT_NOTCHES = 10
"""A scroll of at most this many (in magnitude) is that many wheel notches."""
SCROLL_PX_PER_NOTCH = 100
"""A larger one is pixels: one notch per 100 px (as ``protocols.OPENAI_SCROLL_PX_PER_NOTCH``)."""
WAIT_S = 2.0
"""A ``wait`` without ``time``."""

_FUNCTIONS = ("computer_use", "computer", "mobile_use")
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_THINK = re.compile(r"</?think>")
_CALLS = re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_MAX_SCAN = 100
"""A reply without tags: at most this many ``{`` that start no JSON are tried."""
_FORMAT = (
    'call the computer_use function as <tool_call>{"name": "computer_use", "arguments": '
    '{"action": "left_click", "coordinate": [x, y]}}</tool_call>'
)
_CLICKS = {
    "left_click": ("click", "left"),
    "right_click": ("click", "right"),
    "middle_click": ("click", "middle"),
    "double_click": ("double_click", "left"),
    "triple_click": ("triple_click", "left"),
}


def parse(reply: Any, mapper: Mapper, *, cursor: tuple[int, int] | None = None) -> Decision:
    """The decision in a Qwen-VL reply (a text, or a chat-completion dict), in screen pixels.

    ``cursor``: the pointer's screen position before the reply, when known (a click or a
    scroll without ``coordinate`` acts there). Never raises for a bad reply: it is a ``Retry``
    saying what was wrong.
    """
    text = reply_text(reply)
    if text is None or not text.strip():
        return retry(f"the reply has no text: {_FORMAT}")
    if (long := too_long(text)) is not None:
        return long
    try:
        calls, thought = tool_calls(text)
    except ReplyError as e:
        return retry(str(e), cap(_THINK.sub("", _CALLS.sub("", text))))
    if not calls:
        return retry(f"the reply calls no function: {_FORMAT}", thought)
    try:
        seq = ActionSequence(mapper, cursor)
        end: Done | Fail | None = None
        end_action = ""
        for call in calls:
            name, args = _arguments(call)
            action = args.get("action")
            if end is not None:
                raise ReplyError(f"{end_action} must be the last and only action of its reply")
            try:
                end = (_apply_mobile if name == "mobile_use" else _apply)(seq, args, thought)
            except ReplyError as e:
                raise ReplyError(f"in `{_short(args)}`: {e}") from None
            end_action = f"the {action!r} action" if end is not None else end_action
        return decide(seq.finish(), end, thought, end_action)
    except ReplyError as e:
        return retry(str(e), thought)
    except ValidationError as e:
        return retry(f"an action's arguments are not valid ({validation_message(e)})", thought)


def tool_calls(text: str) -> tuple[list[Any], str | None]:
    """The JSON of each tool call in ``text``, in order, and the text outside them (the
    thought). ``ReplyError`` when a ``<tool_call>`` holds no JSON object."""
    if _OPEN in text:
        calls: list[Any] = []
        outside = [text[: text.index(_OPEN)]]
        for part in text.split(_OPEN)[1:]:
            body, closed, rest = part.partition(_CLOSE)
            calls.append(_json(body))
            if closed:
                outside.append(rest)
        return calls, cap(_THINK.sub("", "\n".join(outside)))
    # No tags: every top-level JSON object that looks like a call.
    found: list[Any] = []
    outside, pos, decoder = [], 0, json.JSONDecoder()
    i, misses = text.find("{"), 0
    while i != -1 and misses < _MAX_SCAN:
        try:
            obj, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            misses += 1
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict) and ("name" in obj or "action" in obj):
            found.append(obj)
            outside.append(text[pos:i])
            pos = end
        i = text.find("{", end)
    outside.append(text[pos:])
    thought = re.sub(r"```(?:json)?\s*```", "", "".join(outside))
    return found, cap(_THINK.sub("", thought))


def _json(body: str) -> Any:
    cleaned = _FENCE.sub("", body.strip())
    try:
        return json.loads(cleaned)
    except (ValueError, RecursionError):
        pass
    start = cleaned.find("{")
    if start != -1:
        try:
            return json.JSONDecoder().raw_decode(cleaned, start)[0]
        except (ValueError, RecursionError):
            pass
    raise ReplyError(f"the tool call `{_short(body)}` is not a JSON object: {_FORMAT}")


def _arguments(call: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(call, dict):
        raise ReplyError(f"the tool call `{_short(call)}` is not a JSON object: {_FORMAT}")
    if "name" not in call and "action" in call:
        return "computer_use", call
    name = call.get("name")
    if name not in _FUNCTIONS:
        raise ReplyError(f"unknown function {name!r}: {_FORMAT}")
    args = call.get("arguments", call.get("parameters"))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            raise ReplyError(f"the arguments {_short(args)} are not a JSON object") from None
    if not isinstance(args, dict) or "action" not in args:
        raise ReplyError(f"{name} needs arguments with an action: {_FORMAT}")
    return name, args


def notches(pixels: float) -> int:
    """Wheel notches for a ``scroll``/``hscroll`` amount (sign kept; see the module
    docstring).

    Example:
        >>> notches(-5), notches(3), notches(-500), notches(2500), notches(0)
        (-5, 3, -10, 25, 0)
    """
    if not finite(pixels):
        raise ReplyError("the scroll amount must be a number of notches or pixels")
    size = abs(pixels)
    if size == 0:
        return 0
    n = (
        size
        if size <= SCROLL_DIRECT_NOTCHES
        else max(SCROLL_DIRECT_NOTCHES, size / SCROLL_PX_PER_NOTCH)
    )
    count = min(100, max(1, round(n)))
    return count if pixels > 0 else -count


def _coordinate(
    args: dict[str, Any], seq: ActionSequence, required: bool, key: str = "coordinate"
) -> tuple[int, int] | None:
    value = args.get(key)
    if value is None:
        if required:
            raise ReplyError(f"{args['action']!r} needs {key}: [x, y]")
        return None
    if isinstance(value, str):
        try:
            value = [float(v) if "." in v else int(v) for v in _NUMBER.findall(value)]
        except ValueError:  # over Python's 4,300-digit limit
            raise ReplyError(f"{key} must be [x, y], two numbers of the screen") from None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ReplyError(f"{key} must be [x, y], not {_short(value)}")
    return seq.at(value[0], value[1])


def _number(args: dict[str, Any], key: str, default: float | None = None) -> float:
    value = args.get(key, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not finite(value):
        raise ReplyError(f"{_short(args['action'])} needs {key} as a number, not {_short(value)}")
    return value  # type: ignore[return-value]


def _apply(seq: ActionSequence, args: dict[str, Any], thought: str | None) -> Done | Fail | None:
    action = args.get("action")
    match action:
        case "key":
            keys = args.get("keys", args.get("key"))
            if isinstance(keys, str):
                keys = [keys]
            if not isinstance(keys, list) or not keys:
                raise ReplyError(f"'key' needs keys as a list of key names, not {keys!r}")
            seq.press(keys)
        case "type":
            text = args.get("text")
            if not isinstance(text, str):
                raise ReplyError(f"'type' needs text as a string, not {text!r}")
            if "\\n" in text and "\n" not in text:
                text = text.replace("\\r\\n", "\n").replace("\\n", "\n")
            if "\\t" in text and "\t" not in text:
                text = text.replace("\\t", "\t")
            seq.type(text)
        case "mouse_move":
            seq.move(_coordinate(args, seq, True))  # type: ignore[arg-type]
        case "left_click" | "right_click" | "middle_click" | "double_click" | "triple_click":
            kind, button = _CLICKS[action]
            seq.click(kind, _coordinate(args, seq, False), button, what=action)  # type: ignore[arg-type]
        case "left_click_drag":
            start = _coordinate(args, seq, False, "start_coordinate")
            seq.drag(start, _coordinate(args, seq, True))  # type: ignore[arg-type]
        case "scroll" | "hscroll":
            n = notches(_number(args, "pixels"))
            point = _coordinate(args, seq, False)
            if action == "hscroll":
                seq.scroll(point, n, 0)
            else:
                seq.scroll(point, 0, -n)
        case "wait":
            seq.wait(_number(args, "time", args.get("duration", WAIT_S)))
        case "terminate":
            status = str(args.get("status", "")).strip().lower()
            if status == "success":
                return done(str(args.get("answer") or args.get("text") or ""))
            if status == "failure":
                return fail(cap(thought) or "the model ended the task as a failure")
            raise ReplyError(f"'terminate' needs status 'success' or 'failure', not {status!r}")
        case "answer":
            text = args.get("text")
            if not isinstance(text, str):
                raise ReplyError(f"'answer' needs text as a string, not {_short(text)}")
            return done(text)
        case _:
            raise ReplyError(f"unknown action {action!r}; valid actions: {', '.join(ACTIONS)}")
    return None


_MOBILE = (
    "click, long_press, swipe, type, key, system_button (Enter, Back), wait, terminate, answer"
)
_MOBILE_BUTTONS = {"enter": "Return", "back": "XF86Back"}


def _apply_mobile(
    seq: ActionSequence, args: dict[str, Any], thought: str | None
) -> Done | Fail | None:
    """The mobile agents' ``mobile_use`` function (Qwen's mobile-agent cookbooks), acted out
    on the desktop: ``click`` is a left click, ``long_press`` holds the left button for
    ``time`` seconds, ``swipe`` drags from ``coordinate`` to ``coordinate2``, ``key`` presses
    ``text``, ``system_button`` Enter/Back press Return/XF86Back; ``open`` and the Home/Menu
    buttons have no desktop equivalent (a ``Retry``)."""
    action = args.get("action")
    match action:
        case "click":
            return _apply(seq, {**args, "action": "left_click"}, thought)
        case "long_press":
            point = _coordinate(args, seq, True)
            seconds = _number(args, "time", 1.0)
            seq.mouse(False, point)
            seq.wait(seconds)
            seq.mouse(True, point)
        case "swipe":
            start = _coordinate(args, seq, True)
            seq.drag(start, _coordinate(args, seq, True, "coordinate2"))  # type: ignore[arg-type]
        case "key":
            key = args.get("text", args.get("key"))
            if not isinstance(key, str):
                raise ReplyError(f"'key' needs text as a key name, not {key!r}")
            seq.press([key])
        case "system_button":
            button = str(args.get("button", "")).strip().lower()
            if button not in _MOBILE_BUTTONS:
                raise ReplyError(f"this desktop has no {button!r} button; it has Enter and Back")
            seq.press([_MOBILE_BUTTONS[button]])
        case "type" | "wait" | "terminate" | "answer":
            return _apply(seq, args, thought)
        case _:
            raise ReplyError(
                f"mobile_use action {action!r} cannot be done on this desktop; valid: {_MOBILE}"
            )
    return None


def _short(value: Any) -> str:
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):  # a 5,000-digit number, deep nesting
        text = "(not shown)"
    text = " ".join(text[:2000].split())
    return text if len(text) <= 200 else text[:199] + "…"
