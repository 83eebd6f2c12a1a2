"""What the text-protocol parsers (``_parse_uitars``, ``_parse_qwen``, ``_parse_opencua``)
share: key names, the sequence of actions one reply asks for (with the last point it named and
the keys it holds down), and the decision made of it.

Pure: standard library, pydantic and our actions/domain/coords only; nothing here raises for a
model's mistakes except ``ReplyError``, which each parser turns into a ``Retry``.

Key names: the models write pyautogui's names (``ctrlleft``, ``num0``, ``pgdn``, ``win``) or
xdotool-like ones (``ctrl``, ``Return``, ``page_down``); ``key_name`` maps pyautogui's own
names that our desktop's aliases lack (``orchestrator.desktop._keys``) to X keysym names and
leaves the rest as written (the desktop resolves aliases and keysym names, case-insensitively,
and reports an unknown name to the model as the action's failure).

Example:
    >>> from orchestrator.coords import Mapper
    >>> seq = ActionSequence(Mapper((1000, 1000), (1920, 1080)))
    >>> seq.click("click", seq.at(500, 500)); seq.key_down("shift"); seq.scroll(None, 0, 5)
    >>> seq.key_up("shift"); seq.finish()[1]
    Scroll(type='scroll', x=960, y=540, scroll_x=0, scroll_y=5, keys=['shift'])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import ValidationError

from .. import actions as a
from ..coords import Mapper, OutOfSpaceError
from ..domain import MAX_ACTIONS, MAX_RESULT_CHARS, Act, Ask, Decision, Done, Fail, Retry

__all__ = [
    "MAX_REFUSAL_CHARS",
    "MAX_REPLY_CHARS",
    "MAX_THOUGHT_CHARS",
    "MAX_WAIT_S",
    "ActionSequence",
    "ReplyError",
    "batch_problem",
    "cap",
    "cut",
    "decide",
    "done",
    "fail",
    "finite",
    "key_name",
    "retry",
    "too_long",
    "validation_message",
]

MAX_THOUGHT_CHARS = 20_000
"""A decision's ``thought`` (and ``Retry.error``) holds at most this many characters."""
MAX_REPLY_CHARS = 256_000
"""The longest reply text a parser reads; a longer one is a ``Retry`` (``too_long``)."""
MAX_REFUSAL_CHARS = 2_000
"""A model's refusal is cut to this many characters where it becomes a reason or an error."""
MAX_WAIT_S = 300.0
"""The most waiting (``Wait`` actions, in seconds) one reply may ask for in all."""

_PYAUTOGUI_KEYS: dict[str, str] = {
    "ctrlleft": "Control_L",
    "ctrlright": "Control_R",
    "shiftleft": "Shift_L",
    "shiftright": "Shift_R",
    "altleft": "Alt_L",
    "altright": "Alt_R",
    "winleft": "Super_L",
    "winright": "Super_R",
    "optionleft": "Alt_L",
    "optionright": "Alt_R",
    "prntscrn": "Print",
    "add": "KP_Add",
    "subtract": "KP_Subtract",
    "multiply": "KP_Multiply",
    "divide": "KP_Divide",
    "decimal": "KP_Decimal",
    "separator": "KP_Separator",
    "nexttrack": "XF86AudioNext",
    "prevtrack": "XF86AudioPrev",
    "browserhome": "XF86HomePage",
    "browsersearch": "XF86Search",
    "browserfavorites": "XF86Favorites",
    "browserstop": "XF86Stop",
    "launchmail": "XF86Mail",
    "sleep": "XF86Sleep",
    **{f"num{i}": f"KP_{i}" for i in range(10)},
}


def key_name(name: str) -> str:
    """The name our ``KeyPress`` takes for a model's key name (see the module docstring).

    Example:
        >>> key_name("ctrlleft"), key_name("enter"), key_name("num5"), key_name(" ")
        ('Control_L', 'enter', 'KP_5', ' ')
    """
    if len(name) == 1:
        return name
    stripped = name.strip()
    return _PYAUTOGUI_KEYS.get(stripped.lower(), stripped)


