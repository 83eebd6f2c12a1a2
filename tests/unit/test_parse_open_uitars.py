"""UI-TARS replies to decisions in screen pixels: every action, every point format, at
UI-TARS-1.5's resized grid (1288x812 for a 1280x800 screen) and UI-TARS-1.0's 0..1000,
on 1280x800 and 1920x1080 screens; malformed replies are Retries the model can act on.

Expected pixels are worked out by hand from ``Mapper``'s rule: a whole model pixel ``n`` of an
``M``-wide space lands on screen pixel ``(2n + 1) * S // (2M)`` of an ``S``-wide screen; a
non-whole value ``v`` on ``floor(v * S / M)``; ``n == M`` is the last pixel.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.brains import parse_reply
from orchestrator.brains._parse_uitars import SCROLL_NOTCHES, WAIT_S, parse
from orchestrator.coords import Mapper
from orchestrator.domain import Act, Ask, Done, Retry

GRID_1280 = ((1288, 812), (1280, 800))
NORM_1280 = ((1000, 1000), (1280, 800))
GRID_1920 = ((1288, 812), (1920, 1080))
NORM_1920 = ((1000, 1000), (1920, 1080))

# The model point (150, 250) in each space, on each screen:
# 1288x812 -> 1280x800: x = 301*1280 // 2576 = 149, y = 501*800 // 1624 = 246
# 1000x1000 -> 1280x800: x = 301*1280 // 2000 = 192, y = 501*800 // 2000 = 200
# 1288x812 -> 1920x1080: x = 301*1920 // 2576 = 224, y = 501*1080 // 1624 = 333
# 1000x1000 -> 1920x1080: x = 301*1920 // 2000 = 288, y = 501*1080 // 2000 = 270
P150_250 = {
    GRID_1280: (149, 246),
    NORM_1280: (192, 200),
    GRID_1920: (224, 333),
    NORM_1920: (288, 270),
}
# ... and (250, 350):
# 1288x812 -> 1280x800: 501*1280 // 2576 = 248, 701*800 // 1624 = 345
# 1000x1000 -> 1280x800: 501*1280 // 2000 = 320, 701*800 // 2000 = 280
# 1288x812 -> 1920x1080: 501*1920 // 2576 = 373, 701*1080 // 1624 = 466
# 1000x1000 -> 1920x1080: 501*1920 // 2000 = 480, 701*1080 // 2000 = 378
P250_350 = {
    GRID_1280: (248, 345),
    NORM_1280: (320, 280),
    GRID_1920: (373, 466),
    NORM_1920: (480, 378),
}
SPACES = list(P150_250)

# (150, 250) written in every point format UI-TARS and Doubao use (boxes: their centre).
POINT_FORMATS = [
    "start_box='(150,250)'",
    "start_box='(150, 250)'",
    "start_box='<|box_start|>(150,250)<|box_end|>'",
    "point='<point>150 250</point>'",
    "start_point='<point>150 250</point>'",
    "start_box='<bbox>100 200 200 300</bbox>'",
    "start_box='[100,200,200,300]'",
    "start_box='(100,200,200,300)'",
    "start_box='(100,200)(200,300)'",
    'start_box="(150,250)"',
    "start_box=(150,250)",
]


def run(text: Any, space: tuple[tuple[int, int], tuple[int, int]], **kw: Any) -> Any:
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
@pytest.mark.parametrize("point", POINT_FORMATS)
def test_every_point_format_lands_on_the_same_pixel(point: str, space: Any) -> None:
    x, y = P150_250[space]
    d = act(f"Thought: click it\nAction: click({point})", space)
    assert d.actions == [a.Click(x=x, y=y)]


@pytest.mark.parametrize("space", SPACES)
def test_each_mouse_action(space: Any) -> None:
    (x, y), (ex, ey) = P150_250[space], P250_350[space]
    box, end = "start_box='(150,250)'", "end_box='(250,350)'"
    cases = {
        f"click({box})": a.Click(x=x, y=y),
        f"left_single({box})": a.Click(x=x, y=y),
        f"left_double({box})": a.DoubleClick(x=x, y=y),
        f"right_single({box})": a.Click(x=x, y=y, button="right"),
        f"hover({box})": a.Move(x=x, y=y),
        f"drag({box}, {end})": a.Drag(path=[a.Point(x=x, y=y), a.Point(x=ex, y=ey)]),
        f"select({box}, {end})": a.Drag(path=[a.Point(x=x, y=y), a.Point(x=ex, y=ey)]),
        "drag(start_point='<point>150 250</point>', end_point='<point>250 350</point>')": a.Drag(
            path=[a.Point(x=x, y=y), a.Point(x=ex, y=ey)]
        ),
    }
    for call, expected in cases.items():
        assert act(f"Thought: t\nAction: {call}", space).actions == [expected], call


def test_the_far_edge_and_a_half_pixel() -> None:
    # (1288, 812) is the far edge of the grid: the last screen pixel.
    assert act("Action: click(start_box='(1288,812)')").actions == [a.Click(x=1279, y=799)]
    # A box of odd width centres on 100.5: floor(100.5 * 1280 / 1000) = 128, * 800 -> 80.
    d = act("Action: click(start_box='[100,100,101,101]')", NORM_1280)
    assert d.actions == [a.Click(x=128, y=80)]


@pytest.mark.parametrize("space", SPACES)
def test_scroll_directions_at_a_point(space: Any) -> None:
    x, y = P150_250[space]
    n = SCROLL_NOTCHES
    for direction, (dx, dy) in {
        "up": (0, -n),
        "down": (0, n),
        "left": (-n, 0),
        "right": (n, 0),
    }.items():
        d = act(f"Action: scroll(start_box='(150,250)', direction='{direction}')", space)
        assert d.actions == [a.Scroll(x=x, y=y, scroll_x=dx, scroll_y=dy)], direction


def test_scroll_without_a_point() -> None:
    # No point: at the known cursor, else the middle of the screen.
    d = act("Action: scroll(direction='down')", GRID_1920, cursor=(10, 20))
    assert d.actions == [a.Scroll(x=10, y=20, scroll_y=SCROLL_NOTCHES)]
    d = act("Action: scroll(direction='up')", GRID_1920)
    assert d.actions == [a.Scroll(x=960, y=540, scroll_y=-SCROLL_NOTCHES)]


def test_keys() -> None:
    assert act("Action: hotkey(key='ctrl c')").actions == [a.KeyPress(keys=["ctrl", "c"])]
    assert act("Action: hotkey(key='ctrl shift t')").actions == [
        a.KeyPress(keys=["ctrl", "shift", "t"])
    ]
    assert act("Action: hotkey(hotkey='alt f4')").actions == [a.KeyPress(keys=["alt", "f4"])]
    assert act("Action: press(key='enter')").actions == [a.KeyPress(keys=["enter"])]
    assert act("Action: press(key='arrowleft')").actions == [a.KeyPress(keys=["arrowleft"])]
    assert act("Action: press(key='ctrlleft')").actions == [a.KeyPress(keys=["Control_L"])]
    # keydown ... keyup holds the key for the actions in between.
    d = act("Action: keydown(key='shift')\n\nclick(start_box='(644,406)')\n\nkeyup(key='shift')")
    assert d.actions == [a.Click(x=640, y=400, keys=["shift"])]
    d = act("Action: keydown(key='ctrl')\n\npress(key='a')\n\nkeyup(key='ctrl')")
    assert d.actions == [a.KeyPress(keys=["ctrl", "a"])]
    # Held and released with nothing in between: pressed once.
    assert act("Action: keydown(key='esc')\n\nkeyup(key='esc')").actions == [
        a.KeyPress(keys=["esc"])
    ]


def test_type_content_with_escapes_and_enter() -> None:
    cases = {
        "type(content='hello')": "hello",
        "type(content='it\\'s \\\"quoted\\\"')": 'it\'s "quoted"',
        "type(content='ls -la\\n')": "ls -la\n",  # a trailing \n presses Return
        "type(content='line one\nline two')": "line one\nline two",  # a real newline
        "type(content='C:\\\\Users')": "C:\\Users",
        "type(content='it's fine')": "it's fine",  # an unescaped quote stays text
        "type(content=\"say 'hi', then go\")": "say 'hi', then go",
        "type(content='a), b')": "a), b",
    }
    for call, text in cases.items():
        assert act(f"Thought: type\nAction: {call}").actions == [a.TypeText(text=text)], call


def test_wait_finished_call_user() -> None:
    assert act("Thought: loading\nAction: wait()").actions == [a.Wait(duration_s=WAIT_S)]
    d = run("Thought: all done\nAction: finished(content='The file is saved.')", GRID_1280)
    assert d == Done(result="The file is saved.", thought="all done")
    d = run("Action: finished()", GRID_1280)
    assert isinstance(d, Done) and d.result == ""
    d = run("Thought: I need the password to log in.\nAction: call_user()", GRID_1280)
    assert isinstance(d, Ask) and d.question == "I need the password to log in."
    d = run("Action: call_user()", GRID_1280)
    assert isinstance(d, Ask) and d.question  # a fixed sentence when there is no thought


def test_several_actions_in_order() -> None:
    text = (
        "Thought: open the terminal and list files\n"
        "Action: click(start_box='(644,406)')\n\n"
        "type(content='ls\\n')\n\n"
        "hotkey(key='ctrl l')"
    )
    d = act(text)
    assert d.actions == [
        a.Click(x=640, y=400),
        a.TypeText(text="ls\n"),
        a.KeyPress(keys=["ctrl", "l"]),
    ]
    assert d.thought == "open the terminal and list files"


def test_thought_extraction() -> None:
    assert act("Thought: first line\nsecond line\nAction: wait()").thought == (
        "first line\nsecond line"
    )
    text = "Reflection: it failed\nAction_Summary: try again\nAction: wait()"
    assert act(text).thought == "Reflection: it failed\nAction_Summary: try again"
    # A full-width colon, as the desktop app's parser accepts.
    assert act("Thought: x\nAction：wait()").actions == [a.Wait(duration_s=WAIT_S)]
    # "Action:" inside the thought's prose does not start the actions.
    d = act("Thought: the next Action: is a click\nAction: click(start_box='(644,406)')")
    assert d.actions == [a.Click(x=640, y=400)]
    assert d.thought == "the next Action: is a click"
    # Capped at 20,000 characters.
    long = act("Thought: " + "x" * 30_000 + "\nAction: wait()").thought
    assert long is not None and len(long) == 20_000


def test_a_chat_completion_dict_and_parse_reply() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Thought: open it\nAction: click(start_box='(500,500)')",
                }
            }
        ]
    }
    # 0..1000 on 1920x1080: x = 1001*1920 // 2000 = 960, y = 1001*1080 // 2000 = 540.
    d = parse_reply("uitars", body, (1000, 1000), (1920, 1080))
    assert d == Act(actions=[a.Click(x=960, y=540)], thought="open it")
    # The same reply as text, at UI-TARS-1.5's grid for 1920x1080 (1932x1092):
    # x = 1001*1920 // 3864 = 497, y = 1001*1080 // 2184 = 495.
    d = parse_reply("uitars", body["choices"][0]["message"]["content"], (1932, 1092), (1920, 1080))
    assert isinstance(d, Act) and d.actions == [a.Click(x=497, y=495)]


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ("Action: frobnicate(start_box='(1,1)')", ["unknown action 'frobnicate'", "click"]),
        ("Action: open_app(app_name='x')", ["unknown action 'open_app'", "left_double"]),
        ("Action: click(start_box='(1289,5)')", ["click(start_box='(1289,5)')", "outside"]),
        ("Action: click(start_box='(-1,5)')", ["outside"]),
        ("Action: click()", ["click() needs start_box"]),
        ("Action: click(start_box='(12)')", ["is not a point"]),
        ("Action: drag(start_box='(1,1)')", ["end_box"]),
        ("Action: scroll(direction='sideways')", ["up, down, left or right"]),
        ("Action: hotkey()", ["needs key="]),
        ("Action: keydown(key='shift')", ["'shift' is held down"]),
        ("Action: keyup(key='shift')", ["not held down"]),
        ("Action: type(content='unterminated", ["not closed"]),
        ("Action: click(start_box='(1,1)')\n\nfinished()", ["finished() must come alone"]),
        ("Action: finished()\n\nclick(start_box='(1,1)')", ["finished() must be the last"]),
        ("Action: click start_box", ["cannot read the action"]),
        ("Action: click(1, 2)", ["keyword arguments"]),
        ("I think I should click the button.", ["no `Action:` line", "Thought:"]),
        ("Thought: hmm\nAction:", ["no action after"]),
        ("", ["no text"]),
        ({"choices": []}, ["no text"]),
        (None, ["no text"]),
        (42, ["no text"]),
    ],
)
def test_malformed_replies_are_retries_with_a_useful_error(reply: Any, words: list[str]) -> None:
    e = error(reply)
    for word in words:
        assert word in e, e


def test_a_retry_keeps_the_thought() -> None:
    d = run("Thought: I will fly\nAction: fly()", GRID_1280)
    assert isinstance(d, Retry) and d.thought == "I will fly"


def test_replies_without_an_action_label_but_only_calls() -> None:
    assert act("click(start_box='(644,406)')").actions == [a.Click(x=640, y=400)]


def test_text_after_a_call_on_its_line_is_ignored() -> None:
    # A server that leaves the end-of-turn token in: the quote still closes at "')".
    d = act("Thought: t\nAction: click(start_box='(644,406)')<|im_end|>")
    assert d.actions == [a.Click(x=640, y=400)]
    d = act("Action: type(content='it's ok') and more")
    assert d.actions == [a.TypeText(text="it's ok")]


def test_doubao_omni_reply_tags_are_not_in_the_thought() -> None:
    # Shape of the omni reply quoted in UI-TARS-desktop's action-parser tests.
    tag = "think_never_used_51bce0c785ca2f68081bfa7d91973934"
    text = (
        f"<{tag}>The search box is not focused; click it first.</{tag}>\n"
        "<computer_env>\nAction: click(point='<point>400 435</point>')\n</computer_env>"
    )
    d = run(text, NORM_1920)
    # 0..1000 on 1920x1080: 801*1920 // 2000 = 768, 871*1080 // 2000 = 470.
    assert d == Act(
        actions=[a.Click(x=768, y=470)],
        thought="The search box is not focused; click it first.",
    )


def test_an_action_label_before_each_call() -> None:
    text = "Thought: t\nAction: click(start_box='(644,406)')\nAction: type(content='x')"
    assert act(text).actions == [a.Click(x=640, y=400), a.TypeText(text="x")]


def test_doubao_omni_answer_is_done() -> None:
    text = "<think>A simple sum; no need to act.</think>\n<answer>\nThe answer is 2.\n</answer>"
    assert run(text, NORM_1920) == Done(
        result="The answer is 2.", thought="A simple sum; no need to act."
    )


def test_o1_style_tags_are_not_in_the_thought() -> None:
    text = (
        "<Thought>Close the dialog.</Thought>\nAction_Summary: close it\n"
        "Action: click(start_box='(644,406)')\n</Output>"
    )
    d = act(text)
    assert d.actions == [a.Click(x=640, y=400)]
    assert d.thought == "Close the dialog.\nAction_Summary: close it"
