"""``parse_reply("openai-responses", body, ...)``: a whole Responses API body to a decision in
screen pixels, pure (no server, no ``openai`` import needed)."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.brains import _parse_responses, parse_reply
from orchestrator.domain import Act, AwaitApproval, Done, Fail, Retry

SCREEN = (1920, 1080)
"""The screen; the model answers in a 1366x768 image (FixedSpace's size for it)."""
MODEL = (1366, 768)


def reply(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": "completed", "output": list(items)} | (
        extra
    )


def computer(action: Any, *, checks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "computer_call",
        "id": "cu_1",
        "call_id": "call_1",
        "status": "completed",
        "pending_safety_checks": checks or [],
    }
    item["actions" if isinstance(action, list) else "action"] = action
    return item


def function(name: str, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"type": "function_call", "call_id": "call_f", "name": name, "arguments": args}


def message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def reasoning(*summaries: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": s} for s in summaries],
    }


def parse(body: Any, model: tuple[int, int] = MODEL) -> Any:
    return parse_reply("openai-responses", body, model, SCREEN)


def test_a_computer_call_is_an_act_in_screen_pixels() -> None:
    decision = parse(reply(computer({"type": "click", "button": "right", "x": 683, "y": 384})))
    assert decision == Act(actions=[a.Click(x=960, y=540, button="right", keys=[])])


def test_every_point_of_every_action_is_mapped() -> None:
    decision = parse(
        reply(
            computer(
                [
                    {"type": "double_click", "x": 0, "y": 0},
                    {"type": "move", "x": 1366, "y": 768},
                    {"type": "drag", "path": [{"x": 683, "y": 384}, {"x": 1000, "y": 500}]},
                    {"type": "scroll", "x": 683, "y": 384, "scroll_x": 0, "scroll_y": -200},
                    {"type": "keypress", "keys": ["ctrl", "s"]},
                    {"type": "type", "text": "hello"},
                    {"type": "wait"},
                    {"type": "screenshot"},
                ]
            )
        )
    )
    assert isinstance(decision, Act)
    assert decision.actions == [
        a.DoubleClick(x=0, y=0, keys=[]),
        a.Move(x=1919, y=1079, keys=[]),  # the far edge is the last pixel
        a.Drag(path=[a.Point(x=960, y=540), a.Point(x=1406, y=703)], keys=[]),
        a.Scroll(x=960, y=540, scroll_y=-2, keys=[]),
        a.KeyPress(keys=["ctrl", "s"]),
        a.TypeText(text="hello"),
        a.Wait(),
        a.TakeScreenshot(),
    ]


def test_native_space_passes_points_through() -> None:
    decision = parse(reply(computer({"type": "click", "button": "left", "x": 5, "y": 7})), SCREEN)
    assert decision == Act(actions=[a.Click(x=5, y=7, keys=[])])


def test_batched_calls_and_a_shell_call_make_one_act_in_order() -> None:
    body = reply(
        computer({"type": "click", "button": "left", "x": 683, "y": 384}),
        function("shell", {"command": "ls /tmp"}),
        computer([{"type": "type", "text": "a"}, {"type": "keypress", "keys": ["enter"]}]),
    )
    decision = parse(body)
    assert isinstance(decision, Act)
    assert [x.type for x in decision.actions] == ["click", "shell", "type", "keypress"]
    assert decision.actions[1] == a.Shell(command="ls /tmp")


def test_the_reasoning_summary_is_the_thought() -> None:
    body = reply(
        reasoning("The terminal is closed.", "Open it from the panel."),
        computer({"type": "click", "button": "left", "x": 10, "y": 760}),
    )
    decision = parse(body)
    assert isinstance(decision, Act)
    assert decision.thought == "The terminal is closed.\nOpen it from the panel."


def test_text_sent_along_with_calls_joins_the_thought() -> None:
    body = reply(
        reasoning("Look first."), message("Taking a screenshot."), computer({"type": "screenshot"})
    )
    assert parse(body).thought == "Look first.\nTaking a screenshot."


def test_a_message_alone_is_done_with_its_text_and_the_reasoning_as_thought() -> None:
    decision = parse(reply(reasoning("All checked."), message("  The file is at /tmp/a.  ")))
    assert decision == Done(result="The file is at /tmp/a.", thought="All checked.")


def test_fail_is_a_failed_decision() -> None:
    decision = parse(reply(reasoning("No network."), function("fail", {"reason": "offline"})))
    assert decision == Fail(reason="offline", thought="No network.")


def test_fail_along_with_actions_is_ignored() -> None:
    body = reply(computer({"type": "wait"}), function("fail", {"reason": "maybe"}))
    reading = _parse_responses.read(body, _mapper())
    assert reading.decision == Act(actions=[a.Wait()])
    assert reading.calls[1].note is not None and "alone" in reading.calls[1].note


def test_pending_safety_checks_await_approval_naming_the_checks() -> None:
    checks = [
        {"id": "sc_1", "code": "malicious_instructions", "message": "The page asks to pay."},
        {"id": "sc_2", "code": "sensitive_domain"},
    ]
    decision = parse(
        reply(
            reasoning("Pay."),
            computer({"type": "click", "button": "left", "x": 683, "y": 384}, checks=checks),
        )
    )
    assert isinstance(decision, AwaitApproval)
    assert decision.actions == [a.Click(x=960, y=540, keys=[])]
    assert decision.reason.startswith(_parse_responses.SAFETY_CHECK_PREFIX)
    assert "malicious_instructions: The page asks to pay." in decision.reason
    assert "sensitive_domain: (no message)" in decision.reason
    assert decision.thought == "Pay."


def test_pending_safety_checks_on_an_unusable_call_fail() -> None:
    checks = [{"id": "sc_1", "code": "malicious_instructions", "message": "x"}]
    decision = parse(reply(computer({"type": "teleport"}, checks=checks)))
    assert isinstance(decision, Fail) and "malicious_instructions" in decision.reason


def test_a_refusal_fails() -> None:
    body = reply({"type": "message", "content": [{"type": "refusal", "refusal": "I can't."}]})
    assert parse(body) == Fail(reason="the model refused to act: I can't.")


def test_a_failed_response_fails_with_its_error() -> None:
    body = reply(status="failed", error={"code": "server_error", "message": "overloaded"})
    assert parse(body) == Fail(reason="the model's response failed: overloaded")


@pytest.mark.parametrize(
    ("item", "says"),
    [
        (computer({"type": "teleport", "x": 1, "y": 1}), "unknown OpenAI computer action type"),
        (computer({"type": "click", "button": "left", "x": 1}), "'y' is required"),
        (computer({"type": "click", "button": "left", "x": 1367, "y": 5}), "outside the 1366x768"),
        (computer({"type": "click", "button": "left", "x": -1, "y": 5}), "outside the 1366x768"),
        (computer({"type": "drag", "path": [{"x": 1, "y": 1}, {"x": 9999, "y": 1}]}), "outside"),
        (function("shell", {"cmd": "ls"}), "command: Field required"),
        (function("shell", "{not json"), "not valid JSON"),
        (function("browse", {"url": "x"}), "there is no function 'browse'"),
        ({"type": "computer_call", "call_id": "c"}, "neither 'action' nor 'actions'"),
    ],
)
def test_unusable_calls_are_a_retry_saying_why(item: dict[str, Any], says: str) -> None:
    decision = parse(reply(reasoning("hm"), item))
    assert isinstance(decision, Retry)
    assert says in decision.error
    assert decision.thought == "hm"


def test_one_bad_call_makes_the_whole_reply_a_retry() -> None:
    body = reply(computer({"type": "wait"}), computer({"type": "teleport"}))
    reading = _parse_responses.read(body, _mapper())
    assert isinstance(reading.decision, Retry)
    assert list(reading.errors) == [1] and len(reading.items) == 2


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (reply(), "neither a call nor text"),
        (reply(reasoning("thinking")), "neither a call nor text"),
        (
            reply(status="incomplete", incomplete_details={"reason": "max_output_tokens"}),
            "incomplete: max_output_tokens",
        ),
        ("not a body", "not a JSON object"),
        ([], "not a JSON object"),
    ],
)
def test_replies_with_nothing_to_do_are_a_retry(body: Any, says: str) -> None:
    decision = parse(body)
    assert isinstance(decision, Retry) and says in decision.error


def _mapper() -> Any:
    from orchestrator.coords import Mapper

    return Mapper(model_size=MODEL, screen_size=SCREEN)


def test_the_parser_needs_no_openai_package() -> None:
    code = (
        "import sys; from orchestrator.brains import parse_reply; "
        "d = parse_reply('openai-responses', {'output': [{'type': 'computer_call', "
        "'call_id': 'c', 'action': {'type': 'wait'}}]}, (10, 10), (10, 10)); "
        "assert d.kind == 'act'; assert 'openai' not in sys.modules, 'openai imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstring_examples_run() -> None:
    failed, _ = doctest.testmod(_parse_responses)
    assert failed == 0