class ReplyError(ValueError):
    """A reply that cannot be used; the message is for the model (it becomes a ``Retry``)."""


def cap(text: str | None) -> str | None:
    """``text`` stripped and cut to ``MAX_THOUGHT_CHARS``; None when empty."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_THOUGHT_CHARS:
        return text[: MAX_THOUGHT_CHARS - 1] + "…"
    return text


def cut(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters (an ellipsis marks the cut).

    Example:
        >>> cut("abcdef", 4)
        'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def done(result: str, thought: str | None = None) -> Done:
    """A ``Done`` whose result is cut to fit (a model's report is not refused for length)."""
    return Done(result=cut(result), thought=cap(thought))


def fail(reason: str, thought: str | None = None) -> Fail:
    """A ``Fail`` whose reason is cut to fit."""
    return Fail(reason=cut(reason), thought=cap(thought))


def too_long(text: str) -> Retry | None:
    """A ``Retry`` when a reply's text is over ``MAX_REPLY_CHARS`` (it is not read), else
    None."""
    if len(text) <= MAX_REPLY_CHARS:
        return None
    return retry(
        f"the reply is too long ({len(text)} characters, at most {MAX_REPLY_CHARS} are read): "
        "answer with a short thought and the actions of one step"
    )


def batch_problem(actions: Sequence[a.Action]) -> str | None:
    """What is wrong with one reply's actions as a batch (over ``MAX_ACTIONS`` actions, or
    over ``MAX_WAIT_S`` seconds of waiting and holding keys in all), for the model; None when
    nothing is."""
    if len(actions) > MAX_ACTIONS:
        return (
            f"{len(actions)} actions in one reply, at most {MAX_ACTIONS}: do one step, look at "
            "the screenshot, then go on"
        )
    waited = sum(x.duration_s for x in actions if isinstance(x, a.Wait | a.HoldKey))
    if waited > MAX_WAIT_S:
        return (
            f"a reply may wait at most {MAX_WAIT_S:g} seconds in all, not {waited:g}: wait, "
            "look at the screenshot, then wait again if needed"
        )
    return None


def finite(v: object) -> bool:
    """True for an int or float (not a bool) that is a finite number a float can hold: a
    model's ``10**400`` or ``1e999`` is not one.

    Example:
        >>> finite(3), finite(2.5), finite(10**400), finite(float("inf")), finite(True)
        (True, True, False, False, False)
    """
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def retry(error: str, thought: str | None = None) -> Retry:
    """A ``Retry`` with ``error`` (cut to fit) and the reply's thought."""
    return Retry(error=cap(error) or "the reply could not be used", thought=cap(thought))


Point = tuple[int, int]
_Click = Literal["click", "double_click", "triple_click"]


class ActionSequence:
    """The actions of one reply, in order, in screen pixels.

    Keeps the last point the reply named (a ``dragTo`` or a click without coordinates starts
    there) and the keys held down by ``key_down`` (they become the ``keys`` of the mouse
    actions, or the leading keys of the chords, until ``key_up``). ``cursor`` is the pointer's
    screen position before the reply, when the caller knows it.
    """

    def __init__(self, mapper: Mapper, cursor: Point | None = None) -> None:
        self.mapper = mapper
        self.actions: list[a.Action] = []
        self.last: Point | None = cursor
        self._held: list[str] = []
        self._held_used: set[str] = set()
        self._waited = 0.0

    # ------------------------------------------------------------------ points

    def at(self, x: object, y: object, *, fraction: bool = False) -> Point:
        """The screen pixel of the model's point ``(x, y)``; ``ReplyError`` when not numbers
        or outside the model's space."""
        if not (finite(x) and finite(y)):
            raise ReplyError(f"a point needs two numbers, not ({_short(x)}, {_short(y)})")
        try:
            if fraction:
                return self.mapper.fraction(x, y)  # type: ignore[arg-type]
            return self.mapper.point(x, y)  # type: ignore[arg-type]
        except OutOfSpaceError as e:
            raise ReplyError(str(e)) from None
        except (ValueError, OverflowError):
            raise ReplyError(f"({_short(x)}, {_short(y)}) is not a point of the screen") from None

    def here(self, what: str) -> Point:
        """The point an action without coordinates acts at: the last one named (or the
        cursor); ``ReplyError`` when none is known."""
        if self.last is None:
            raise ReplyError(
                f"{what} has no coordinates and the pointer's position is not known: "
                "give the point to act at"
            )
        return self.last

    # ------------------------------------------------------------------ actions

    def add(self, action: a.Action) -> None:
        """Append an action (already in screen pixels); ``ReplyError`` past ``MAX_ACTIONS``
        actions or ``MAX_WAIT_S`` seconds of waiting in one reply."""
        if len(self.actions) >= MAX_ACTIONS:
            raise ReplyError(
                f"a reply may ask for at most {MAX_ACTIONS} actions: do one step, look at "
                "the screenshot, then go on"
            )
        if isinstance(action, a.Wait | a.HoldKey):
            if self._waited + action.duration_s > MAX_WAIT_S:
                raise ReplyError(
                    f"a reply may wait at most {MAX_WAIT_S:g} seconds in all: wait, look at "
                    "the screenshot, then wait again if needed"
                )
            self._waited += action.duration_s
        self.actions.append(action)

    def _keys(self) -> list[str]:
        self._held_used.update(self._held)
        return list(self._held)

    def click(
        self, kind: _Click, point: Point | None, button: a.Button = "left", what: str = "click"
    ) -> None:
        """A single, double or triple click at ``point`` (None: where the pointer is)."""
        x, y = point if point is not None else self.here(what)
        keys = self._keys()
        match kind:
            case "click":
                self.add(a.Click(x=x, y=y, button=button, keys=keys))
            case "double_click":
                self.add(a.DoubleClick(x=x, y=y, button=button, keys=keys))
            case "triple_click":
                self.add(a.TripleClick(x=x, y=y, button=button, keys=keys))
        self.last = (x, y)

    def move(self, point: Point) -> None:
        """Move the pointer to ``point``."""
        self.add(a.Move(x=point[0], y=point[1], keys=self._keys()))
        self.last = point

    def drag(self, start: Point | None, end: Point, button: a.Button = "left") -> None:
        """Drag from ``start`` (None: the last point; unknown: from wherever the pointer is,
        as press, move and release) to ``end``."""
        start = start if start is not None else self.last
        if start is None:
            if self._held:
                raise ReplyError(
                    "cannot drag from an unknown pointer position with keys held: "
                    "give the start point"
                )
            self.add(a.MouseDown(button=button))
            self.add(a.Move(x=end[0], y=end[1]))
            self.add(a.MouseUp(button=button))
        else:
            path = [a.Point(x=start[0], y=start[1]), a.Point(x=end[0], y=end[1])]
            self.add(a.Drag(path=path, button=button, keys=self._keys()))
        self.last = end

    def mouse(self, up: bool, point: Point | None, button: a.Button = "left") -> None:
        """Press (or release) a mouse button, at ``point`` or where the pointer is."""
        if self._held:
            raise ReplyError("mouseDown/mouseUp cannot be combined with held keys")
        x, y = point if point is not None else (None, None)
        self.add(a.MouseUp(x=x, y=y, button=button) if up else a.MouseDown(x=x, y=y, button=button))
        if point is not None:
            self.last = point

    def scroll(self, point: Point | None, dx: int, dy: int) -> None:
        """Turn the wheel ``dx`` notches right and ``dy`` down at ``point`` (None: the last
        point, else the middle of the screen); clamped to ``Scroll``'s ±100."""
        if point is None:
            w, h = self.mapper.screen_size
            point = self.last if self.last is not None else (w // 2, h // 2)
        dx, dy = (max(-100, min(100, v)) for v in (dx, dy))
        self.add(a.Scroll(x=point[0], y=point[1], scroll_x=dx, scroll_y=dy, keys=self._keys()))
        self.last = point

    def press(self, keys: Sequence[str]) -> None:
        """Press ``keys`` together as one chord (after any held keys)."""
        names = [key_name(k) for k in keys if isinstance(k, str) and k != ""]
        if not names or len(names) != len(keys):
            raise ReplyError(f"keys must be key names, not {list(keys)!r}")
        held = [k for k in self._keys() if k not in names]
        chord = held + names
        if len(chord) > 16:
            raise ReplyError(f"at most 16 keys at once, not {len(chord)}")
        self.add(a.KeyPress(keys=chord))

    def type(self, text: str) -> None:
        """Type ``text`` (``\\n`` presses Return)."""
        if self._held:
            raise ReplyError(
                f"cannot type text while {'+'.join(self._held)} is held down: "
                "use hotkey for shortcuts"
            )
        if not text:
            return
        for i in range(0, len(text), a.MAX_TYPE_CHARS):
            self.add(a.TypeText(text=text[i : i + a.MAX_TYPE_CHARS]))

    def wait(self, seconds: object) -> None:
        """Wait ``seconds`` (0..300)."""
        if not finite(seconds) or not 0 <= float(seconds) <= 300:  # type: ignore[arg-type]
            raise ReplyError(f"a wait takes 0 to 300 seconds, not {_short(seconds)}")
        self.add(a.Wait(duration_s=float(seconds)))  # type: ignore[arg-type]

    def key_down(self, key: str) -> None:
        """Hold ``key`` down for the following actions, until ``key_up``."""
        name = key_name(key)
        if name not in self._held:
            self._held.append(name)

    def key_up(self, key: str) -> None:
        """Release a key ``key_down`` held; held and released with nothing in between, it
        is pressed once."""
        name = key_name(key)
        if name not in self._held:
            raise ReplyError(
                f"key {key!r} is released but was not held down before it in this reply"
            )
        if name not in self._held_used:
            self.add(a.KeyPress(keys=[*self._held]))
            self._held_used.update(self._held)
        self._held.remove(name)

    def finish(self) -> list[a.Action]:
        """The actions; ``ReplyError`` when a key is still held (our desktop holds no key
        from one reply to the next)."""
        if self._held:
            names = ", ".join(repr(k) for k in self._held)
            raise ReplyError(
                f"key {names} is held down and not released in this reply: put the actions "
                "that need it between the key-down and the key-up in one reply, or use a hotkey"
            )
        return list(self.actions)


def decide(
    actions: list[a.Action],
    end: Done | Fail | Ask | None,
    thought: str | None,
    end_call: str = "the final action",
) -> Decision:
    """The decision of a reply: its actions (``Act``), or its ending (``Done``/``Fail``/``Ask``)
    when that came alone; an ending after actions is a ``Retry``."""
    thought = cap(thought)
    if end is not None:
        if actions:
            return retry(
                f"{end_call} must come alone, in a reply of its own, once the screenshot shows "
                "the earlier actions worked; this reply had other actions before it",
                thought,
            )
        return end.model_copy(update={"thought": thought})
    return Act(actions=actions, thought=thought)


def _short(v: object) -> str:
    """``repr(v)`` of at most 60 characters (a model's 5,000-digit number is not echoed, nor
    converted: ``repr`` of such an int raises ``ValueError``)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 160:
        return "a number too large"
    text = repr(v)
    return text if len(text) <= 60 else text[:59] + "…"


def validation_message(e: ValidationError) -> str:
    """A short, model-readable account of a pydantic error."""
    errors = e.errors()
    if not errors:
        return str(e)
    where = ".".join(str(p) for p in errors[0]["loc"])
    return f"{where}: {errors[0]['msg']}" if where else errors[0]["msg"]
