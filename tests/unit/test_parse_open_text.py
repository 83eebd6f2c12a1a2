"""What the text-protocol parsers share (``_parse_text``): key names, the actions of a reply
with its last point and held keys, and the decision; plus the examples in the parsers'
docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest

from orchestrator import actions as a
from orchestrator.brains._parse_text import (
    MAX_THOUGHT_CHARS,
    ActionSequence,
    ReplyError,
    cap,
    decide,
    key_name,
)
from orchestrator.coords import Mapper
from orchestrator.domain import Act, Ask, Done, Retry

MODULES = ["_parse_text", "_parse_uitars", "_parse_qwen", "_parse_opencua"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"orchestrator.brains.{name}")
    failed, attempted = doctest.testmod(module)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ctrlleft", "Control_L"),
        ("shiftright", "Shift_R"),
        ("altleft", "Alt_L"),
        ("winleft", "Super_L"),
        ("optionleft", "Alt_L"),
        ("num0", "KP_0"),
        ("num9", "KP_9"),
        ("prntscrn", "Print"),
        ("add", "KP_Add"),
        ("nexttrack", "XF86AudioNext"),
        # Names the desktop already knows stay as written (it resolves aliases itself).
        ("enter", "enter"),
        ("Return", "Return"),
        ("ctrl", "ctrl"),
        ("page_down", "page_down"),
        ("f5", "f5"),
        (" ", " "),
        ("A", "A"),
        (" esc ", "esc"),
    ],
)
def test_key_names(name: str, expected: str) -> None:
    assert key_name(name) == expected


def test_every_mapped_key_name_is_known_to_the_desktop() -> None:
    from orchestrator.brains import _parse_text
    from orchestrator.desktop._keys import parse_keys  # the desktop's own resolver

    for name in _parse_text._PYAUTOGUI_KEYS:
        assert parse_keys([key_name(name)]), name


def test_held_keys_and_the_last_point() -> None:
    seq = ActionSequence(Mapper((100, 100), (100, 100)))
    seq.key_down("ctrl")
    seq.click("click", seq.at(10, 10))
    seq.drag(None, seq.at(20, 20))  # from the last point, with ctrl held
    seq.key_up("ctrl")
    assert seq.finish() == [
        a.Click(x=10, y=10, keys=["ctrl"]),
        a.Drag(path=[a.Point(x=10, y=10), a.Point(x=20, y=20)], keys=["ctrl"]),
    ]


def test_scroll_is_clamped_and_long_text_is_split() -> None:
    seq = ActionSequence(Mapper((100, 100), (100, 100)), cursor=(5, 5))
    seq.scroll(None, 0, -500)
    seq.type("x" * (a.MAX_TYPE_CHARS + 1))
    actions = seq.finish()
    assert actions[0] == a.Scroll(x=5, y=5, scroll_y=-100)
    assert [len(t.text) for t in actions[1:]] == [a.MAX_TYPE_CHARS, 1]  # type: ignore[union-attr]


def test_refusals() -> None:
    seq = ActionSequence(Mapper((100, 100), (100, 100)))
    with pytest.raises(ReplyError, match="outside"):
        seq.at(101, 5)
    with pytest.raises(ReplyError, match="two numbers"):
        seq.at("1", 5)
    with pytest.raises(ReplyError, match="two numbers"):
        seq.at(True, 5)
    with pytest.raises(ReplyError, match="not known"):
        seq.click("click", None)
    with pytest.raises(ReplyError, match="key names"):
        seq.press([""])
    with pytest.raises(ReplyError, match="0 to 300"):
        seq.wait(301)
    seq.key_down("alt")
    with pytest.raises(ReplyError, match="cannot type"):
        seq.type("x")
    with pytest.raises(ReplyError, match="held keys"):
        seq.mouse(False, None)
    with pytest.raises(ReplyError, match="held down"):
        seq.finish()


def test_decide() -> None:
    click = a.Click(x=1, y=1)
    assert decide([click], None, " why ") == Act(actions=[click], thought="why")
    assert decide([], Done(result="ok"), "t") == Done(result="ok", thought="t")
    assert decide([], Ask(question="q?"), None) == Ask(question="q?")
    d = decide([click], Done(), "t", "finished()")
    assert isinstance(d, Retry) and "finished() must come alone" in d.error and d.thought == "t"


def test_cap() -> None:
    assert cap(None) is None and cap("  ") is None and cap(" a ") == "a"
    long = cap("y" * (MAX_THOUGHT_CHARS + 5))
    assert long is not None and len(long) == MAX_THOUGHT_CHARS and long.endswith("…")
