"""Claude's replies to decisions (``parse_reply("anthropic", ...)``), tool versions by model,
and the text editor's commands, run for real with bash and python3 in a temporary directory."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.brains import parse_reply
from orchestrator.brains._anthropic_tools import (
    ASK_USER_TOOL,
    EditorError,
    editor_command,
    tool_versions,
    tools,
)
from orchestrator.brains._parse_anthropic import RESTART_NOTE, read
from orchestrator.coords import FixedSpace, Mapper, image_size
from orchestrator.domain import Act, Done, Fail, Retry
from tests.fakes.anthropic_server import bash, computer, editor, message, refusal, text


def body(*blocks: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return message(*blocks, **kw).body


@pytest.mark.parametrize(
    ("screen", "image"),
    [((1280, 800), (1280, 800)), ((1920, 1080), (1366, 768)), ((1024, 768), (1024, 768))],
)
def test_points_in_claudes_space_land_on_the_screen_pixel_under_them(
    screen: tuple[int, int], image: tuple[int, int]
) -> None:
    assert image_size(FixedSpace(), screen) == image
    w, h = image
    reply = body(
        computer("left_click", coordinate=[w // 2, h // 2]),
        computer("double_click", coordinate=[0, 0]),
        computer("right_click", coordinate=[w - 1, h - 1]),
        computer("left_click_drag", start_coordinate=[10, 20], coordinate=[w - 1, 0]),
        computer("scroll", coordinate=[w // 4, h // 4], scroll_direction="down", scroll_amount=3),
    )
    decision = parse_reply("anthropic", reply, image, screen)
    assert isinstance(decision, Act)
    sw, sh = screen
    m = Mapper(image, screen)
    assert decision.actions == [
        a.Click(x=m.point(w // 2, h // 2)[0], y=m.point(w // 2, h // 2)[1]),
        a.DoubleClick(x=0, y=0),
        a.Click(x=sw - 1, y=sh - 1, button="right"),
        a.Drag(path=[a.Point(x=m.point(10, 20)[0], y=m.point(10, 20)[1]), a.Point(x=sw - 1, y=0)]),
        a.Scroll(x=m.point(w // 4, h // 4)[0], y=m.point(w // 4, h // 4)[1], scroll_y=3),
    ]
    if screen == (1920, 1080):  # the middle of 1366x768 is the middle of the screen
        assert decision.actions[0] == a.Click(x=960, y=540)


def test_text_before_tool_calls_is_the_thought_and_a_text_reply_is_the_report() -> None:
    m = Mapper((1280, 800), (1280, 800))
    act = parse_reply(
        "anthropic",
        body(text("I will type."), computer("type", text="hi")),
        (1280, 800),
        (1280, 800),
    )
    assert act == Act(actions=[a.TypeText(text="hi")], thought="I will type.")
    done = read(body(text("Created /tmp/x.")), m).decision
    assert done == Done(result="Created /tmp/x.")
    cut = read(body(text("I was going to"), stop_reason="max_tokens"), m).decision
    assert isinstance(cut, Retry) and "token limit" in cut.error
    empty = read(body(), m).decision
    assert isinstance(empty, Retry) and "neither a tool call nor text" in empty.error


def test_a_refusal_is_a_failure_with_the_reason() -> None:
    decision = parse_reply("anthropic", refusal("No.").body, (10, 10), (10, 10))
    assert decision == Fail(reason="the model refused: No.")


def test_bad_calls_are_retries_naming_each_call() -> None:
    reply = body(
        computer("left_click", coordinate=[2000, 10], id="t_out"),
        computer("fly", id="t_unknown"),
        {"type": "tool_use", "id": "t_tool", "name": "browser", "input": {}},
        computer("type", text=5, id="t_bad"),
        bash(command="", id="t_empty"),
        editor("undo_edit", "/tmp/a", id="t_undo"),
        computer("key", text="ctrl+c", id="t_fine"),
    )
    decision = parse_reply("anthropic", reply, (1280, 800), (1280, 800))
    assert isinstance(decision, Retry)
    for part in (
        "computer call t_out: 'coordinate' (2000, 10) is outside the 1280x800 space",
        "computer call t_unknown: unknown Anthropic computer action 'fly'",
        "browser call t_tool: there is no tool 'browser'",
        "computer call t_bad:",
        "bash call t_empty: 'command' must be a non-empty string",
        "undo_edit is not available",
    ):
        assert part in decision.error
    assert "t_fine" not in decision.error
    parsed = read(reply, Mapper((1280, 800), (1280, 800)))
    assert [u.id for u in parsed.uses][-1] == "t_fine" and parsed.uses[-1].error is None


def test_clicks_without_a_coordinate_act_at_the_known_pointer_or_are_refused() -> None:
    m = Mapper((1366, 768), (1920, 1080))
    reply = body(computer("left_click"))
    refused = read(reply, m).decision
    assert isinstance(refused, Retry) and "needs a 'coordinate'" in refused.error
    assert read(reply, m, cursor=(100, 200)).decision == Act(actions=[a.Click(x=100, y=200)])


def test_bash_is_a_shell_action_and_restart_is_answered_without_one() -> None:
    parsed = read(body(bash("ls /", id="b1"), bash(restart=True, id="b2")), Mapper((8, 8), (8, 8)))
    assert parsed.decision == Act(actions=[a.Shell(command="ls /")])
    assert [(u.id, u.kind, u.action, u.note) for u in parsed.uses] == [
        ("b1", "bash", 0, None),
        ("b2", "bash", None, RESTART_NOTE),
    ]


def test_zoom_regions_map_to_the_screen_rectangle_at_the_images_size() -> None:
    m = Mapper((1366, 768), (1920, 1080))
    decision = read(body(computer("zoom", region=[0, 0, 683, 384])), m).decision
    assert decision == Act(actions=[a.Zoom(x0=0, y0=0, x1=960, y1=540, width=1365, height=768)])
    tall = read(body(computer("zoom", region=[100, 100, 200, 500])), m).decision
    assert isinstance(tall, Act)
    zoom = tall.actions[0]
    # 100..200 x 100..500 of 1366x768 covers screen pixels 140..281 x 140..703 (142 x 564)
    assert zoom == a.Zoom(x0=140, y0=140, x1=282, y1=704, width=round(142 * 768 / 564), height=768)
    for region in ([0, 0, 0, 10], [10, 10, 5, 20], [0, 0, 1367, 10], [1, 2, 3]):
        bad = read(body(computer("zoom", region=region)), m).decision
        assert isinstance(bad, Retry) and "'region'" in bad.error


@pytest.mark.parametrize(
    ("model", "computer_type", "beta", "editor_type", "editor_name"),
    [
        (
            "claude-sonnet-4-5-20250929",
            "computer_20250124",
            "computer-use-2025-01-24",
            "text_editor_20250728",
            "str_replace_based_edit_tool",
        ),  # noqa: E501
        (
            "claude-sonnet-4-20250514",
            "computer_20250124",
            "computer-use-2025-01-24",
            "text_editor_20250728",
            "str_replace_based_edit_tool",
        ),  # noqa: E501
        (
            "claude-opus-4-5-20251101",
            "computer_20251124",
            "computer-use-2025-11-24",
            "text_editor_20250728",
            "str_replace_based_edit_tool",
        ),  # noqa: E501
        (
            "claude-opus-4-6",
            "computer_20251124",
            "computer-use-2025-11-24",
            "text_editor_20250728",
            "str_replace_based_edit_tool",
        ),  # noqa: E501
        (
            "claude-sonnet-4-6",
            "computer_20251124",
            "computer-use-2025-11-24",
            "text_editor_20250728",
            "str_replace_based_edit_tool",
        ),  # noqa: E501
        (
            "claude-3-7-sonnet-20250219",
            "computer_20250124",
            "computer-use-2025-01-24",
            "text_editor_20250124",
            "str_replace_editor",
        ),  # noqa: E501
        (
            "my-gateway-alias",
            "computer_20250124",
            "computer-use-2025-01-24",
            "text_editor_20250728",
            "str_replace_based_edit_tool",
        ),  # noqa: E501
    ],
)
def test_tool_versions_by_model(
    model: str, computer_type: str, beta: str, editor_type: str, editor_name: str
) -> None:
    versions = tool_versions(model)
    assert (versions.computer, versions.beta, versions.editor, versions.editor_name) == (
        computer_type,
        beta,
        editor_type,
        editor_name,
    )
    declared = tools(versions, (1366, 768))
    assert declared[0] == {
        "type": computer_type,
        "name": "computer",
        "display_width_px": 1366,
        "display_height_px": 768,
        **({"enable_zoom": True} if versions.zoom else {}),
    }
    assert declared[1:] == [
        {"type": "bash_20250124", "name": "bash"},
        {"type": editor_type, "name": editor_name},
        ASK_USER_TOOL,
    ]
    assert tool_versions(model, computer="computer_20251124").zoom


def run(action: a.Shell, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", action.command], cwd=cwd, capture_output=True, text=True, timeout=30
    )


NASTY = 'it\'s $(touch PWNED) `touch PWNED2` "quoted" \\back ; rm -rf / #\n\ttab ünïcödé\n'


def test_text_editor_commands_work_for_real_and_never_let_the_shell_read_the_payload(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dir" / "notes.txt"
    m = Mapper((8, 8), (8, 8))

    def edit(**input: Any) -> subprocess.CompletedProcess[str]:
        input.setdefault("path", str(path))
        decision = read(body(editor(**input)), m).decision
        assert isinstance(decision, Act), decision
        (shell,) = decision.actions
        assert isinstance(shell, a.Shell)
        return run(shell, tmp_path)

    created = edit(command="create", file_text=NASTY + "last line")
    assert created.returncode == 0, created.stderr
    assert path.read_text() == NASTY + "last line"
    assert not list(tmp_path.glob("PWNED*"))  # nothing of the payload ran
    view = edit(command="view")
    assert view.returncode == 0 and "     1\tit's $(touch PWNED)" in view.stdout
    assert "     3\tlast line" in view.stdout
    ranged = edit(command="view", view_range=[2, -1])
    assert "     2\t\ttab ünïcödé" in ranged.stdout and "     1\t" not in ranged.stdout
    replaced = edit(command="str_replace", old_str="last line", new_str="LAST")
    assert replaced.returncode == 0 and path.read_text().endswith("LAST")
    inserted = edit(command="insert", insert_line=0, insert_text="first")
    assert inserted.returncode == 0 and path.read_text().startswith("first\nit's")
    listing = edit(command="view", path=str(tmp_path))
    assert str(path) in listing.stdout
    again = edit(command="create", file_text="x")
    assert again.returncode == 1 and "File already exists" in again.stderr
    missing = edit(command="str_replace", old_str="absent", new_str="x")
    assert missing.returncode == 1 and "did not appear verbatim" in missing.stderr
    assert path.read_text().startswith("first\nit's")


def test_text_editor_view_range_and_old_editor_names(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("a\nb\nc")
    old = editor_command(
        {"command": "insert", "path": str(path), "insert_line": 3, "new_str": "d"},
        name="str_replace_editor",
    )
    assert run(old, tmp_path).returncode == 0 and path.read_text() == "a\nb\nc\nd"
    bad = run(
        editor_command({"command": "view", "path": str(path), "view_range": [9, 10]}), tmp_path
    )
    assert bad.returncode == 1 and "view_range" in bad.stderr
    relative = run(editor_command({"command": "view", "path": "f.txt"}), tmp_path)
    assert relative.returncode == 1 and "not an absolute path" in relative.stderr
    with pytest.raises(EditorError, match="too long"):
        editor_command({"command": "create", "path": "/tmp/big", "file_text": "x" * 80_000})
    with pytest.raises(EditorError, match="unknown command"):
        editor_command({"command": "delete", "path": "/tmp/x"})
