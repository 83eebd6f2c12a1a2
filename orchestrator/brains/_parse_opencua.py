"""OpenCUA's replies (``## Thought`` / ``## Action`` / ``## Code`` with a block of pyautogui
calls) as a decision in screen pixels. The code is read with ``ast``, never executed.

Written for this project after reading the format where its authors define it: xlang-ai/OpenCUA
``evaluation/agentnetbench/agent/opencua.py`` (prompts, response templates, the
``pyautogui.*``/``computer.*`` lines it extracts), its ``sample_data`` trajectories
(``pyautogui.click(x=0.7007, y=0.9438)``, ``hotkey(keys=[...])``, ``write(message=...)``,
``computer.terminate(status='success')``) and the README; and pyautogui's own signatures.

The reply:

- The thought: the ``## Thought`` section, then the ``## Action`` one (the step in words);
  without such headers, the text outside the code.
- The code: the fenced block of the ``## Code`` section (else any fenced block, else the lines
  that start with ``pyautogui.``/``computer.``). Every statement must be one call of
  ``pyautogui.<function>``, ``computer.<function>`` or ``time.sleep`` with literal arguments
  (numbers, strings, lists, ``True``/``False``/``None``); ``import pyautogui``/``import time``
  are skipped; anything else (other modules, names, attribute chains, nested calls,
  assignments, f-strings) is a ``Retry`` and nothing of the reply is carried out.
- Calls: ``click(x, y, clicks=, button=)``, ``doubleClick``, ``tripleClick``, ``rightClick``,
  ``middleClick``, ``moveTo``, ``dragTo`` (from the block's last point, else the cursor, else
  from wherever the pointer is), ``mouseDown``/``mouseUp``, ``write``/``typewrite`` (a string,
  or pyautogui's list of key names), ``press(keys, presses=)`` (each key in turn, as pyautogui
  does), ``hotkey(*keys)`` (or ``keys=[...]``; one chord), ``keyDown``/``keyUp`` (held for the
  mouse actions and chords in between), ``scroll(clicks, x=, y=)`` and ``vscroll``/``hscroll``
  (pyautogui's clicks are wheel notches on X11; > 0 scrolls up, ``hscroll`` right),
  ``computer.triple_click(x, y)``, ``computer.wait(seconds)``, ``time.sleep(seconds)``,
  ``computer.terminate(status='success'|'failure', answer=...)`` -> ``Done``/``Fail``.
  ``cmd``/``command`` mean ``ctrl``, as OpenCUA's evaluator normalises them (the models learnt
  from macOS recordings too).
- Coordinates: when every coordinate of the reply is at most 1.0 and one is not a whole
  number, all are fractions of the screen (``mapper.fraction``); otherwise pixels of the model
  space (``mapper.point``: the resized image for OpenCUA-7B/32B).

Example:
    >>> from orchestrator.coords import Mapper
    >>> text = "## Thought\\nOpen it.\\n## Code\\n```python\\npyautogui.click(x=0.5, y=0.25)\\n```"
    >>> d = parse(text, Mapper((1288, 812), (1280, 800)))
    >>> d.thought, d.actions[0]
    ('Open it.', Click(type='click', x=640, y=200, button='left', keys=[]))
"""

from __future__ import annotations

import ast
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

__all__ = ["FUNCTIONS", "MAX_CODE_CHARS", "WAIT_S", "Call", "parse", "read_calls"]

MAX_CODE_CHARS = 20_000
"""The longest code block read."""
WAIT_S = 2.0
"""A ``computer.wait()`` without seconds."""

