"""The open-model parsers never raise on a model's output: whatever the text, they return a
decision (a Retry when it cannot be used), and every point they return is on the screen."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.brains import parse_reply
from orchestrator.domain import Act, Retry

SPACES = [((1288, 812), (1280, 800)), ((1000, 1000), (1920, 1080)), ((1932, 1092), (1920, 1080))]

_numbers = st.one_of(
    st.integers(-50, 2500),
    st.floats(-2, 2000, allow_nan=False),
    st.sampled_from([0, 1, 0.5, 1.0, 1000, 1288, 812, -1, 1e30]),
)
_words = st.sampled_from(
    [
        "click",
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
        "fly",
        "",
    ]
)
_keys = st.sampled_from(["start_box", "end_box", "point", "key", "content", "direction", "x"])


@st.composite
def uitars_replies(draw: st.DrawFn) -> str:
    calls = []
    for _ in range(draw(st.integers(0, 3))):
        args = []
        for _ in range(draw(st.integers(0, 3))):
            value = draw(
                st.one_of(
                    st.builds(lambda x, y: f"'({x},{y})'", _numbers, _numbers),
                    st.builds(lambda x, y: f"'<point>{x} {y}</point>'", _numbers, _numbers),
                    st.text(max_size=12).map(repr),
                    st.text(max_size=12),
                )
            )
            args.append(f"{draw(_keys)}={value}")
        calls.append(f"{draw(_words)}({', '.join(args)})")
    noise = draw(st.text(max_size=20))
    return f"Thought: {noise}\nAction: " + "\n\n".join(calls) + draw(st.text(max_size=5))


_coord = st.one_of(
    st.lists(st.integers(0, 1000), min_size=2, max_size=2), st.lists(_numbers, max_size=3)
)


@st.composite
def qwen_replies(draw: st.DrawFn) -> str:
    parts = [draw(st.text(max_size=20))]
    for _ in range(draw(st.integers(0, 3))):
        arguments = {
            "action": draw(
                st.sampled_from(
                    [
                        "left_click",
                        "double_click",
                        "mouse_move",
                        "key",
                        "type",
                        "scroll",
                        "hscroll",
                        "wait",
                        "terminate",
                        "answer",
                        "left_click_drag",
                        "click",
                        "swipe",
                        "long_press",
                        "fly",
                    ]
                )
            ),
            "coordinate": draw(_coord),
            "coordinate2": draw(_coord),
            "keys": draw(st.lists(st.sampled_from(["ctrl", "c", "Return", ""]), max_size=3)),
            "text": draw(st.text(max_size=8)),
            "pixels": draw(_numbers),
            "time": draw(st.sampled_from([0, 1, 2.5, 500, -1])),
            "status": draw(st.sampled_from(["success", "failure", "maybe"])),
        }
        for key in draw(st.lists(st.sampled_from(sorted(arguments)), max_size=4)):
            arguments.pop(key, None)
        name = draw(st.sampled_from(["computer_use", "computer_use", "mobile_use", "x"]))
        body = json.dumps({"name": name, "arguments": arguments})
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        parts.append(f"<tool_call>{body}</tool_call>")
    return "\n".join(parts)


_FUNCS = {
    "pyautogui.click": ["644, 406", "x=0.5, y=0.25", "x=100, y=200, clicks=2", "(1, 2)", ""],
    "pyautogui.moveTo": ["644, 406", "x=0.5, y=0.25"],
    "pyautogui.dragTo": ["644, 406", "x=0.5, y=0.25, button='left'"],
    "pyautogui.scroll": ["-3", "5, x=10, y=10", "-54"],
    "pyautogui.hotkey": ["'ctrl', 'c'", "keys=['ctrl', 'v']"],
    "pyautogui.write": ["message='hi'", "'a\\n'", "['a', 'enter']"],
    "pyautogui.press": ["'enter'", "keys=['tab']", "'down', presses=2"],
    "pyautogui.keyDown": ["'shift'"],
    "pyautogui.keyUp": ["'shift'"],
    "computer.terminate": ["status='success'", "status='failure', answer='no'"],
    "computer.wait": ["", "3"],
    "os.system": ["'ls'"],
}


@st.composite
def opencua_replies(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        func = draw(st.sampled_from(sorted(_FUNCS)))
        if draw(st.integers(0, 3)):
            args = draw(st.sampled_from(_FUNCS[func]))
        else:
            args = ", ".join(
                draw(
                    st.lists(
                        st.one_of(
                            _numbers.map(repr),
                            st.text(max_size=6).map(repr),
                            st.sampled_from(["x=0.5", "y=1500", "clicks=9", "__import__('os')"]),
                        ),
                        max_size=3,
                    )
                )
            )
        lines.append(f"{func}({args})")
    thought = draw(st.text(max_size=10))
    return f"## Thought\n{thought}\n## Code\n```python\n" + "\n".join(lines) + "\n```"


def _check(family: str, text: str) -> None:
    for model, screen in SPACES:
        d = parse_reply(family, text, model, screen)  # type: ignore[arg-type]
        if isinstance(d, Retry):
            assert d.error
        if isinstance(d, Act):
            for action in d.actions:
                for key in ("x", "y"):
                    value = getattr(action, key, None)
                    if value is not None:
                        limit = screen[0] if key == "x" else screen[1]
                        assert 0 <= value < limit, (text, action)


@settings(max_examples=300, deadline=None)
@given(st.one_of(uitars_replies(), st.text(max_size=200)))
def test_uitars_never_raises(text: str) -> None:
    _check("uitars", text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(qwen_replies(), st.text(max_size=200)))
def test_qwen_never_raises(text: str) -> None:
    _check("qwen-vl", text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(opencua_replies(), st.text(max_size=200)))
def test_opencua_never_raises(text: str) -> None:
    _check("opencua", text)
