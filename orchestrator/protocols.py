"""Converters from the computer-use wire formats of OpenAI and Anthropic to our actions.

Coordinates pass through unchanged: they are in the space the model was shown (pair the
action with the screenshot's ``Scaling`` when acting). Key names pass through too and are
resolved when the action is performed, so an unknown key becomes a failed result the model
can read rather than an exception here. Malformed input raises ``ValueError`` (pydantic's
``ValidationError`` is one).

Example:
    >>> from orchestrator.protocols import from_anthropic, from_openai
    >>> from_openai({"type": "click", "button": "wheel", "x": 5, "y": 6})
    Click(type='click', x=5, y=6, button='middle', keys=[])
    >>> from_anthropic({"action": "scroll", "coordinate": [5, 6], "scroll_direction": "up",
    ...                 "scroll_amount": 3})
    Scroll(type='scroll', x=5, y=6, scroll_x=0, scroll_y=-3, keys=[])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from . import actions as a

__all__ = [
    "OPENAI_SCROLL_PX_PER_NOTCH",
    "from_anthropic",
    "from_openai",
    "openai_call_actions",
]

OPENAI_SCROLL_PX_PER_NOTCH = 100
"""OpenAI scrolls by pixels, X by wheel notches: one notch per 100 px (a browser's usual
wheel step), rounded, at least one notch when the distance is not zero, at most 100."""

_OPENAI_BUTTONS: dict[str, a.Button] = {
    "left": "left",
    "right": "right",
    "wheel": "middle",
    "middle": "middle",
    "back": "back",
    "forward": "forward",
}


def _as_dict(data: Any, what: str) -> Mapping[str, Any]:
    if hasattr(data, "model_dump"):  # an openai/anthropic SDK model
        data = data.model_dump(exclude_none=True)
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a JSON object, not {type(data).__name__}")
    return data


def _int(data: Mapping[str, Any], key: str, what: str, default: int | None = None) -> int:
    value = data.get(key)
    if value is None:
        if default is not None:
            return default
        raise ValueError(f"{what}: {key!r} is required")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, float) or not math.isfinite(value) or not value.is_integer():
        raise ValueError(f"{what}: {key!r} must be an integer, not {_short(value)}")
    return int(value)


def _short(value: Any) -> str:
    """``repr(value)``, short (a model's 5,000-digit number is not echoed)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 160:
        return "a number that large"
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _keys(data: Mapping[str, Any], key: str, what: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{what}: {key!r} must be a list of key names, not {_short(value)}")
    return list(value)


def _notches(pixels: int) -> int:
    if pixels == 0:
        return 0
    if abs(pixels) > 100 * OPENAI_SCROLL_PX_PER_NOTCH:  # also keeps 10**400 from a float
        return 100 * (1 if pixels > 0 else -1)
    n = max(1, round(abs(pixels) / OPENAI_SCROLL_PX_PER_NOTCH))
    return min(n, 100) * (1 if pixels > 0 else -1)


# ---------------------------------------------------------------------- OpenAI


def from_openai(action: Mapping[str, Any] | Any) -> a.Action:
    """One action of an OpenAI Responses ``computer_call`` (a dict or an SDK model).

    ``click.button`` ``wheel`` is the middle button; ``scroll`` distances are pixels, turned
    into wheel notches (``OPENAI_SCROLL_PX_PER_NOTCH``); ``wait`` waits one second; extra
    fields are ignored.
    """
    data = _as_dict(action, "an OpenAI computer action")
    kind = data.get("type")
    what = f"OpenAI action {kind!r}"
    match kind:
        case "click":
            button = data.get("button", "left")
            if button not in _OPENAI_BUTTONS:
                raise ValueError(
                    f"{what}: unknown button {button!r}; expected one of left, right, "
                    "wheel, back, forward"
                )
            return a.Click(
                x=_int(data, "x", what),
                y=_int(data, "y", what),
                button=_OPENAI_BUTTONS[button],
                keys=_keys(data, "keys", what),
            )
        case "double_click":
            return a.DoubleClick(
                x=_int(data, "x", what), y=_int(data, "y", what), keys=_keys(data, "keys", what)
            )
        case "drag":
            path = data.get("path")
            if not isinstance(path, list) or len(path) < 2:
                raise ValueError(f"{what}: 'path' must be a list of at least two {{x, y}} points")
            points = [
                a.Point(x=_int(p, "x", f"{what} path[{i}]"), y=_int(p, "y", f"{what} path[{i}]"))
                for i, p in enumerate(_as_dict(p, f"{what} path point") for p in path)
            ]
            return a.Drag(path=points, keys=_keys(data, "keys", what))
        case "keypress":
            keys = _keys(data, "keys", what)
            if not keys:
                raise ValueError(f"{what}: 'keys' must name at least one key")
            return a.KeyPress(keys=keys)
        case "move":
            return a.Move(
                x=_int(data, "x", what), y=_int(data, "y", what), keys=_keys(data, "keys", what)
            )
        case "screenshot":
            return a.TakeScreenshot()
        case "scroll":
            return a.Scroll(
                x=_int(data, "x", what),
                y=_int(data, "y", what),
                scroll_x=_notches(_int(data, "scroll_x", what, default=0)),
                scroll_y=_notches(_int(data, "scroll_y", what, default=0)),
                keys=_keys(data, "keys", what),
            )
        case "type":
            text = data.get("text")
            if not isinstance(text, str):
                raise ValueError(f"{what}: 'text' must be a string")
            return a.TypeText(text=text)
        case "wait":
            return a.Wait()
        case _:
            raise ValueError(
                f"unknown OpenAI computer action type {kind!r}; expected click, double_click, "
                "drag, keypress, move, screenshot, scroll, type or wait"
            )


def openai_call_actions(call: Mapping[str, Any] | Any) -> list[a.Action]:
    """The actions of a whole ``computer_call`` item: its ``action``, or its ``actions[]``
    (newer models batch several)."""
    data = _as_dict(call, "an OpenAI computer_call")
    batch = data.get("actions")
    if batch:
        if not isinstance(batch, list):
            raise ValueError("computer_call 'actions' must be a list")
        return [from_openai(item) for item in batch]
    if data.get("action") is not None:
        return [from_openai(data["action"])]
    raise ValueError("computer_call has neither 'action' nor 'actions'")


# ---------------------------------------------------------------------- Anthropic

_CLICKS: dict[str, tuple[type[a.Click | a.DoubleClick | a.TripleClick], a.Button]] = {
    "left_click": (a.Click, "left"),
    "right_click": (a.Click, "right"),
    "middle_click": (a.Click, "middle"),
    "double_click": (a.DoubleClick, "left"),
    "triple_click": (a.TripleClick, "left"),
}
_SCROLL = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


def _coordinate(data: Mapping[str, Any], key: str, what: str) -> tuple[int, int] | None:
    value = data.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{what}: {key!r} must be [x, y], two integers, not {_short(value)}")
    return (value[0], value[1])


def _required(data: Mapping[str, Any], key: str, what: str) -> tuple[int, int]:
    point = _coordinate(data, key, what)
    if point is None:
        raise ValueError(f"{what}: {key!r} is required")
    return point


def _at(
    data: Mapping[str, Any], what: str, cursor: tuple[int, int] | None, key: str = "coordinate"
) -> tuple[int, int]:
    point = _coordinate(data, key, what)
    if point is not None:
        return point
    if cursor is None:
        raise ValueError(
            f"{what} without {key!r} acts at the current pointer position: pass cursor= "
            "(the last ActionResult.cursor) to convert it"
        )
    return cursor


def _text(data: Mapping[str, Any], what: str) -> str:
    text = data.get("text")
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what}: 'text' must be a non-empty string")
    return text


def _modifiers(data: Mapping[str, Any]) -> list[str]:
    """The modifier of a click or scroll: in ``text`` (the API) or ``key`` (the demo)."""
    value = data.get("text") or data.get("key")
    return value.split() if isinstance(value, str) else []


def _duration(data: Mapping[str, Any], what: str) -> float:
    value = data.get("duration")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{what}: 'duration' must be a non-negative number of seconds")
    try:
        seconds = float(value)
    except OverflowError:  # 10**400
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"{what}: 'duration' must be a finite number of seconds")
    return seconds


