"""``text_pattern`` rules see what is written however it is sent (the text editor's base64
program, typed text split into chunks), and a tenant's pattern cannot tie up the host."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from orchestrator import actions as a
from orchestrator.brains._anthropic_tools import editor_command
from orchestrator.domain import Act
from orchestrator.policy import ApprovalPolicy, TextPattern, apply_policy

RM = ApprovalPolicy.model_validate({"approve": [{"text_pattern": "rm -rf"}]})


@pytest.mark.parametrize(
    "call",
    [
        {"command": "create", "path": "/home/agent/.bashrc", "file_text": "rm -rf ~\n"},
        {"command": "str_replace", "path": "/x", "old_str": "ls", "new_str": "rm -rf ~"},
        {"command": "insert", "path": "/x", "insert_line": 0, "insert_text": "rm -rf ~"},
    ],
)
def test_the_text_editor_writing_a_pattern_awaits_approval(call: dict[str, object]) -> None:
    shell = editor_command(call)
    assert "rm -rf" not in shell.command  # base64: the command line never shows it
    held = apply_policy(Act(actions=[shell]), RM)
    assert held.kind == "await_approval"
    assert "writing text matching 'rm -rf'" in held.reason and "rm -rf ~" in held.reason


def test_the_editor_viewing_a_file_needs_no_approval() -> None:
    shell = editor_command({"command": "view", "path": "/etc/hostname"})
    assert shell.writes is None and apply_policy(Act(actions=[shell]), RM).kind == "act"


def test_writes_is_not_offered_to_models() -> None:
    assert "writes" not in a.Shell.model_json_schema()["properties"]


def test_a_pattern_across_two_typed_chunks_matches() -> None:
    chunks = [a.TypeText(text="echo hi; rm -"), a.TypeText(text="rf ~")]
    held = apply_policy(Act(actions=chunks), RM)
    assert held.kind == "await_approval" and "rm -rf" in held.reason
    apart = [chunks[0], a.KeyPress(keys=["enter"]), chunks[1]]
    assert apply_policy(Act(actions=apart), RM).kind == "act"  # not one text


def test_a_match_across_a_search_window_edge_is_found() -> None:
    text = "x" * 4090 + "rm -rf ~" + "y" * 9000
    assert TextPattern(text_pattern="rm -rf").matches(text)
    assert TextPattern(text_pattern="(?i)password").matches("z" * 20_000 + "PassWord")
    assert TextPattern(text_pattern="rm -rf").matches("a" * 100_001)  # too long: held


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)*b", "(?:x(ab|a))*c", r"(\w)\1", "a.*b.*x"])
def test_a_catastrophic_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ValidationError):
        TextPattern(text_pattern=pattern)


@pytest.mark.parametrize("pattern", ["(?i)password", r"rm\s+-rf", ".*x", "pass(word|wd)"])
def test_allowed_patterns_search_a_long_text_fast(pattern: str) -> None:
    rule = TextPattern(text_pattern=pattern)
    t0 = time.perf_counter()
    rule.matches("a" * 100_000)
    rule.matches(" " * 100_000)
    assert time.perf_counter() - t0 < 2.0