# function -> its parameters in order (pyautogui's signatures), for binding positional args.
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "pyautogui.click": ("x", "y", "clicks", "interval", "button"),
    "pyautogui.leftClick": ("x", "y"),
    "pyautogui.doubleClick": ("x", "y", "interval", "button"),
    "pyautogui.tripleClick": ("x", "y", "interval", "button"),
    "pyautogui.rightClick": ("x", "y"),
    "pyautogui.middleClick": ("x", "y"),
    "pyautogui.moveTo": ("x", "y"),
    "pyautogui.dragTo": ("x", "y", "duration", "tween", "button"),
    "pyautogui.mouseDown": ("x", "y", "button"),
    "pyautogui.mouseUp": ("x", "y", "button"),
    "pyautogui.write": ("message", "interval"),
    "pyautogui.typewrite": ("message", "interval"),
    "pyautogui.press": ("keys", "presses", "interval"),
    "pyautogui.hotkey": (),
    "pyautogui.keyDown": ("key",),
    "pyautogui.keyUp": ("key",),
    "pyautogui.scroll": ("clicks", "x", "y"),
    "pyautogui.vscroll": ("clicks", "x", "y"),
    "pyautogui.hscroll": ("clicks", "x", "y"),
    "computer.triple_click": ("x", "y"),
    "computer.tripleClick": ("x", "y"),
    "computer.wait": ("seconds",),
    "computer.terminate": ("status", "answer"),
    "time.sleep": ("seconds",),
}
FUNCTIONS = tuple(_SIGNATURES)
"""The calls this parser takes."""
_VALID = "valid calls: " + "; ".join(
    f"{module}.({', '.join(n.split('.')[1] for n in FUNCTIONS if n.startswith(module + '.'))})"
    for module in ("pyautogui", "computer", "time")
)
_IGNORED = {"duration", "tween", "interval", "logScreenshot", "_pause", "mouseDownUp"}
_POINTED = {name for name, params in _SIGNATURES.items() if "x" in params}
_BUTTONS = {"left": "left", "primary": "left", "right": "right", "secondary": "right"}
_BUTTONS |= {"middle": "middle"}
_MODULES = ("pyautogui", "computer", "time")
_HEADER = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]*(Observation|Thought|Action|Code)[ \t]*:?[ \t]*$")
_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LINE = re.compile(r"(?m)^[ \t]*((?:pyautogui|computer)\.\w+\(.*)$")
_FORMAT = "write the step as a ```python block of pyautogui calls, e.g. pyautogui.click(x=.., y=..)"


class Call:
    """One call of the code: ``name`` (``pyautogui.click``), its arguments bound to
    parameter names, and its source text."""

    def __init__(self, name: str, args: dict[str, Any], source: str) -> None:
        self.name, self.args, self.source = name, args, source


def parse(reply: Any, mapper: Mapper, *, cursor: tuple[int, int] | None = None) -> Decision:
    """The decision in an OpenCUA reply (a text, or a chat-completion dict), in screen pixels.

    ``cursor``: the pointer's screen position before the reply, when known (a ``dragTo`` or
    a click without coordinates starts there). Never raises for a bad reply: it is a
    ``Retry`` saying what was wrong.
    """
    text = reply_text(reply)
    if text is None or not text.strip():
        return retry(f"the reply has no text: {_FORMAT}")
    if (long := too_long(text)) is not None:
        return long
    thought, code = _split(text)
    if code is None or not code.strip():
        return retry(f"the reply has no code: {_FORMAT}", thought)
    try:
        calls = read_calls(code)
        if not calls:
            raise ReplyError(f"the code calls nothing: {_FORMAT}")
        fraction = _fractions(calls)
        seq = ActionSequence(mapper, cursor)
        end: Done | Fail | None = None
        end_call = ""
        for call in calls:
            if end is not None:
                raise ReplyError(f"{end_call} must be the last and only call of its reply")
            try:
                end = _apply(seq, call, fraction, thought)
            except ReplyError as e:
                raise ReplyError(f"in `{_short(call.source)}`: {e}") from None
            end_call = call.name if end is not None else end_call
        return decide(seq.finish(), end, thought, end_call)
    except ReplyError as e:
        return retry(str(e), thought)
    except ValidationError as e:
        return retry(f"a call's arguments are not valid ({validation_message(e)})", thought)


def _split(text: str) -> tuple[str | None, str | None]:
    """``(thought, code)`` of a reply."""
    sections: dict[str, str] = {}
    headers = list(_HEADER.finditer(text))
    for i, m in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        sections.setdefault(m.group(1), text[m.end() : end].strip())
    code: str | None
    if "Code" in sections:
        fences = _FENCE.findall(sections["Code"])
        code = "\n".join(fences) if fences else sections["Code"]
    else:
        fences = _FENCE.findall(text)
        code = "\n".join(fences) if fences else "\n".join(_LINE.findall(text)) or None
    if headers:
        parts = [sections.get("Thought", "")]
        if sections.get("Action"):
            parts.append(f"Action: {sections['Action']}")
        thought = "\n\n".join(p for p in parts if p)
    else:
        thought = _FENCE.sub("", text) if fences else _LINE.sub("", text)
    return cap(thought), code


