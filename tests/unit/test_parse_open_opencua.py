"""OpenCUA replies (a ``## Code`` block of pyautogui calls) to decisions in screen pixels: every
call, in model pixels (1288x812 for 1280x800, 1932x1092 for 1920x1080) and in 0..1
fractions; code that is anything but literal pyautogui/computer calls is a Retry and nothing
of it runs.

Expected pixels by hand: a whole model pixel ``n`` of an ``M``-wide space lands on screen pixel
``(2n + 1) * S // (2M)``; a fraction ``f`` (whose ``f * M`` is not whole) on ``floor(f * S)``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.brains import parse_reply
from orchestrator.brains._parse_opencua import WAIT_S, parse, read_calls
from orchestrator.brains._parse_text import ReplyError
from orchestrator.coords import Mapper
from orchestrator.domain import Act, Done, Fail, Retry

GRID_1280 = ((1288, 812), (1280, 800))
GRID_1920 = ((1932, 1092), (1920, 1080))
CROSS_1920 = ((1288, 812), (1920, 1080))
# Model pixel (644, 406):
# 1288x812 -> 1280x800: 1289*1280 // 2576 = 640, 813*800 // 1624 = 400
# 1932x1092 -> 1920x1080: 1289*1920 // 3864 = 640, 813*1080 // 2184 = 402
# 1288x812 -> 1920x1080: 1289*1920 // 2576 = 960, 813*1080 // 1624 = 540
P644 = {GRID_1280: (640, 400), GRID_1920: (640, 402), CROSS_1920: (960, 540)}
# Model pixel (100, 200):
# 1288x812 -> 1280x800: 201*1280 // 2576 = 99, 401*800 // 1624 = 197
# 1932x1092 -> 1920x1080: 201*1920 // 3864 = 99, 401*1080 // 2184 = 198
# 1288x812 -> 1920x1080: 201*1920 // 2576 = 149, 401*1080 // 1624 = 266
P100 = {GRID_1280: (99, 197), GRID_1920: (99, 198), CROSS_1920: (149, 266)}
SPACES = list(P644)


def reply(code: str, thought: str = "I click it.", action: str = "Click the icon") -> str:
    return f"## Thought\n{thought}\n\n## Action\n{action}\n\n## Code\n```python\n{code}\n```\n"


def run(text: Any, space: Any = GRID_1280, **kw: Any) -> Any:
    return parse(text, Mapper(*space), **kw)


def act(code: str, space: Any = GRID_1280, **kw: Any) -> Act:
    decision = run(reply(code), space, **kw)
    assert isinstance(decision, Act), decision
    return decision


def error(text: str, space: Any = GRID_1280) -> str:
    decision = run(text, space)
    assert isinstance(decision, Retry), decision
    return decision.error


@pytest.mark.parametrize("space", SPACES)
def test_each_mouse_call_in_model_pixels(space: Any) -> None:
    x, y = P644[space]
    ex, ey = P100[space]
    cases = {
        "pyautogui.click(x=644, y=406)": [a.Click(x=x, y=y)],
        "pyautogui.click(644, 406)": [a.Click(x=x, y=y)],
        "pyautogui.click((644, 406))": [a.Click(x=x, y=y)],
        "pyautogui.click(644, 406, clicks=2)": [a.DoubleClick(x=x, y=y)],
        "pyautogui.click(644, 406, clicks=3, button='right')": [
            a.TripleClick(x=x, y=y, button="right")
        ],
        "pyautogui.click(x=644, y=406, button='middle')": [a.Click(x=x, y=y, button="middle")],
        "pyautogui.doubleClick(x=644, y=406)": [a.DoubleClick(x=x, y=y)],
        "pyautogui.tripleClick(x=644, y=406)": [a.TripleClick(x=x, y=y)],
        "computer.triple_click(x=644, y=406)": [a.TripleClick(x=x, y=y)],
        "pyautogui.rightClick(x=644, y=406)": [a.Click(x=x, y=y, button="right")],
        "pyautogui.middleClick(644, 406)": [a.Click(x=x, y=y, button="middle")],
        "pyautogui.moveTo(x=644, y=406)": [a.Move(x=x, y=y)],
        "pyautogui.moveTo(644, 406)\npyautogui.dragTo(100, 200, duration=0.5)": [
            a.Move(x=x, y=y),
            a.Drag(path=[a.Point(x=x, y=y), a.Point(x=ex, y=ey)]),
        ],
        "pyautogui.mouseDown(644, 406)\npyautogui.mouseUp(100, 200, button='left')": [
            a.MouseDown(x=x, y=y),
            a.MouseUp(x=ex, y=ey),
        ],
        "pyautogui.scroll(-3, x=644, y=406)": [a.Scroll(x=x, y=y, scroll_y=3)],
        "pyautogui.scroll(5, 644, 406)": [a.Scroll(x=x, y=y, scroll_y=-5)],
        "pyautogui.hscroll(2, x=644, y=406)": [a.Scroll(x=x, y=y, scroll_x=2)],
        "pyautogui.moveTo(644, 406)\npyautogui.scroll(-54)": [
            a.Move(x=x, y=y),
            a.Scroll(x=x, y=y, scroll_y=54),
        ],
    }
    for code, expected in cases.items():
        assert act(code, space).actions == expected, code


def test_fractions_of_the_screen() -> None:
    # From OpenCUA's AgentNetBench sample data: every coordinate <= 1 and not whole.
    code = (
        "pyautogui.moveTo(x=0.328, y=0.4697)\npyautogui.dragTo(x=0.5025, y=0.6039, button='left')"
    )
    # 1280x800: floor(0.328*1280) = 419, floor(0.4697*800) = 375, 643, 483.
    assert act(code).actions == [
        a.Move(x=419, y=375),
        a.Drag(path=[a.Point(x=419, y=375), a.Point(x=643, y=483)]),
    ]
    # 1920x1080: floor(0.328*1920) = 629, floor(0.4697*1080) = 507, 964, 652.
    assert act(code, GRID_1920).actions == [
        a.Move(x=629, y=507),
        a.Drag(path=[a.Point(x=629, y=507), a.Point(x=964, y=652)]),
    ]
    # 0.5 of 1288 is model pixel 644 -> 640; 0.25 of 812 is 203 -> 407*800 // 1624 = 200.
    assert act("pyautogui.click(x=0.5, y=0.25)").actions == [a.Click(x=640, y=200)]
    # Whole numbers only (0 and 1 too) are pixels: (1, 1) -> 3*1280 // 2576 = 1, 3*800 // 1624 = 1.
    assert act("pyautogui.click(x=1, y=1)").actions == [a.Click(x=1, y=1)]
    # A non-whole value above 1 makes them all pixels: floor(1.5*1280/1288) = 1, 0.5 -> 0.
    assert act("pyautogui.click(x=1.5, y=0.5)").actions == [a.Click(x=1, y=0)]


def test_keyboard_calls() -> None:
    cases = {
        "pyautogui.write(message='hello')": [a.TypeText(text="hello")],
        "pyautogui.write('ls -la\\n')": [a.TypeText(text="ls -la\n")],
        "pyautogui.typewrite('abc', interval=0.05)": [a.TypeText(text="abc")],
        'pyautogui.write(message="help me polish this: \'")': [
            a.TypeText(text="help me polish this: '")
        ],
        "pyautogui.typewrite(['a', 'b', 'enter', 'c'])": [
            a.TypeText(text="ab"),
            a.KeyPress(keys=["enter"]),
            a.TypeText(text="c"),
        ],
        "pyautogui.press('enter')": [a.KeyPress(keys=["enter"])],
        "pyautogui.press(keys=['enter'])": [a.KeyPress(keys=["enter"])],
        "pyautogui.press('down', presses=3)": [a.KeyPress(keys=["down"])] * 3,
        "pyautogui.press(['tab', 'tab'])": [a.KeyPress(keys=["tab"])] * 2,
        "pyautogui.hotkey('ctrl', 'c')": [a.KeyPress(keys=["ctrl", "c"])],
        "pyautogui.hotkey(keys=['ctrl', 'V'])": [a.KeyPress(keys=["ctrl", "V"])],
        "pyautogui.hotkey(['ctrl', 'shift', 't'])": [a.KeyPress(keys=["ctrl", "shift", "t"])],
        "pyautogui.hotkey('command', 'a')": [a.KeyPress(keys=["ctrl", "a"])],
        "pyautogui.hotkey('ctrlleft', 'winleft')": [a.KeyPress(keys=["Control_L", "Super_L"])],
        "pyautogui.keyDown('ctrl')\npyautogui.press('a')\npyautogui.keyUp('ctrl')": [
            a.KeyPress(keys=["ctrl", "a"])
        ],
        "pyautogui.keyDown('shift')\npyautogui.click(644, 406)\npyautogui.keyUp('shift')": [
            a.Click(x=640, y=400, keys=["shift"])
        ],
    }
    for code, expected in cases.items():
        assert act(code).actions == expected, code


def test_wait_and_terminate() -> None:
    assert act("computer.wait()").actions == [a.Wait(duration_s=WAIT_S)]
    assert act("computer.wait(5)").actions == [a.Wait(duration_s=5.0)]
    assert act("import time\ntime.sleep(1.5)").actions == [a.Wait(duration_s=1.5)]
    d = run(reply("computer.terminate(status='success')", thought="It is saved."))
    assert d == Done(result="", thought="It is saved.\n\nAction: Click the icon")
    d = run(reply("computer.terminate(status='success', answer='42')"))
    assert isinstance(d, Done) and d.result == "42"
    d = run(reply("computer.terminate(status='failure', answer='No network')"))
    assert isinstance(d, Fail) and d.reason == "No network"
    d = run(reply("computer.terminate('failure')", thought="The site is down."))
    assert isinstance(d, Fail) and "The site is down." in d.reason


def test_dragto_and_clicks_without_a_start() -> None:
    # No earlier point and no cursor: press, move and release where the pointer is.
    assert act("pyautogui.dragTo(644, 406)").actions == [
        a.MouseDown(),
        a.Move(x=640, y=400),
        a.MouseUp(),
    ]
    assert act("pyautogui.dragTo(644, 406)", cursor=(3, 4)).actions == [
        a.Drag(path=[a.Point(x=3, y=4), a.Point(x=640, y=400)])
    ]
    assert act("pyautogui.click()", cursor=(3, 4)).actions == [a.Click(x=3, y=4)]
    assert "pointer's position is not known" in error(reply("pyautogui.click()"))


def test_several_calls_in_order_and_the_thought() -> None:
    code = "pyautogui.click(x=644, y=406)\npyautogui.write(message='ls')\npyautogui.press('enter')"
    d = run(reply(code, thought="The terminal is open."))
    assert isinstance(d, Act)
    assert d.actions == [a.Click(x=640, y=400), a.TypeText(text="ls"), a.KeyPress(keys=["enter"])]
    assert d.thought == "The terminal is open.\n\nAction: Click the icon"
    # Without section headers: the prose around the code; without a fence: pyautogui lines.
    d = run("I will click.\n```python\npyautogui.click(644, 406)\n```")
    assert isinstance(d, Act) and d.thought == "I will click." and len(d.actions) == 1
    d = run("Click the button.\npyautogui.click(644, 406)")
    assert d == Act(actions=[a.Click(x=640, y=400)], thought="Click the button.")


def test_parse_reply_with_a_chat_completion_dict() -> None:
    body = {"choices": [{"message": {"content": reply("pyautogui.click(x=644, y=406)")}}]}
    d = parse_reply("opencua", body, (1288, 812), (1920, 1080))
    assert isinstance(d, Act) and d.actions == [a.Click(x=960, y=540)]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("pyautogui.screenshot()", ["unknown call pyautogui.screenshot", "click"]),
        ("pyautogui.click(x=1289, y=1)", ["pyautogui.click(x=1289, y=1)", "outside"]),
        ("pyautogui.click(x=-1, y=1)", ["outside"]),
        ("pyautogui.click(x=5)", ["both x and y"]),
        ("pyautogui.click(5, 5, clicks=4)", ["clicks"]),
        ("pyautogui.click(5, 5, button='back')", ["left, right or middle"]),
        ("pyautogui.click(5, 5, colour='red')", ["no argument colour"]),
        ("pyautogui.click(1, 2, 3, 4, 5, 6)", ["positional"]),
        ("pyautogui.moveTo()", ["needs x and y"]),
        ("pyautogui.write(message=5)", ["message string"]),
        ("pyautogui.press(keys=5)", ["key name"]),
        ("pyautogui.keyDown('shift')", ["'shift' is held down"]),
        ("pyautogui.keyDown('shift')\npyautogui.write('x')\npyautogui.keyUp('shift')", ["hotkey"]),
        ("computer.terminate(status='done')", ["'success' or 'failure'"]),
        ("computer.wait(seconds=-1)", ["0 to 300"]),
        ("pyautogui.click(5, 5)\ncomputer.terminate(status='success')", ["must come alone"]),
        ("computer.terminate(status='success')\npyautogui.click(5, 5)", ["must be the last"]),
        ("pyautogui.click(10, 10", ["not valid Python"]),
        ("", ["no code"]),
    ],
)
def test_bad_code_is_a_retry_with_a_useful_error(code: str, words: list[str]) -> None:
    e = error(reply(code))
    for word in words:
        assert word in e, e


def test_no_code_at_all() -> None:
    assert "no code" in error("I would click the button.")
    assert "no text" in error("")


UNSAFE = [
    "import os\nos.system('touch {p}')",
    "__import__('os').system('touch {p}')",
    "pyautogui.click(x=__import__('os').system('touch {p}'), y=1)",
    "pyautogui.os.system('touch {p}')",
    "pyautogui.__class__.__init__.__globals__['os'].system('touch {p}')",
    "getattr(pyautogui, 'click')(1, 1)",
    "open('{p}', 'w').write('x')",
    "exec(\"open('{p}', 'w')\")",
    "import subprocess\nsubprocess.run(['touch', '{p}'])",
    "subprocess.run(['touch', '{p}'])",
    "pyautogui.write(message=f\"{{open('{p}', 'w')}}\")",
    "pyautogui.click(*[1, 2])",
    "pyautogui.click(**{{'x': 1, 'y': 2}})",
    "pyautogui.click(x=1 + 1, y=2)",
    "[pyautogui.click(1, 1) for _ in range(3)]",
    "x = pyautogui.click(1, 1)",
    "lambda: open('{p}', 'w')",
    "import pyautogui as p\np.click(1, 1)",
    "from os import system\nsystem('touch {p}')",
    "pyautogui.click(1, 1)\nwhile True: pass",
    "with open('{p}', 'w'): pass",
]


@pytest.mark.parametrize("template", UNSAFE)
def test_unsafe_code_is_a_retry_and_nothing_runs(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentinel = tmp_path / "ran"
    ran: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *args: ran.append(args))
    monkeypatch.setattr(subprocess, "run", lambda *args, **kw: ran.append(args))
    code = "pyautogui.click(5, 5)\n" + template.format(p=sentinel)
    d = run(reply(code))
    assert isinstance(d, Retry), d  # not even the harmless click before it is carried out
    assert "nothing is executed" in d.error or "literal" in d.error or "pyautogui" in d.error
    assert not sentinel.exists()
    assert ran == []


def test_read_calls_refuses_oversized_and_deeply_nested_code() -> None:
    with pytest.raises(ReplyError, match="over"):
        read_calls("pyautogui.press('a')\n" * 2000)
    with pytest.raises(ReplyError):
        read_calls("pyautogui.write(" + "[" * 5000 + "]" * 5000 + ")")


def test_a_fence_with_any_language_label() -> None:
    # OpenCUA's published OSWorld trajectories have ```code fences and "## Action:" headers.
    text = (
        "# Step 6:\n## Action:\nTerminate the task as successful.\n\n"
        "## Code:\n```code\ncomputer.terminate(status='success')\n```\n"
    )
    assert run(text) == Done(thought="Action: Terminate the task as successful.")
    assert act("pyautogui.click(644, 406)").actions == [a.Click(x=640, y=400)]
    d = run("## Code\n```\npyautogui.click(644, 406)\n```")
    assert isinstance(d, Act) and d.actions == [a.Click(x=640, y=400)]
