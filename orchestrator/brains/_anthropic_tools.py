"""Claude's tools: which versions a model gets, their declarations, and the text editor's
commands as shell commands on the desktop.

Tool versions, by model name (``tool_versions``):

- computer: ``computer_20251124`` with ``enable_zoom: true`` (beta
  ``computer-use-2025-11-24``) for Claude Opus 4.5 and later, any Claude 4.6 and later, and
  Claude 5 and later; ``computer_20250124`` (beta ``computer-use-2025-01-24``) otherwise,
  including names we cannot read (a gateway's alias).
- bash: ``bash_20250124``, named ``bash``.
- text editor: ``text_editor_20250728`` named ``str_replace_based_edit_tool`` (Claude 4 and
  later, and unreadable names); ``text_editor_20250124`` named ``str_replace_editor`` for
  Claude 3.x (which also has ``undo_edit``, not offered here: it is refused).

``computer`` may force a computer tool version whatever the name says.

The text editor's commands (``view``, ``create``, ``str_replace``, ``insert``) run on the
desktop as one ``python3`` program whose arguments (the program and a JSON payload of the
command) are base64: nothing the model wrote is ever interpolated into the shell. The text
an edit writes is kept in plain words on the action (``Shell.writes``), so approval rules see it.

Example:
    >>> tool_versions("claude-opus-4-5-20251101").computer
    'computer_20251124'
    >>> tool_versions("claude-sonnet-4-5").computer
    'computer_20250124'
    >>> tool_versions("claude-3-7-sonnet-latest").editor_name
    'str_replace_editor'
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

from ..actions import MAX_COMMAND_CHARS, Shell

__all__ = [
    "ASK_USER",
    "ASK_USER_TOOL",
    "BASH",
    "COMPUTER",
    "EDITOR_NAMES",
    "EditorError",
    "ToolVersions",
    "editor_command",
    "tool_versions",
    "tools",
]

COMPUTER = "computer"
"""The computer tool's name (every version)."""
BASH = "bash"
"""The bash tool's name."""
EDITOR_NAMES = frozenset({"str_replace_based_edit_tool", "str_replace_editor"})
"""The text editor's names (20250728 and 20250124)."""
ASK_USER = "ask_user"
"""Our custom tool that asks the person the task is for a question."""
ASK_USER_TOOL: dict[str, Any] = {
    "name": ASK_USER,
    "description": (
        "Ask the person who gave you the task a question, when only they can answer it (a "
        "choice, a missing detail, a confirmation). The task waits for the answer, which "
        "comes back as this tool's result. Call it alone, not along with other tools."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "question": {"type": "string", "description": "The question, self-contained."}
        },
        "required": ["question"],
        "additionalProperties": False,
    },
}
"""The ``ask_user`` custom tool's declaration (a client tool with an input schema)."""

ComputerVersion = Literal["computer_20250124", "computer_20251124"]
_BETAS: dict[str, str] = {
    "computer_20250124": "computer-use-2025-01-24",
    "computer_20251124": "computer-use-2025-11-24",
}

# claude-opus-4-5-20251101, claude-sonnet-4-20250514, claude-opus-4-1, claude-haiku-4-5@2025...
_NEW_NAME = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?![0-9])", re.IGNORECASE)
# claude-3-7-sonnet-20250219, claude-3-5-haiku-latest, claude-3-opus-20240229
_OLD_NAME = re.compile(r"claude-(\d)(?:-(\d))?-(opus|sonnet|haiku)", re.IGNORECASE)


@dataclass(frozen=True)
class ToolVersions:
    """The tool versions a model gets, and the beta header that enables them."""

    computer: ComputerVersion
    editor: Literal["text_editor_20250728", "text_editor_20250124"]
    editor_name: Literal["str_replace_based_edit_tool", "str_replace_editor"]

    @property
    def beta(self) -> str:
        """The ``anthropic-beta`` entry of the computer tool's version."""
        return _BETAS[self.computer]

    @property
    def zoom(self) -> bool:
        """Whether the computer tool offers ``zoom`` (enabled with the 20251124 version)."""
        return self.computer == "computer_20251124"