def read_calls(code: str) -> list[Call]:
    """The calls of a code block, read with ``ast`` (never run); ``ReplyError`` for anything
    but calls of the known functions with literal arguments."""
    if len(code) > MAX_CODE_CHARS:
        raise ReplyError(f"the code is over {MAX_CODE_CHARS} characters")
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as e:
        raise ReplyError(f"the code is not valid Python ({e.msg}, line {e.lineno})") from None
    except (ValueError, RecursionError, MemoryError):
        raise ReplyError("the code is not valid Python") from None
    calls: list[Call] = []
    for stmt in tree.body:
        source = ast.get_source_segment(code, stmt) or ""
        if isinstance(stmt, ast.Import) and all(
            alias.name in ("pyautogui", "time") and alias.asname is None for alias in stmt.names
        ):
            continue
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
            raise ReplyError(
                f"`{_short(source)}` is not a call: only pyautogui and computer calls with "
                "literal arguments are read (nothing is executed)"
            )
        calls.append(_call(stmt.value, source))
    return calls


def _call(node: ast.Call, source: str) -> Call:
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in _MODULES
    ):
        raise ReplyError(f"`{_short(source)}` is not a call of pyautogui or computer; {_VALID}")
    name = f"{func.value.id}.{func.attr}"
    if name not in _SIGNATURES:
        raise ReplyError(f"unknown call {name}; {_VALID}")
    args: dict[str, Any] = {}
    positional = [_literal(a, source) for a in node.args]
    if name == "pyautogui.hotkey":
        if positional:
            args["keys"] = positional[0] if len(positional) == 1 else positional
    else:
        params = _SIGNATURES[name]
        if len(positional) > len(params):
            raise ReplyError(f"{name} takes at most {len(params)} positional arguments")
        args.update(zip(params, positional, strict=False))
    for kw in node.keywords:
        if kw.arg is None:
            raise ReplyError(f"`{_short(source)}`: ** arguments are not read")
        if kw.arg in args:
            raise ReplyError(f"{name} got {kw.arg} twice")
        args[kw.arg] = _literal(kw.value, source)
    return Call(name, args, source)


def _literal(node: ast.expr, source: str) -> Any:
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, str | int | float | bool)
    ):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e, source) for e in node.elts]
    raise ReplyError(
        f"`{_short(source)}`: only literal arguments (numbers, strings, lists) are read"
    )


def _xy(call: Call) -> tuple[Any, Any] | None:
    if call.name not in _POINTED:
        return None
    x, y = call.args.get("x"), call.args.get("y")
    if isinstance(x, list) and len(x) == 2 and y is None:  # click((x, y))
        x, y = x
    if x is None and y is None:
        return None
    if x is None or y is None:
        raise ReplyError(f"{call.name} needs both x and y")
    return x, y


def _fractions(calls: list[Call]) -> bool:
    """True when the reply's coordinates are fractions of the screen (see the docstring)."""
    values: list[Any] = []
    for call in calls:
        try:
            point = _xy(call)
        except ReplyError:
            continue
        if point is not None:
            values.extend(point)
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers or len(numbers) != len(values):
        return False
    return all(v <= 1.0 for v in numbers) and any(not float(v).is_integer() for v in numbers)


def _point(seq: ActionSequence, call: Call, fraction: bool) -> tuple[int, int] | None:
    point = _xy(call)
    return None if point is None else seq.at(*point, fraction=fraction)


def _button(call: Call, default: str = "left") -> Any:
    button = call.args.get("button", default)
    if button not in _BUTTONS:
        raise ReplyError(f"button must be left, right or middle, not {button!r}")
    return _BUTTONS[button]


def _key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ReplyError(f"a key must be a key name, not {value!r}")
    return "ctrl" if value.lower() in ("cmd", "command") else value


def _key_list(value: Any) -> list[str]:
    return [_key(k) for k in value] if isinstance(value, list) else [_key(value)]


