"""The action models refuse what a desktop cannot carry out: a NUL in a command line or a
directory, and more text than one ``type`` action may hold a request for. The error names
the field, so that the API's 422 (and a model reading a failed step) says what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator import actions as a
from orchestrator.desktop._shell_programs import build_command


def _error(data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as info:
        a.parse_action(data)
    errors = info.value.errors()
    assert len(errors) == 1, errors
    return tuple(errors[0]["loc"]), errors[0]["msg"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "shell", "command": "echo a\0b"}, "command"),
        ({"type": "shell", "command": "\0"}, "command"),
        ({"type": "shell", "command": "ls", "cwd": "/tmp\0/x"}, "cwd"),
    ],
)
def test_a_nul_in_a_command_or_directory_is_a_validation_error_naming_the_field(
    data: dict[str, Any], field: str
) -> None:
    loc, msg = _error(data)
    assert loc == ("shell", field)
    assert "NUL" in msg


def test_what_the_models_accept_the_command_line_builder_accepts() -> None:
    """Whatever passes validation reaches the desktop without the builder's ValueError (the
    500 the API gave for a NUL)."""
    shell = a.Shell(command="echo 'é → 世界'\nprintf '%s' \"$HOME\"", cwd="~/dir with space")
    command, stdin = build_command(shell.command, timeout=shell.timeout_s, cwd=shell.cwd)
    assert "\0" not in command and stdin is None


def test_an_empty_directory_is_refused_and_none_means_home() -> None:
    assert _error({"type": "shell", "command": "ls", "cwd": ""})[0] == ("shell", "cwd")
    assert a.Shell(command="ls").cwd is None


def test_typed_text_is_capped_per_action() -> None:
    assert a.MAX_TYPE_CHARS == 10_000
    assert len(a.TypeText(text="x" * a.MAX_TYPE_CHARS).text) == a.MAX_TYPE_CHARS
    loc, msg = _error({"type": "type", "text": "x" * (a.MAX_TYPE_CHARS + 1)})
    assert loc == ("type", "text")
    assert "10000" in msg


def test_the_caps_are_in_the_tool_schemas_a_model_sees() -> None:
    schema = a.action_json_schema()
    defs = schema["$defs"]
    assert defs["TypeText"]["properties"]["text"]["maxLength"] == a.MAX_TYPE_CHARS
    assert defs["Shell"]["properties"]["command"]["maxLength"] == a.MAX_COMMAND_CHARS