def _version(model: str) -> tuple[str, int, int] | None:
    """``(family, major, minor)`` of a Claude model name; None when it is not one we read."""
    m = _NEW_NAME.search(model)
    if m:
        return m.group(1).lower(), int(m.group(2)), int(m.group(3) or 0)
    m = _OLD_NAME.search(model)
    if m:
        return m.group(3).lower(), int(m.group(1)), int(m.group(2) or 0)
    return None


def tool_versions(model: str, *, computer: ComputerVersion | None = None) -> ToolVersions:
    """The tools of ``model`` (see the module docstring); ``computer`` forces that version."""
    version = _version(model)
    zoom = False
    old = False
    if version is not None:
        family, major, minor = version
        zoom = (
            major >= 5
            or (major, minor) >= (4, 6)
            or (family == "opus" and (major, minor) >= (4, 5))
        )
        old = major < 4
    if old:
        return ToolVersions(
            computer or "computer_20250124", "text_editor_20250124", "str_replace_editor"
        )
    return ToolVersions(
        computer or ("computer_20251124" if zoom else "computer_20250124"),
        "text_editor_20250728",
        "str_replace_based_edit_tool",
    )


def tools(versions: ToolVersions, image: tuple[int, int]) -> list[dict[str, Any]]:
    """The tool declarations: the computer (for screenshots of ``image`` ``(w, h)``), bash,
    the text editor, and our ``ask_user``."""
    computer: dict[str, Any] = {
        "type": versions.computer,
        "name": COMPUTER,
        "display_width_px": image[0],
        "display_height_px": image[1],
    }
    if versions.zoom:
        computer["enable_zoom"] = True
    return [
        computer,
        {"type": "bash_20250124", "name": BASH},
        {"type": versions.editor, "name": versions.editor_name},
        ASK_USER_TOOL,
    ]


# ---------------------------------------------------------------------- the text editor


class EditorError(ValueError):
    """A text-editor call that cannot be carried out; the message is for the model."""


# Runs on the desktop as `python3 -c <decoder> <program> <payload>`; reads the JSON payload
# (command, path, ...) and prints what the editor tool's reference implementation prints.
_PROGRAM = r"""
import base64, json, os, sys
p = json.loads(base64.b64decode(sys.argv[2]).decode("utf-8"))
cmd, path = p["command"], p["path"]
def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)
def numbered(text, start=1):
    return "\n".join("%6d\t%s" % (i + start, line) for i, line in enumerate(text.split("\n")))
def read():
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        fail("The path %s does not exist." % path)
    except IsADirectoryError:
        fail("The path %s is a directory." % path)
def write(text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
def snippet(text, line, count):
    lines = text.split("\n")
    start = max(0, line - SNIPPET)
    end = min(len(lines), line + count + SNIPPET)
    return numbered("\n".join(lines[start:end]), start + 1)
SNIPPET = 4
if not os.path.isabs(path):
    fail("The path %s is not an absolute path; it should start with `/`." % path)
if cmd == "view":
    if os.path.isdir(path):
        if p.get("view_range"):
            fail("view_range is not allowed for a directory.")
        out = []
        for root, dirs, files in os.walk(path):
            depth = root[len(path):].count(os.sep)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if depth >= 2:
                dirs[:] = []
            for name in sorted(dirs) + sorted(f for f in files if not f.startswith(".")):
                out.append(os.path.join(root, name))
        print("Files and directories up to 2 levels deep in %s, excluding hidden items:" % path)
        print("\n".join([path] + out))
        sys.exit(0)
    text = read()
    start = 1
    rng = p.get("view_range")
    if rng:
        lines = text.split("\n")
        first, last = rng
        if not 1 <= first <= len(lines):
            fail("view_range: the first line %d is not within 1..%d." % (first, len(lines)))
        if last != -1 and not first <= last <= len(lines):
            fail("view_range: the last line %d is not within %d..%d (or -1)."
                 % (last, first, len(lines)))
        text = "\n".join(lines[first - 1 : None if last == -1 else last])
        start = first
    print("Here's the result of running `cat -n` on %s:" % path)
    print(numbered(text, start))
elif cmd == "create":
    if os.path.exists(path):
        fail("File already exists at: %s. Cannot overwrite files using command `create`." % path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    write(p["file_text"])
    print("File created successfully at: %s" % path)
elif cmd == "str_replace":
    text = read()
    old, new = p["old_str"], p.get("new_str") or ""
    count = text.count(old)
    if count == 0:
        fail("No replacement was performed, old_str %r did not appear verbatim in %s."
             % (old, path))
    if count > 1:
        lines = [i + 1 for i, line in enumerate(text.split("\n")) if old.split("\n")[0] in line]
        fail("No replacement was performed. Multiple occurrences of old_str %r in lines %s. "
             "Please ensure it is unique." % (old, lines))
    line = text.split(old)[0].count("\n")
    text = text.replace(old, new)
    write(text)
    print("The file %s has been edited. Here's the result of running `cat -n` on a snippet:" % path)
    print(snippet(text, line, new.count("\n") + 1))
    print("Review the changes and make sure they are as expected.")
elif cmd == "insert":
    text = read()
    lines = text.split("\n")
    at = p["insert_line"]
    if not 0 <= at <= len(lines):
        fail("insert_line %d is not within 0..%d." % (at, len(lines)))
    new = p["insert_text"]
    lines[at:at] = new.split("\n")
    text = "\n".join(lines)
    write(text)
    print("The file %s has been edited. Here's the result of running `cat -n` on a snippet:" % path)
    print(snippet(text, at, new.count("\n") + 1))
    print("Review the changes and make sure they are as expected.")
"""

