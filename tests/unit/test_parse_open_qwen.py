"""Qwen-VL replies (``<tool_call>`` computer_use calls in the text) to decisions in screen
pixels: every action of the reference tool, at Qwen2.5-VL's resized grid (1288x812 for a
1280x800 screen) and Qwen3-VL's 0..1000, on 1280x800 and 1920x1080 screens; malformed
replies are Retries the model can act on.

Expected pixels by hand: a whole model pixel ``n`` of an ``M``-wide space lands on screen
pixel ``(2n + 1) * S // (2M)`` of an ``S``-wide screen; ``n == M`` is the last pixel.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.brains import parse_reply
from orchestrator.brains._parse_qwen import WAIT_S, notches, parse
from orchestrator.coords import Mapper
from orchestrator.domain import Act, Done, Fail, Retry

GRID_1280 = ((1288, 812), (1280, 800))
NORM_1280 = ((1000, 1000), (1280, 800))
GRID_1920 = ((1288, 812), (1920, 1080))
NORM_1920 = ((1000, 1000), (1920, 1080))
# (150, 250) and (250, 350) on each (worked out in tests/unit/test_parse_open_uitars.py):
P1 = {GRID_1280: (149, 246), NORM_1280: (192, 200), GRID_1920: (224, 333), NORM_1920: (288, 270)}
P2 = {GRID_1280: (248, 345), NORM_1280: (320, 280), GRID_1920: (373, 466), NORM_1920: (480, 378)}
SPACES = list(P1)


def call(**arguments: Any) -> str:
    body = json.dumps({"name": "computer_use", "arguments": arguments})
    return f"<tool_call>\n{body}\n</tool_call>"


def run(text: Any, space: Any = GRID_1280, **kw: Any) -> Any:
    return parse(text, Mapper(*space), **kw)


def act(text: Any, space: Any = GRID_1280, **kw: Any) -> Act:
    decision = run(text, space, **kw)
    assert isinstance(decision, Act), decision
    return decision


def error(text: Any, space: Any = GRID_1280) -> str:
    decision = run(text, space)
    assert isinstance(decision, Retry), decision
    return decision.error


@pytest.mark.parametrize("space", SPACES)
def test_each_pointer_action(space: Any) -> None:
    (x, y), (ex, ey) = P1[space], P2[space]
    at = [150, 250]
    cases = {
        call(action="left_click", coordinate=at): a.Click(x=x, y=y),
        call(action="right_click", coordinate=at): a.Click(x=x, y=y, button="right"),
        call(action="middle_click", coordinate=at): a.Click(x=x, y=y, button="middle"),
        call(action="double_click", coordinate=at): a.DoubleClick(x=x, y=y),
        call(action="triple_click", coordinate=at): a.TripleClick(x=x, y=y),
        call(action="mouse_move", coordinate=at): a.Move(x=x, y=y),
    }
    for text, expected in cases.items():
        assert act(text, space).actions == [expected], text
    # A drag goes from the last point of the reply to its coordinate.
    d = act(
        call(action="mouse_move", coordinate=at)
        + call(action="left_click_drag", coordinate=[250, 350]),
        space,
    )
    assert d.actions == [
        a.Move(x=x, y=y),
        a.Drag(path=[a.Point(x=x, y=y), a.Point(x=ex, y=ey)]),
    ]


def test_drag_and_click_without_a_known_start() -> None:
    # From wherever the pointer is: press, move, release (as the reference's mouseDown/dragTo).
    d = act(call(action="left_click_drag", coordinate=[644, 406]))
    assert d.actions == [a.MouseDown(), a.Move(x=640, y=400), a.MouseUp()]
    # With the cursor known, a real drag from it; a click without coordinate clicks there.
    d = act(call(action="left_click_drag", coordinate=[644, 406]), cursor=(5, 6))
    assert d.actions == [a.Drag(path=[a.Point(x=5, y=6), a.Point(x=640, y=400)])]
    assert act(call(action="left_click"), cursor=(5, 6)).actions == [a.Click(x=5, y=6)]
    assert "coordinate" in error(call(action="left_click")) or "no coordinates" in error(
        call(action="left_click")
    )


def test_the_far_edge() -> None:
    d = act(call(action="left_click", coordinate=[1000, 1000]), NORM_1920)
    assert d.actions == [a.Click(x=1919, y=1079)]


def test_keys_and_type() -> None:
    assert act(call(action="key", keys=["ctrl", "c"])).actions == [a.KeyPress(keys=["ctrl", "c"])]
    assert act(call(action="key", keys=["Return"])).actions == [a.KeyPress(keys=["Return"])]
    assert act(call(action="key", keys="ctrl+alt+t")).actions == [a.KeyPress(keys=["ctrl+alt+t"])]
    assert act(call(action="type", text="hello world")).actions == [a.TypeText(text="hello world")]
    # A literal backslash-n (no real newline) presses Return, as the reference tool does.
    assert act(call(action="type", text="ls\\n")).actions == [a.TypeText(text="ls\n")]
    assert act(call(action="type", text="a\nb\\n")).actions == [a.TypeText(text="a\nb\\n")]


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (-5, -5),
        (5, 5),
        (10, 10),
        (-1, -1),
        (0.4, 1),
        (-30, -10),
        (-500, -10),
        (2500, 25),
        (99_999, 100),
        (0, 0),
    ],
)
def test_scroll_notches(pixels: float, expected: int) -> None:
    # <= 10 are notches; larger are pixels at 100 a notch, never fewer than 10; capped at 100.
    assert notches(pixels) == expected


def test_scroll_directions_and_positions() -> None:
    # Positive scrolls up (scroll_y < 0 here), negative down; hscroll positive goes right.
    d = act(call(action="scroll", pixels=3, coordinate=[644, 406]))
    assert d.actions == [a.Scroll(x=640, y=400, scroll_y=-3)]
    d = act(call(action="scroll", pixels=-500, coordinate=[644, 406]))
    assert d.actions == [a.Scroll(x=640, y=400, scroll_y=10)]
    d = act(call(action="hscroll", pixels=-2, coordinate=[644, 406]))
    assert d.actions == [a.Scroll(x=640, y=400, scroll_x=-2)]
    # No coordinate: the last point of the reply, the cursor, else the middle of the screen.
    d = act(call(action="mouse_move", coordinate=[644, 406]) + call(action="scroll", pixels=-1))
    assert d.actions[1] == a.Scroll(x=640, y=400, scroll_y=1)
    assert act(call(action="scroll", pixels=-1), cursor=(7, 8)).actions == [
        a.Scroll(x=7, y=8, scroll_y=1)
    ]
    assert act(call(action="scroll", pixels=1), GRID_1920).actions == [
        a.Scroll(x=960, y=540, scroll_y=-1)
    ]


def test_wait_terminate_answer() -> None:
    assert act(call(action="wait", time=3)).actions == [a.Wait(duration_s=3.0)]
    assert act(call(action="wait")).actions == [a.Wait(duration_s=WAIT_S)]
    d = run("The file is saved.\n" + call(action="terminate", status="success"))
    assert isinstance(d, Done) and d.thought == "The file is saved."
    d = run("It cannot be done: no network.\n" + call(action="terminate", status="failure"))
    assert isinstance(d, Fail) and "no network" in d.reason
    assert run(call(action="terminate", status="failure")) == Fail(
        reason="the model ended the task as a failure"
    )
    assert run(call(action="answer", text="42")) == Done(result="42")


def test_reply_shapes() -> None:
    click = {
        "name": "computer_use",
        "arguments": {"action": "left_click", "coordinate": [644, 406]},
    }
    expected = [a.Click(x=640, y=400)]
    shapes = [
        f"<tool_call>{json.dumps(click)}</tool_call>",
        f"<tool_call>\n{json.dumps(click)}",  # no closing tag
        f"<tool_call>\n```json\n{json.dumps(click)}\n```\n</tool_call>",  # fenced inside
        json.dumps(click),  # bare JSON
        f"I will click.\n```json\n{json.dumps(click)}\n```",  # bare, fenced, after prose
        json.dumps(click["arguments"]),  # only the arguments
        json.dumps({**click, "arguments": json.dumps(click["arguments"])}),  # a JSON string
        json.dumps({"name": "computer", "arguments": click["arguments"]}),
    ]
    for text in shapes:
        assert act(text).actions == expected, text


def test_several_calls_in_order_and_the_thought() -> None:
    text = (
        "<think>The terminal is open.</think>\nI will type the command.\n"
        + call(action="left_click", coordinate=[644, 406])
        + "\n"
        + call(action="type", text="ls\n")
        + "\n"
        + call(action="key", keys=["ctrl", "l"])
    )
    d = act(text)
    assert d.actions == [
        a.Click(x=640, y=400),
        a.TypeText(text="ls\n"),
        a.KeyPress(keys=["ctrl", "l"]),
    ]
    assert d.thought == "The terminal is open.\nI will type the command."


def test_parse_reply_with_a_chat_completion_dict() -> None:
    content = "Click the icon.\n" + call(action="double_click", coordinate=[500, 500])
    body = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    # Qwen3-VL, 0..1000 on 1920x1080: 1001*1920 // 2000 = 960, 1001*1080 // 2000 = 540.
    d = parse_reply("qwen-vl", body, (1000, 1000), (1920, 1080))
    assert d == Act(actions=[a.DoubleClick(x=960, y=540)], thought="Click the icon.")
    # Qwen2.5-VL at 1288x812 on 1280x800: 1001*1280 // 2576 = 497, 1001*800 // 1624 = 493.
    d = parse_reply("qwen-vl", content, (1288, 812), (1280, 800))
    assert isinstance(d, Act) and d.actions == [a.DoubleClick(x=497, y=493)]


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (call(action="fly"), ["unknown action 'fly'", "left_click", "terminate"]),
        (call(action="left_click", coordinate=[1289, 1]), ['"left_click"', "outside"]),
        (call(action="left_click", coordinate=[-1, 1]), ["outside"]),
        (call(action="left_click", coordinate=[1]), ["[x, y]"]),
        (call(action="left_click", coordinate=["a", "b"]), ["two numbers"]),
        (call(action="mouse_move"), ["needs coordinate"]),
        (call(action="key"), ["keys"]),
        (call(action="key", keys=[1, 2]), ["key names"]),
        (call(action="type"), ["text"]),
        (call(action="scroll"), ["pixels"]),
        (call(action="wait", time=1000), ["0 to 300 seconds"]),
        (call(action="terminate", status="maybe"), ["'success' or 'failure'"]),
        (call(action="answer"), ["text"]),
        (
            call(action="left_click", coordinate=[1, 1])
            + call(action="terminate", status="success"),
            ["must come alone"],
        ),
        (
            call(action="answer", text="x") + call(action="left_click", coordinate=[1, 1]),
            ["must be the last"],
        ),
        ('<tool_call>{"name": "browser", "arguments": {}}</tool_call>', ["unknown function"]),
        ('<tool_call>{"name": "computer_use"}</tool_call>', ["arguments with an action"]),
        ("<tool_call>not json at all</tool_call>", ["not a JSON object", "<tool_call>"]),
        ('<tool_call>["a list"]</tool_call>', ["not a JSON object"]),
        ("I would click the button.", ["calls no function", "<tool_call>"]),
        ("", ["no text"]),
        (None, ["no text"]),
    ],
)
def test_malformed_replies_are_retries_with_a_useful_error(reply: Any, words: list[str]) -> None:
    e = error(reply)
    for word in words:
        assert word in e, e


def test_a_retry_keeps_the_thought() -> None:
    d = run("Let me fly.\n" + call(action="fly"))
    assert isinstance(d, Retry) and d.thought == "Let me fly."


def mobile(**arguments: Any) -> str:
    return (
        "<tool_call>" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "</tool_call>"
    )


def test_mobile_use_acted_out_on_the_desktop() -> None:
    # Qwen's mobile-agent cookbooks call `mobile_use`; what maps onto a desktop is done there.
    assert act(mobile(action="click", coordinate=[644, 406])).actions == [a.Click(x=640, y=400)]
    assert act(mobile(action="long_press", coordinate=[644, 406], time=2)).actions == [
        a.MouseDown(x=640, y=400),
        a.Wait(duration_s=2.0),
        a.MouseUp(x=640, y=400),
    ]
    # swipe (100, 200) -> (644, 406): 201*1280 // 2576 = 99, 401*800 // 1624 = 197.
    assert act(mobile(action="swipe", coordinate=[100, 200], coordinate2=[644, 406])).actions == [
        a.Drag(path=[a.Point(x=99, y=197), a.Point(x=640, y=400)])
    ]
    assert act(mobile(action="type", text="hi")).actions == [a.TypeText(text="hi")]
    assert act(mobile(action="key", text="volume_up")).actions == [a.KeyPress(keys=["volume_up"])]
    assert act(mobile(action="system_button", button="Enter")).actions == [
        a.KeyPress(keys=["Return"])
    ]
    assert act(mobile(action="system_button", button="Back")).actions == [
        a.KeyPress(keys=["XF86Back"])
    ]
    assert run(mobile(action="terminate", status="success")) == Done()
    assert "no 'home' button" in error(mobile(action="system_button", button="Home"))
    assert "cannot be done on this desktop" in error(mobile(action="open", text="Settings"))


def test_deeply_nested_json_is_a_retry() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert "not a JSON object" in error(f"<tool_call>{deep}</tool_call>")
    assert "calls no function" in error("{" + '"a": ' * 30_000 + "1" + "}" * 30_000)
    arguments = json.dumps({"name": "computer_use", "arguments": deep})
    assert "not a JSON object" in error(f"<tool_call>{arguments}</tool_call>")
