"""``parse_reply("chat-tools", body, ...)``: a chat completion calling our function tools to a
decision in screen pixels, pure (no server, no ``openai`` import needed)."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.brains import _parse_chat, parse_reply
from orchestrator.coords import Mapper
from orchestrator.domain import Act, Done, Fail, Retry

SCREEN = (1920, 1080)
MODEL = (1000, 1000)
"""Replies in 0..1000 (a NormSpace config), to see every point mapped."""


def call(name: str, arguments: Any, id: str = "c") -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id, "type": "function", "function": {"name": name, "arguments": args}}


def completion(
    *calls: dict[str, Any],
    content: Any = None,
    refusal: str | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if calls:
        message["tool_calls"] = list(calls)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }


def parse(body: Any, model: tuple[int, int] = MODEL) -> Any:
    return parse_reply("chat-tools", body, model, SCREEN)


def test_actions_are_an_act_in_screen_pixels_with_the_content_as_thought() -> None:
    decision = parse(
        completion(
            call("click", {"x": 500, "y": 500, "button": "right"}),
            call("drag", {"path": [{"x": 0, "y": 0}, {"x": 1000, "y": 1000}]}),
            call("scroll", {"x": 250, "y": 750, "scroll_y": 3}),
            call("type", {"text": "ls\n"}),
            call("shell", {"command": "whoami"}),
            content="Open the menu, then type.",
        )
    )
    assert decision == Act(
        actions=[
            a.Click(x=960, y=540, button="right", keys=[]),
            a.Drag(path=[a.Point(x=0, y=0), a.Point(x=1919, y=1079)], keys=[]),
            a.Scroll(x=480, y=810, scroll_y=3, keys=[]),
            a.TypeText(text="ls\n"),
            a.Shell(command="whoami"),
        ],
        thought="Open the menu, then type.",
    )


def test_native_space_passes_points_through() -> None:
    decision = parse(completion(call("click", {"x": 5, "y": 7})), SCREEN)
    assert decision == Act(actions=[a.Click(x=5, y=7, keys=[])])


def test_content_parts_are_joined_into_the_thought() -> None:
    parts = [{"type": "text", "text": "Look "}, {"type": "text", "text": "first."}]
    assert parse(completion(call("screenshot", {}), content=parts)).thought == "Look first."


def test_done_and_fail_alone_finish() -> None:
    assert parse(completion(call("done", {"result": "made /tmp/a"}), content="ok")) == Done(
        result="made /tmp/a", thought="ok"
    )
    assert parse(completion(call("fail", {"reason": "no disk"}))) == Fail(reason="no disk")


def test_done_along_with_actions_is_ignored_and_answered() -> None:
    body = completion(call("wait", {}, id="w"), call("done", {"result": "x"}, id="d"))
    reading = _parse_chat.read(body, Mapper(model_size=MODEL, screen_size=SCREEN))
    assert reading.decision == Act(actions=[a.Wait()])
    assert reading.calls[0].action == 0 and reading.calls[1].action is None
    assert reading.calls[1].note == _parse_chat.IGNORED_FINAL.format(name="done")


def test_no_tool_call_is_a_retry_with_the_no_tool_call_text() -> None:
    decision = parse(completion(content="I would click the icon."))
    assert decision == Retry(error=_parse_chat.NO_TOOL_CALL, thought="I would click the icon.")
    reading = _parse_chat.read(
        completion(content="cut", finish_reason="length"), Mapper(MODEL, SCREEN)
    )
    assert reading.problem == "the reply called no tool (it was cut off at the token limit)"


def test_a_refusal_fails() -> None:
    assert parse(completion(refusal="I won't.")) == Fail(
        reason="the model refused to act: I won't."
    )


@pytest.mark.parametrize(
    ("tool", "says"),
    [
        (call("click", {"x": 10}), "invalid arguments for click: y: Field required"),
        (call("click", "{oops"), "not valid JSON"),
        (call("click", "[1, 2]"), "must be a JSON object"),
        (call("teleport", {}), "there is no tool named 'teleport'"),
        (call("zoom", {"x0": 0, "y0": 0, "x1": 9, "y1": 9, "width": 9, "height": 9}), "no tool"),
        (call("click", {"x": 1001, "y": 5}), "outside the 1000x1000 space"),
        (call("done", {"result": 5}), "done takes exactly one argument"),
        ({"id": "x", "type": "custom", "custom": {"name": "click"}}, "not a function tool"),
    ],
)
def test_unusable_calls_are_a_retry_saying_why(tool: dict[str, Any], says: str) -> None:
    decision = parse(completion(call("wait", {}), tool, content="hm"))
    assert isinstance(decision, Retry)
    assert says in decision.error
    assert decision.thought == "hm"


def test_done_and_fail_together_are_a_retry() -> None:
    decision = parse(completion(call("done", {"result": "a"}), call("fail", {"reason": "b"})))
    assert (
        isinstance(decision, Retry)
        and "only one of `done`, `fail` and `ask_user`" in decision.error
    )


@pytest.mark.parametrize("body", [{"choices": []}, {}, "text", {"choices": ["x"]}])
def test_a_body_without_choices_is_a_retry(body: Any) -> None:
    decision = parse(body)
    assert isinstance(decision, Retry) and "no choices" in decision.error


def test_the_parser_needs_no_openai_package() -> None:
    code = (
        "import sys; from orchestrator.brains import parse_reply; "
        "d = parse_reply('chat-tools', {'choices': [{'message': {'tool_calls': [{'id': 'c', "
        "'type': 'function', 'function': {'name': 'wait', 'arguments': '{}'}}]}}]}, "
        "(10, 10), (10, 10)); "
        "assert d.kind == 'act'; assert 'openai' not in sys.modules, 'openai imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstring_examples_run() -> None:
    failed, _ = doctest.testmod(_parse_chat)
    assert failed == 0