_DECODER = "import base64,sys;exec(base64.b64decode(sys.argv[1]).decode())"
_PROGRAM_B64 = base64.b64encode(_PROGRAM.encode()).decode()


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise EditorError(f"{key!r} must be a string")
    return value


def editor_command(input: Any, *, name: str = "str_replace_based_edit_tool") -> Shell:
    """The ``Shell`` action carrying out one text-editor call; ``EditorError`` (for the
    model) when the call is malformed or unsupported.

    Example:
        >>> editor_command({"command": "view", "path": "/etc/hostname"}).command[:10]
        'python3 -c'
    """
    if not isinstance(input, dict):
        raise EditorError(f"the input of {name} must be a JSON object")
    command = input.get("command")
    path = _str(input, "path")
    payload: dict[str, Any] = {"command": command, "path": path}
    match command:
        case "view":
            rng = input.get("view_range")
            if rng is not None:
                if (
                    not isinstance(rng, list)
                    or len(rng) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng)
                ):
                    raise EditorError("'view_range' must be [first, last], two line numbers")
                payload["view_range"] = rng
        case "create":
            payload["file_text"] = _str(input, "file_text")
        case "str_replace":
            payload["old_str"] = _str(input, "old_str")
            if not payload["old_str"]:
                raise EditorError("'old_str' must not be empty")
            payload["new_str"] = _str(input, "new_str", required=False) or ""
        case "insert":
            line = input.get("insert_line")
            if isinstance(line, bool) or not isinstance(line, int):
                raise EditorError("'insert_line' must be an integer line number")
            payload["insert_line"] = line
            # 20250728 names it insert_text; 20250124 new_str
            key = "insert_text" if "insert_text" in input else "new_str"
            payload["insert_text"] = _str(input, key)
        case "undo_edit":
            raise EditorError("undo_edit is not available here: edit the file back instead")
        case _:
            raise EditorError(
                f"unknown command {command!r}; expected view, create, str_replace or insert"
            )
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    line = " ".join(
        ["python3", "-c", shlex.quote(_DECODER), shlex.quote(_PROGRAM_B64), shlex.quote(encoded)]
    )
    if len(line) > MAX_COMMAND_CHARS:
        raise EditorError(
            f"the call is too long ({len(line)} characters encoded, at most {MAX_COMMAND_CHARS}): "
            "write the file in parts (create, then insert)"
        )
    # what the edit writes, in plain text, for approval rules (text_pattern) to read
    writes = payload.get("file_text", payload.get("new_str", payload.get("insert_text")))
    return Shell(command=line, writes=writes)