def _count(value: Any, what: str, top: int) -> int:
    if not finite(value) or not abs(value) <= top:
        raise ReplyError(f"{what} must be a whole number up to {top}, not {_short_value(value)}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ReplyError(f"{what} must be a whole number up to {top}, not {value!r}")
    return value


def _short_value(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 160:
        return "a number that large"
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _apply(
    seq: ActionSequence, call: Call, fraction: bool, thought: str | None
) -> Done | Fail | None:
    unknown = set(call.args) - set(_SIGNATURES[call.name]) - _IGNORED - {"keys"}
    if unknown:
        raise ReplyError(f"{call.name} has no argument {', '.join(sorted(unknown))}")
    args = call.args
    method = call.name.split(".", 1)[1]
    match call.name:
        case "pyautogui.click" | "pyautogui.leftClick":
            clicks = _count(args.get("clicks", 1), "clicks", 3)
            kinds = {1: "click", 2: "double_click", 3: "triple_click"}
            if clicks not in kinds:
                raise ReplyError("clicks must be 1, 2 or 3")
            seq.click(kinds[clicks], _point(seq, call, fraction), _button(call), method)  # type: ignore[arg-type]
        case "pyautogui.doubleClick":
            seq.click("double_click", _point(seq, call, fraction), _button(call), method)
        case "pyautogui.tripleClick" | "computer.triple_click" | "computer.tripleClick":
            seq.click("triple_click", _point(seq, call, fraction), _button(call), method)
        case "pyautogui.rightClick":
            seq.click("click", _point(seq, call, fraction), "right", method)
        case "pyautogui.middleClick":
            seq.click("click", _point(seq, call, fraction), "middle", method)
        case "pyautogui.moveTo" | "pyautogui.dragTo":
            point = _point(seq, call, fraction)
            if point is None:
                raise ReplyError(f"{call.name} needs x and y")
            if method == "moveTo":
                seq.move(point)
            else:
                seq.drag(None, point, _button(call))
        case "pyautogui.mouseDown" | "pyautogui.mouseUp":
            seq.mouse(method == "mouseUp", _point(seq, call, fraction), _button(call))
        case "pyautogui.write" | "pyautogui.typewrite":
            _write(seq, args.get("message"))
        case "pyautogui.press":
            keys = _key_list(args.get("keys"))
            if not keys:
                raise ReplyError("press needs a key name, or a list of at least one")
            presses = _count(args.get("presses", 1), "presses", 100)
            for _ in range(presses):
                for key in keys:
                    seq.press([key])
        case "pyautogui.hotkey":
            seq.press(_key_list(args.get("keys")))
        case "pyautogui.keyDown":
            seq.key_down(_key(args.get("key")))
        case "pyautogui.keyUp":
            seq.key_up(_key(args.get("key")))
        case "pyautogui.scroll" | "pyautogui.vscroll" | "pyautogui.hscroll":
            amount = args.get("clicks")
            clicks = _count(
                round(amount) if isinstance(amount, float) and finite(amount) else amount,
                "clicks",
                10_000,
            )
            point = _point(seq, call, fraction)
            if method == "hscroll":
                seq.scroll(point, clicks, 0)
            else:
                seq.scroll(point, 0, -clicks)
        case "computer.wait" | "time.sleep":
            seq.wait(args.get("seconds", WAIT_S))
        case "computer.terminate":
            status = str(args.get("status", "")).strip().lower()
            answer = args.get("answer")
            answer = "" if answer is None else str(answer)
            if status == "success":
                return done(answer)
            if status == "failure":
                return fail(cap(answer) or cap(thought) or "the model gave up")
            raise ReplyError(f"status must be 'success' or 'failure', not {status!r}")
    return None


def _write(seq: ActionSequence, message: Any) -> None:
    if isinstance(message, str):
        seq.type(message)
        return
    if not isinstance(message, list) or not all(isinstance(m, str) for m in message):
        raise ReplyError(f"write needs a message string, not {message!r}")
    text = ""
    for item in message:  # pyautogui's list form: characters and key names
        if len(item) == 1:
            text += item
            continue
        seq.type(text)
        text = ""
        seq.press([_key(item)])
    seq.type(text)


def _short(source: str) -> str:
    source = " ".join(source.split())
    return source if len(source) <= 200 else source[:199] + "…"