def from_anthropic(
    input: Mapping[str, Any], *, cursor: a.Point | tuple[int, int] | None = None
) -> a.Action:
    """One ``computer_20250124`` (or ``computer_20241022``) tool input.

    Actions that the API lets omit ``coordinate`` (clicks, scroll, ``left_click_drag``
    without ``start_coordinate``) act at the current pointer position: ours need a position,
    so pass ``cursor`` (the previous ``ActionResult.cursor``) or get a ``ValueError``.
    ``left_mouse_down``/``left_mouse_up`` act where the pointer is, as the API says.
    ``key`` takes one key or ``+``-combo (xdotool's space-separated sequences are refused).
    """
    data = _as_dict(input, "an Anthropic computer tool input")
    pos = (cursor.x, cursor.y) if isinstance(cursor, a.Point) else cursor
    kind = data.get("action")
    what = f"Anthropic action {kind!r}"
    match kind:
        case "key":
            keys = _text(data, what).split()
            if len(keys) != 1:
                raise ValueError(
                    f"{what}: one key or combo per action (got {len(keys)}: {keys!r}); "
                    "send a sequence as separate key actions"
                )
            return a.KeyPress(keys=keys)
        case "type":
            text = data.get("text")
            if not isinstance(text, str):
                raise ValueError(f"{what}: 'text' must be a string")
            return a.TypeText(text=text)
        case "mouse_move":
            x, y = _required(data, "coordinate", what)
            return a.Move(x=x, y=y, keys=[])
        case "left_click" | "right_click" | "middle_click" | "double_click" | "triple_click":
            cls, button = _CLICKS[kind]
            x, y = _at(data, what, pos)
            return cls(x=x, y=y, button=button, keys=_modifiers(data))
        case "left_click_drag":
            end = _required(data, "coordinate", what)
            start = _at(data, what, pos, key="start_coordinate")
            path = [a.Point(x=start[0], y=start[1]), a.Point(x=end[0], y=end[1])]
            return a.Drag(path=path, keys=[])
        case "left_mouse_down":
            return a.MouseDown(button="left")
        case "left_mouse_up":
            return a.MouseUp(button="left")
        case "scroll":
            direction = data.get("scroll_direction")
            if direction not in _SCROLL:
                raise ValueError(f"{what}: 'scroll_direction' must be up, down, left or right")
            amount = data.get("scroll_amount")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise ValueError(f"{what}: 'scroll_amount' must be a non-negative integer")
            x, y = _at(data, what, pos)
            dx, dy = _SCROLL[direction]
            return a.Scroll(
                x=x, y=y, scroll_x=dx * amount, scroll_y=dy * amount, keys=_modifiers(data)
            )
        case "hold_key":
            key = "+".join(_text(data, what).split())  # xdotool keydown takes "ctrl shift"
            return a.HoldKey(key=key, duration_s=_duration(data, what))
        case "wait":
            return a.Wait(duration_s=_duration(data, what))
        case "screenshot":
            return a.TakeScreenshot()
        case "cursor_position":
            return a.CursorPosition()
        case _:
            raise ValueError(
                f"unknown Anthropic computer action {kind!r}; expected key, type, mouse_move, "
                "left_click, right_click, middle_click, double_click, triple_click, "
                "left_click_drag, left_mouse_down, left_mouse_up, scroll, hold_key, wait, "
                "screenshot or cursor_position"
            )
