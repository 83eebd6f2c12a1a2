"""Hostile model replies: every parser answers a ``Retry`` (never an exception), quickly; a
reply asks for at most ``MAX_ACTIONS`` actions and ``MAX_WAIT_S`` seconds of waiting; long
reports and refusals are cut, not refused."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.brains import _parse_qwen
from orchestrator.brains._open import _calls_as_text
from orchestrator.brains._parse import parse_reply
from orchestrator.brains._parse_anthropic import read as read_anthropic
from orchestrator.brains._parse_chat import read as read_chat
from orchestrator.brains._parse_responses import read as read_responses
from orchestrator.brains._parse_text import MAX_REFUSAL_CHARS
from orchestrator.coords import Mapper
from orchestrator.domain import MAX_ACTIONS, MAX_RESULT_CHARS, Act, Decision, Done, Fail, Retry

SPACE, SCREEN = (1000, 1000), (1920, 1080)
BIG = 10**400
HUGE_DIGITS = "9" * 5000


def _parse(family: Any, reply: Any) -> Decision:
    start = time.perf_counter()
    decision = parse_reply(family, reply, SPACE, SCREEN)
    assert time.perf_counter() - start < 1.0, "a parser took over a second"
    return decision


def _qwen(*args: dict[str, Any]) -> str:
    return "".join(
        f'<tool_call>{{"name": "computer_use", "arguments": {json.dumps(a)}}}</tool_call>'
        for a in args
    )


def _qwen_raw(arguments: str) -> str:
    return f'<tool_call>{{"name": "computer_use", "arguments": {arguments}}}</tool_call>'


def _opencua(code: str) -> str:
    return f"## Thought\nGo.\n## Code\n```python\n{code}\n```"


def _chat(*calls: tuple[str, str]) -> dict[str, Any]:
    tool_calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": args}}
        for i, (n, args) in enumerate(calls)
    ]
    return {"choices": [{"message": {"role": "assistant", "tool_calls": tool_calls}}]}


def _anthropic(*inputs: dict[str, Any], text: str = "") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": f"t{i}", "name": "computer", "input": data}
        for i, data in enumerate(inputs)
    ]
    return {"content": content, "stop_reason": "tool_use" if inputs else "end_turn"}


def _computer_call(*actions: dict[str, Any]) -> dict[str, Any]:
    call = {"type": "computer_call", "call_id": "k1", "actions": list(actions)}
    return {"status": "completed", "output": [call]}


# ---------------------------------------------------------------- finding 1: numbers

HOSTILE: list[tuple[str, Any]] = [
    ("anthropic", _anthropic({"action": "left_click", "coordinate": [BIG, 1]})),
    ("anthropic", _anthropic({"action": "wait", "duration": BIG})),
    ("anthropic", _anthropic({"action": "wait", "duration": float("inf")})),
    ("qwen-vl", _qwen_raw('{"action": "left_click", "coordinate": [1' + "0" * 400 + ", 1]}")),
    ("qwen-vl", _qwen_raw('{"action": "left_click", "coordinate": [1e999, 1]}')),
    ("qwen-vl", _qwen({"action": "left_click", "coordinate": f"({HUGE_DIGITS}, 1)"})),
    ("qwen-vl", _qwen_raw('{"action": "scroll", "pixels": 1' + "0" * 400 + "}")),
    ("qwen-vl", _qwen_raw('{"action": "scroll", "pixels": 1e999}')),
    ("qwen-vl", _qwen_raw('{"action": "scroll", "pixels": -1e999}')),
    ("qwen-vl", _qwen({"action": "scroll", "pixels": "1e999"})),
    ("qwen-vl", _qwen_raw('{"action": "wait", "time": 1' + "0" * 400 + "}")),
    ("qwen-vl", _qwen_raw('{"action": "wait", "time": NaN}')),
    ("qwen-vl", _qwen_raw('{"action": "left_click", "coordinate": [' + HUGE_DIGITS + ", 1]}")),
    ("qwen-vl", "{" * 200_000),
    ("qwen-vl", '{"action": ' * 50_000),
    ("opencua", _opencua("pyautogui.click(x=1" + "0" * 400 + ", y=1)")),
    ("opencua", _opencua("pyautogui.scroll(1e999)")),
    ("opencua", _opencua("pyautogui.scroll(-1e999, x=1, y=1)")),
    ("opencua", _opencua("time.sleep(1" + "0" * 400 + ")")),
    ("opencua", _opencua("time.sleep(1e999)")),
    ("opencua", _opencua("computer.wait(1" + "0" * 400 + ")")),
    ("opencua", _opencua(f"pyautogui.click(x={HUGE_DIGITS}, y=1)")),
    ("opencua", _opencua("pyautogui.press([])")),
    ("opencua", _opencua("pyautogui.press([], presses=3)")),
    ("opencua", _opencua("pyautogui.click(x=" + "[" * 5000 + "]" * 5000 + ", y=1)")),
    ("uitars", "Action: click(start_box='(" + "9" * 400 + ",1)')"),
    ("uitars", f"Action: click(start_box='({HUGE_DIGITS},1)')"),
    ("uitars", "Action: click(start_box='[" + "9" * 400 + ",1," + "9" * 400 + ",2]')"),
    ("uitars", "Action: drag(start_box='(1,1)', end_box='(" + "9" * 400 + ",1)')"),
    ("openai-responses", _computer_call({"type": "click", "x": float("inf"), "y": 1})),
    ("openai-responses", _computer_call({"type": "click", "x": float("nan"), "y": 1})),
    ("openai-responses", _computer_call({"type": "click", "x": BIG, "y": 1})),
    ("chat-tools", _chat(("click", "[" * 100_000))),
    ("chat-tools", _chat(("click", '{"x": ' + HUGE_DIGITS + ', "y": 1}'))),
    ("chat-tools", _chat(("wait", '{"duration_s": 1e999}'))),
]


@pytest.mark.parametrize(("family", "reply"), HOSTILE, ids=[f for f, _ in HOSTILE])
def test_hostile_numbers_and_nesting_are_a_retry(family: Any, reply: Any) -> None:
    assert isinstance(_parse(family, reply), Retry)


def test_an_enormous_openai_scroll_is_clamped() -> None:
    reply = _computer_call({"type": "scroll", "x": 1, "y": 1, "scroll_x": BIG, "scroll_y": -BIG})
    decision = _parse("openai-responses", reply)
    assert isinstance(decision, Act)
    assert decision.actions[0].scroll_x == 100  # type: ignore[union-attr]
    assert decision.actions[0].scroll_y == -100  # type: ignore[union-attr]


def test_calls_as_text_survives_deep_nesting_and_long_numbers() -> None:
    for arguments in ("[" * 100_000, '{"x": ' + HUGE_DIGITS + "}"):
        fn = SimpleNamespace(name="computer_use", arguments=arguments)
        message = SimpleNamespace(tool_calls=[SimpleNamespace(function=fn)])
        text = _calls_as_text(message)
        assert text.startswith("<tool_call>")
        assert isinstance(_parse("qwen-vl", text), Retry)


def test_a_parser_bug_is_a_logged_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(reply: Any, mapper: Mapper) -> Decision:
        raise KeyError("surprise")

    monkeypatch.setattr(_parse_qwen, "parse", broken)
    with caplog.at_level("WARNING"):
        decision = _parse("qwen-vl", "anything")
    assert isinstance(decision, Retry) and "KeyError" in decision.error
    assert "qwen-vl parser failed" in caplog.text


# ---------------------------------------------------------------- finding 2: long replies


@pytest.mark.parametrize("family", ["qwen-vl", "uitars", "opencua"])
def test_an_over_long_reply_is_a_retry(family: Any) -> None:
    reply = "x" * 300_000 + _qwen({"action": "left_click", "coordinate": [5, 5]})
    decision = _parse(family, reply)
    assert isinstance(decision, Retry) and "too long" in decision.error


# ---------------------------------------------------------------- finding 4: actions per reply


def test_101_actions_are_a_retry_in_every_family() -> None:
    n = MAX_ACTIONS + 1
    click = {"action": "left_click", "coordinate": [5, 5]}
    replies: list[tuple[Any, Any]] = [
        ("qwen-vl", _qwen(*[click] * n)),
        ("uitars", "Action: " + "\n\n".join(["click(start_box='(5,5)')"] * n)),
        ("opencua", _opencua("\n".join(["pyautogui.click(x=5, y=5)"] * n))),
        ("opencua", _opencua("pyautogui.press('a', presses=100)\n" * 2)),
        ("chat-tools", _chat(*[("click", '{"x": 5, "y": 5}')] * n)),
        ("openai-responses", _computer_call(*[{"type": "click", "x": 5, "y": 5}] * n)),
        ("anthropic", _anthropic(*[click] * n)),
    ]
    for family, reply in replies:
        decision = _parse(family, reply)
        assert isinstance(decision, Retry), family
        assert str(MAX_ACTIONS) in decision.error, family
    # the brains' own readers too (they build Act directly)
    mapper = Mapper(SPACE, SCREEN)
    assert isinstance(read_chat(replies[4][1], mapper).decision, Retry)
    assert isinstance(read_responses(replies[5][1], mapper).decision, Retry)
    assert isinstance(read_anthropic(replies[6][1], mapper).decision, Retry)


def test_max_actions_still_act() -> None:
    click = {"action": "left_click", "coordinate": [5, 5]}
    decision = _parse("qwen-vl", _qwen(*[click] * MAX_ACTIONS))
    assert isinstance(decision, Act) and len(decision.actions) == MAX_ACTIONS


def test_a_thousand_long_waits_are_a_retry() -> None:
    reply = _qwen(*[{"action": "wait", "time": 300}] * 1000)
    decision = _parse("qwen-vl", reply)
    assert isinstance(decision, Retry) and "300 seconds in all" in decision.error
    two = _parse("qwen-vl", _qwen(*[{"action": "wait", "time": 150}] * 2))
    assert isinstance(two, Act) and len(two.actions) == 2
    sleeps = _parse("opencua", _opencua("time.sleep(200)\ntime.sleep(200)"))
    assert isinstance(sleeps, Retry)


def test_long_waits_are_a_retry_in_the_tool_families() -> None:
    waits: list[tuple[Any, Any]] = [
        ("chat-tools", _chat(*[("wait", '{"duration_s": 300}')] * 2)),
        ("anthropic", _anthropic(*[{"action": "wait", "duration": 300}] * 2)),
        ("anthropic", _anthropic(*[{"action": "hold_key", "text": "a", "duration": 60}] * 6)),
    ]
    for family, reply in waits:
        decision = _parse(family, reply)
        assert isinstance(decision, Retry) and "seconds in all" in decision.error, family
    one = _parse("chat-tools", _chat(("wait", '{"duration_s": 300}')))
    assert isinstance(one, Act)


# ---------------------------------------------------------------- finding 9: long texts are cut

LONG = "r" * 50_000
CODE_LONG = "r" * 19_500  # OpenCUA reads at most 20,000 characters of code


def test_long_reports_and_reasons_are_cut_not_refused() -> None:
    cases: list[tuple[Any, Any, type]] = [
        ("qwen-vl", _qwen({"action": "answer", "text": LONG}), Done),
        ("qwen-vl", _qwen({"action": "terminate", "status": "success", "answer": LONG}), Done),
        ("uitars", f"Action: finished(content='{LONG}')", Done),
        ("uitars", f"<answer>{LONG}</answer>", Done),
        ("opencua", _opencua(f"computer.terminate(status='success', answer='{CODE_LONG}')"), Done),
        ("opencua", _opencua(f"computer.terminate(status='failure', answer='{CODE_LONG}')"), Fail),
        ("chat-tools", _chat(("done", json.dumps({"result": LONG}))), Done),
        ("chat-tools", _chat(("fail", json.dumps({"reason": LONG}))), Fail),
        ("openai-responses", {"output": [_message(LONG)]}, Done),
        ("anthropic", _anthropic(text=LONG), Done),
    ]
    for family, reply, kind in cases:
        decision = _parse(family, reply)
        assert isinstance(decision, kind), (family, decision)
        text = decision.result if isinstance(decision, Done) else decision.reason  # type: ignore[union-attr]
        assert 1000 < len(text) <= MAX_RESULT_CHARS, family


def _message(text: str, kind: str = "output_text") -> dict[str, Any]:
    key = "refusal" if kind == "refusal" else "text"
    return {"type": "message", "content": [{"type": kind, key: text}]}


def test_refusals_are_cut() -> None:
    mapper = Mapper(SPACE, SCREEN)
    chat = {"choices": [{"message": {"role": "assistant", "refusal": LONG}}]}
    responses = {"output": [_message(LONG, "refusal")]}
    anthropic = {"content": [{"type": "text", "text": LONG}], "stop_reason": "refusal"}
    readings = [
        (read_chat(chat, mapper).refusal, read_chat(chat, mapper).decision),
        (read_responses(responses, mapper).refusal, read_responses(responses, mapper).decision),
        (read_anthropic(anthropic, mapper).text, read_anthropic(anthropic, mapper).decision),
    ]
    for said, decision in readings:
        assert said is not None and len(said) <= MAX_REFUSAL_CHARS
        assert isinstance(decision, Fail) and len(decision.reason) <= MAX_REFUSAL_CHARS + 100
