"""The OpenAI and Anthropic computer-use wire formats, converted to our actions."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.protocols import (
    OPENAI_SCROLL_PX_PER_NOTCH,
    from_anthropic,
    from_openai,
    openai_call_actions,
)

# ---------------------------------------------------------------------- OpenAI


@pytest.mark.parametrize(
    ("wire", "action"),
    [
        (
            {"type": "click", "button": "left", "x": 10, "y": 20},
            a.Click(x=10, y=20, button="left", keys=[]),
        ),
        (
            {"type": "click", "button": "right", "x": 1, "y": 2, "keys": ["CTRL", "SHIFT"]},
            a.Click(x=1, y=2, button="right", keys=["CTRL", "SHIFT"]),
        ),
        (
            {"type": "click", "button": "wheel", "x": 1, "y": 2},
            a.Click(x=1, y=2, button="middle", keys=[]),
        ),
        (
            {"type": "click", "button": "back", "x": 1, "y": 2},
            a.Click(x=1, y=2, button="back", keys=[]),
        ),
        (
            {"type": "click", "button": "forward", "x": 1, "y": 2, "keys": None},
            a.Click(x=1, y=2, button="forward", keys=[]),
        ),
        (
            {"type": "double_click", "x": 3, "y": 4, "keys": ["ALT"]},
            a.DoubleClick(x=3, y=4, keys=["ALT"]),
        ),
        (
            {"type": "drag", "path": [{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6}]},
            a.Drag(path=[a.Point(x=1, y=2), a.Point(x=3, y=4), a.Point(x=5, y=6)], keys=[]),
        ),
        (
            {"type": "drag", "path": [{"x": 1, "y": 2}, {"x": 3, "y": 4}], "keys": ["SHIFT"]},
            a.Drag(path=[a.Point(x=1, y=2), a.Point(x=3, y=4)], keys=["SHIFT"]),
        ),
        ({"type": "keypress", "keys": ["CTRL", "C"]}, a.KeyPress(keys=["CTRL", "C"])),
        ({"type": "keypress", "keys": ["ENTER"]}, a.KeyPress(keys=["ENTER"])),
        ({"type": "move", "x": 7, "y": 8}, a.Move(x=7, y=8, keys=[])),
        ({"type": "move", "x": 7, "y": 8, "keys": ["SHIFT"]}, a.Move(x=7, y=8, keys=["SHIFT"])),
        ({"type": "screenshot"}, a.TakeScreenshot()),
        ({"type": "type", "text": "héllo\n"}, a.TypeText(text="héllo\n")),
        ({"type": "type", "text": ""}, a.TypeText(text="")),
        ({"type": "wait"}, a.Wait(duration_s=1.0)),
    ],
)
def test_openai_actions(wire: dict[str, Any], action: a.Action) -> None:
    assert from_openai(wire) == action


@pytest.mark.parametrize(
    ("scroll_x", "scroll_y", "notches"),
    [
        (0, 300, (0, 3)),
        (0, -300, (0, -3)),
        (0, 1, (0, 1)),  # at least one notch when not zero
        (0, -20, (0, -1)),
        (0, 149, (0, 1)),
        (0, 151, (0, 2)),
        (250, 0, (2, 0)),
        (-100, 100, (-1, 1)),
        (0, 0, (0, 0)),
        (0, 10**9, (0, 100)),  # clamped to the action's limit
    ],
)
def test_openai_scroll_pixels_become_notches(
    scroll_x: int, scroll_y: int, notches: tuple[int, int]
) -> None:
    assert OPENAI_SCROLL_PX_PER_NOTCH == 100
    got = from_openai(
        {"type": "scroll", "x": 5, "y": 6, "scroll_x": scroll_x, "scroll_y": scroll_y}
    )
    assert got == a.Scroll(x=5, y=6, scroll_x=notches[0], scroll_y=notches[1], keys=[])


def test_openai_scroll_keeps_modifiers() -> None:
    got = from_openai(
        {"type": "scroll", "x": 5, "y": 6, "scroll_x": 0, "scroll_y": 100, "keys": ["CTRL"]}
    )
    assert isinstance(got, a.Scroll) and got.keys == ["CTRL"]


def test_openai_accepts_sdk_models_and_ignores_extra_fields() -> None:
    from openai.types.responses.response_computer_tool_call import ActionClick

    sdk = ActionClick(type="click", button="wheel", x=1, y=2)
    assert from_openai(sdk) == a.Click(x=1, y=2, button="middle", keys=[])
    assert from_openai({"type": "wait", "future_field": 1}) == a.Wait()


def test_openai_call_with_one_action_or_a_batch() -> None:
    call: dict[str, Any] = {
        "type": "computer_call",
        "call_id": "c1",
        "action": {"type": "move", "x": 1, "y": 2},
    }
    assert openai_call_actions(call) == [a.Move(x=1, y=2, keys=[])]
    batch = {**call, "action": None, "actions": [{"type": "screenshot"}, {"type": "wait"}]}
    assert openai_call_actions(batch) == [a.TakeScreenshot(), a.Wait()]
    with pytest.raises(ValueError, match="neither"):
        openai_call_actions({"type": "computer_call"})


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"type": "teleport"}, "unknown OpenAI computer action type 'teleport'"),
        ({"x": 1}, "unknown OpenAI computer action type None"),
        ({"type": "click", "button": "thumb", "x": 1, "y": 2}, "unknown button 'thumb'"),
        ({"type": "click", "button": "left", "y": 2}, "'x' is required"),
        ({"type": "click", "button": "left", "x": "1", "y": 2}, "'x' must be an integer"),
        ({"type": "click", "button": "left", "x": True, "y": 2}, "'x' must be an integer"),
        ({"type": "drag", "path": [{"x": 1, "y": 2}]}, "at least two"),
        ({"type": "drag", "path": [{"x": 1, "y": 2}, {"x": 1}]}, r"path\[1\]: 'y' is required"),
        ({"type": "keypress", "keys": []}, "at least one key"),
        ({"type": "keypress", "keys": "CTRL"}, None),  # a bare string is one key: accepted
        ({"type": "keypress", "keys": [1]}, "list of key names"),
        ({"type": "type"}, "'text' must be a string"),
        ({"type": "scroll", "x": 1, "y": 2, "scroll_y": "down"}, "'scroll_y' must be an integer"),
    ],
)
def test_openai_bad_input_raises_value_error(wire: dict[str, Any], message: str | None) -> None:
    if message is None:
        assert from_openai(wire) == a.KeyPress(keys=["CTRL"])
        return
    with pytest.raises(ValueError, match=message):
        from_openai(wire)


def test_openai_out_of_range_values_raise_validation_errors() -> None:
    with pytest.raises(ValueError):
        from_openai({"type": "click", "button": "left", "x": 10**7, "y": 2})
    with pytest.raises(ValueError):
        from_openai("click")


# ---------------------------------------------------------------------- Anthropic


@pytest.mark.parametrize(
    ("wire", "action"),
    [
        ({"action": "key", "text": "ctrl+s"}, a.KeyPress(keys=["ctrl+s"])),
        ({"action": "key", "text": "Return"}, a.KeyPress(keys=["Return"])),
        ({"action": "type", "text": "héllo → 日本\n"}, a.TypeText(text="héllo → 日本\n")),
        ({"action": "mouse_move", "coordinate": [100, 200]}, a.Move(x=100, y=200, keys=[])),
        ({"action": "left_click", "coordinate": [1, 2]}, a.Click(x=1, y=2, keys=[])),
        (
            {"action": "left_click", "coordinate": [1, 2], "text": "shift"},
            a.Click(x=1, y=2, keys=["shift"]),
        ),
        (
            {"action": "left_click", "coordinate": [1, 2], "key": "ctrl"},  # the demo's spelling
            a.Click(x=1, y=2, keys=["ctrl"]),
        ),
        (
            {"action": "right_click", "coordinate": [1, 2]},
            a.Click(x=1, y=2, button="right", keys=[]),
        ),
        (
            {"action": "middle_click", "coordinate": [1, 2]},
            a.Click(x=1, y=2, button="middle", keys=[]),
        ),
        (
            {"action": "double_click", "coordinate": [1, 2], "text": "ctrl+shift"},
            a.DoubleClick(x=1, y=2, keys=["ctrl+shift"]),
        ),
        ({"action": "triple_click", "coordinate": [1, 2]}, a.TripleClick(x=1, y=2, keys=[])),
        (
            {"action": "left_click_drag", "start_coordinate": [1, 2], "coordinate": [30, 40]},
            a.Drag(path=[a.Point(x=1, y=2), a.Point(x=30, y=40)], keys=[]),
        ),
        ({"action": "left_mouse_down"}, a.MouseDown(button="left")),
        ({"action": "left_mouse_up"}, a.MouseUp(button="left")),
        (
            {
                "action": "scroll",
                "coordinate": [5, 6],
                "scroll_direction": "down",
                "scroll_amount": 3,
            },
            a.Scroll(x=5, y=6, scroll_y=3, keys=[]),
        ),
        (
            {
                "action": "scroll",
                "coordinate": [5, 6],
                "scroll_direction": "up",
                "scroll_amount": 2,
            },
            a.Scroll(x=5, y=6, scroll_y=-2, keys=[]),
        ),
        (
            {
                "action": "scroll",
                "coordinate": [5, 6],
                "scroll_direction": "left",
                "scroll_amount": 4,
            },
            a.Scroll(x=5, y=6, scroll_x=-4, keys=[]),
        ),
        (
            {
                "action": "scroll",
                "coordinate": [5, 6],
                "scroll_direction": "right",
                "scroll_amount": 1,
                "text": "shift",
            },
            a.Scroll(x=5, y=6, scroll_x=1, keys=["shift"]),
        ),
        (
            {"action": "hold_key", "text": "shift", "duration": 2},
            a.HoldKey(key="shift", duration_s=2.0),
        ),
        (
            {"action": "hold_key", "text": "ctrl shift", "duration": 0.5},
            a.HoldKey(key="ctrl+shift", duration_s=0.5),
        ),
        ({"action": "wait", "duration": 1.5}, a.Wait(duration_s=1.5)),
        ({"action": "screenshot"}, a.TakeScreenshot()),
        ({"action": "cursor_position"}, a.CursorPosition()),
    ],
)
def test_anthropic_actions(wire: dict[str, Any], action: a.Action) -> None:
    assert from_anthropic(wire) == action


@pytest.mark.parametrize(
    ("wire", "action"),
    [
        ({"action": "left_click"}, a.Click(x=50, y=60, keys=[])),
        (
            {"action": "right_click", "text": "alt"},
            a.Click(x=50, y=60, button="right", keys=["alt"]),
        ),
        ({"action": "double_click"}, a.DoubleClick(x=50, y=60, keys=[])),
        ({"action": "triple_click"}, a.TripleClick(x=50, y=60, keys=[])),
        (
            {"action": "left_click_drag", "coordinate": [70, 80]},  # computer_20241022: from here
            a.Drag(path=[a.Point(x=50, y=60), a.Point(x=70, y=80)], keys=[]),
        ),
        (
            {"action": "scroll", "scroll_direction": "down", "scroll_amount": 5},
            a.Scroll(x=50, y=60, scroll_y=5, keys=[]),
        ),
    ],
)
def test_anthropic_actions_at_the_current_position_use_the_cursor(
    wire: dict[str, Any], action: a.Action
) -> None:
    assert from_anthropic(wire, cursor=a.Point(x=50, y=60)) == action
    assert from_anthropic(wire, cursor=(50, 60)) == action
    with pytest.raises(ValueError, match="current pointer position: pass cursor="):
        from_anthropic(wire)


def test_anthropic_coordinates_win_over_the_cursor() -> None:
    got = from_anthropic({"action": "left_click", "coordinate": [1, 2]}, cursor=(50, 60))
    assert got == a.Click(x=1, y=2, keys=[])


def test_anthropic_negative_coordinates_pass_through_for_the_desktop_to_refuse() -> None:
    # the X layer answers "x=-5 is outside the screen", which the model can read
    assert from_anthropic({"action": "mouse_move", "coordinate": [-5, 3]}) == a.Move(
        x=-5, y=3, keys=[]
    )


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"action": "zoom"}, "unknown Anthropic computer action 'zoom'"),
        ({"text": "a"}, "unknown Anthropic computer action None"),
        ({"action": "key"}, "'text' must be a non-empty string"),
        ({"action": "key", "text": "Down Down Down"}, "one key or combo per action"),
        ({"action": "type"}, "'text' must be a string"),
        ({"action": "mouse_move"}, "'coordinate' is required"),
        ({"action": "mouse_move", "coordinate": [1]}, r"must be \[x, y\]"),
        ({"action": "mouse_move", "coordinate": [1, "2"]}, r"must be \[x, y\]"),
        ({"action": "mouse_move", "coordinate": "1,2"}, r"must be \[x, y\]"),
        ({"action": "left_click_drag", "start_coordinate": [1, 2]}, "'coordinate' is required"),
        (
            {
                "action": "scroll",
                "coordinate": [1, 2],
                "scroll_direction": "in",
                "scroll_amount": 1,
            },
            "'scroll_direction' must be",
        ),
        (
            {
                "action": "scroll",
                "coordinate": [1, 2],
                "scroll_direction": "up",
                "scroll_amount": -1,
            },
            "'scroll_amount' must be a non-negative integer",
        ),
        (
            {"action": "scroll", "coordinate": [1, 2], "scroll_direction": "up"},
            "'scroll_amount' must be",
        ),
        ({"action": "hold_key", "text": "shift"}, "'duration' must be"),
        ({"action": "hold_key", "duration": 1}, "'text' must be"),
        ({"action": "wait", "duration": -1}, "'duration' must be"),
        ({"action": "wait"}, "'duration' must be"),
    ],
)
def test_anthropic_bad_input_raises_value_error(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_anthropic(wire)


def test_anthropic_values_beyond_the_action_limits_raise_validation_errors() -> None:
    with pytest.raises(ValueError):  # pydantic.ValidationError is a ValueError
        from_anthropic({"action": "wait", "duration": 10_000})
    with pytest.raises(ValueError):
        from_anthropic(
            {
                "action": "scroll",
                "coordinate": [1, 2],
                "scroll_direction": "up",
                "scroll_amount": 500,
            }
        )
    with pytest.raises(ValueError, match="JSON object"):
        from_anthropic(["left_click"])  # type: ignore[arg-type]
