"""Typed actions an agent performs on its desktop, and their results.

Every GUI action of the OpenAI and Anthropic computer-use schemas maps onto one of these
models (see ``orchestrator.protocols``); the JSON schemas of a model's tools are generated
from them. Coordinates are pixels of the space the caller works in: the screen itself, or a
scaled screenshot when a ``Scaling`` is passed along with the action.

Example:
    >>> from orchestrator.actions import parse_action
    >>> parse_action({"type": "click", "x": 10, "y": 20, "button": "right"})
    Click(type='click', x=10, y=20, button='right', keys=[])
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import SkipJsonSchema

__all__ = [
    "MAX_COMMAND_CHARS",
    "MAX_TYPE_CHARS",
    "Action",
    "ActionResult",
    "Button",
    "Click",
    "CommandResult",
    "CursorPosition",
    "DoubleClick",
    "Drag",
    "HoldKey",
    "KeyPress",
    "MouseDown",
    "MouseUp",
    "Move",
    "Point",
    "Scroll",
    "Shell",
    "ShellCommand",
    "TakeScreenshot",
    "TripleClick",
    "TypeText",
    "Wait",
    "Zoom",
    "action_json_schema",
    "parse_action",
]

Button = Literal["left", "right", "middle", "back", "forward"]
"""A mouse button. OpenAI's ``wheel`` is ``middle`` here."""

MAX_TYPE_CHARS = 10_000
"""Longest text one ``type`` action takes. Typing runs at about 1,300 characters a second, so
one action holds its request for at most ~8 s; type more in several actions, or write a long
text to a file with a ``shell`` command or a file upload."""
MAX_COMMAND_CHARS = 100_000
"""Longest command line one ``shell`` action takes."""


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain a NUL character (\\x00)")
    return value


ShellCommand = Annotated[
    str, Field(min_length=1, max_length=MAX_COMMAND_CHARS), AfterValidator(_no_nul)
]
"""A command line for bash: not empty, at most ``MAX_COMMAND_CHARS``, no NUL (which no
argv or script can carry)."""
_Path = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_no_nul)]

_Coord = Annotated[int, Field(ge=-100_000, le=100_000)]
_Keys = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(max_length=16),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Point(_Model):
    """A pixel position."""

    x: _Coord
    """Pixels from the left edge."""
    y: _Coord
    """Pixels from the top edge."""


class Click(_Model):
    """Press and release a mouse button at a position, with modifier keys held."""

    type: Literal["click"] = "click"
    x: _Coord
    """Pixels from the left edge."""
    y: _Coord
    """Pixels from the top edge."""
    button: Button = "left"
    """Which button to click."""
    keys: _Keys = Field(default_factory=list)
    """Modifier keys held during the click, by xdotool-style name (``ctrl``, ``shift``)."""


class DoubleClick(_Model):
    """Click a button twice in quick succession."""

    type: Literal["double_click"] = "double_click"
    x: _Coord
    """Pixels from the left edge."""
    y: _Coord
    """Pixels from the top edge."""
    button: Button = "left"
    """Which button to click."""
    keys: _Keys = Field(default_factory=list)
    """Modifier keys held during the clicks."""


class TripleClick(_Model):
    """Click a button three times in quick succession (selects a line in most apps)."""

    type: Literal["triple_click"] = "triple_click"
    x: _Coord
    """Pixels from the left edge."""
    y: _Coord
    """Pixels from the top edge."""
    button: Button = "left"
    """Which button to click."""
    keys: _Keys = Field(default_factory=list)
    """Modifier keys held during the clicks."""


class MouseDown(_Model):
    """Press a mouse button and keep it down, optionally moving there first."""

    type: Literal["mouse_down"] = "mouse_down"
    x: _Coord | None = None
    """Where to press; the current position when omitted."""
    y: _Coord | None = None
    """Where to press; the current position when omitted."""
    button: Button = "left"
    """Which button to press."""


class MouseUp(_Model):
    """Release a mouse button, optionally moving there first."""

    type: Literal["mouse_up"] = "mouse_up"
    x: _Coord | None = None
    """Where to release; the current position when omitted."""
    y: _Coord | None = None
    """Where to release; the current position when omitted."""
    button: Button = "left"
    """Which button to release."""


class Move(_Model):
    """Move the pointer without pressing anything."""

    type: Literal["move"] = "move"
    x: _Coord
    """Pixels from the left edge."""
    y: _Coord
    """Pixels from the top edge."""
    keys: _Keys = Field(default_factory=list)
    """Modifier keys held during the move."""


class Drag(_Model):
    """Press a button at the first point, move through the others, release at the last."""

    type: Literal["drag"] = "drag"
    path: Annotated[list[Point], Field(min_length=2, max_length=1000)]
    """The points to pass through, at least a start and an end."""
    button: Button = "left"
    """Which button to hold."""
    keys: _Keys = Field(default_factory=list)
    """Modifier keys held during the drag."""


class Scroll(_Model):
    """Turn the mouse wheel at a position: positive ``scroll_y`` scrolls down, ``x`` right."""

    type: Literal["scroll"] = "scroll"
    x: _Coord
    """Pixels from the left edge."""
    y: _Coord
    """Pixels from the top edge."""
    scroll_x: Annotated[int, Field(ge=-100, le=100)] = 0
    """Wheel notches to the right (negative: left)."""
    scroll_y: Annotated[int, Field(ge=-100, le=100)] = 0
    """Wheel notches down (negative: up)."""
    keys: _Keys = Field(default_factory=list)
    """Modifier keys held while scrolling."""


class TypeText(_Model):
    """Type text as keystrokes; any Unicode character, ``\\n`` presses Return, ``\\t`` Tab."""

    type: Literal["type"] = "type"
    text: Annotated[str, Field(max_length=MAX_TYPE_CHARS)]
    """The text to type: at most 10,000 characters (about 8 s of typing) per action."""


class KeyPress(_Model):
    """Press keys together as one chord, e.g. ``["ctrl", "shift", "t"]`` or ``["Return"]``.

    Each entry may itself be a ``+``-joined combo (``"ctrl+shift+t"``); names are
    xdotool/X keysym names, case-insensitive, with the usual aliases (ctrl, alt, super,
    enter, esc, arrowleft, pageup, ...).
    """

    type: Literal["keypress"] = "keypress"
    keys: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=16),
    ]
    """The keys of the chord, modifiers first."""


class HoldKey(_Model):
    """Hold a key (or a ``+``-joined combo) down for a while, then release it."""

    type: Literal["hold_key"] = "hold_key"
    key: Annotated[str, Field(min_length=1, max_length=64)]
    """The key or combo to hold."""
    duration_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    """How long to hold it, in seconds."""


class Wait(_Model):
    """Do nothing for a while (let the screen change)."""

    type: Literal["wait"] = "wait"
    duration_s: Annotated[float, Field(ge=0, le=300)] = 1.0
    """How long to wait, in seconds."""


class TakeScreenshot(_Model):
    """Take a screenshot (the result carries none: the caller grabs the screen after acting)."""

    type: Literal["screenshot"] = "screenshot"


class CursorPosition(_Model):
    """Report where the pointer is."""

    type: Literal["cursor_position"] = "cursor_position"


class Zoom(_Model):
    """Look closer: the screen region ``[x0, x1) x [y0, y1)`` as an image of ``width`` x
    ``height`` (magnified), returned in ``ActionResult.image`` (PNG); nothing on the screen
    changes."""

    type: Literal["zoom"] = "zoom"
    x0: _Coord
    """Left edge of the region (pixels from the left, included)."""
    y0: _Coord
    """Top edge of the region (included)."""
    x1: _Coord
    """Right edge of the region (excluded): more than ``x0``."""
    y1: _Coord
    """Bottom edge of the region (excluded): more than ``y0``."""
    width: Annotated[int, Field(gt=0, le=4096)]
    """Width of the image returned."""
    height: Annotated[int, Field(gt=0, le=4096)]
    """Height of the image returned."""

    @model_validator(mode="after")
    def _not_empty(self) -> Zoom:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError("the region is empty: x1 must be more than x0 and y1 than y0")
        return self


class Shell(_Model):
    """Run a shell command on the desktop (bash -lc) and report its exit code and output."""

    type: Literal["shell"] = "shell"
    command: ShellCommand
    """The command line, run by bash (at most 100,000 characters, no NUL)."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Kill the command after this many seconds; partial output is still reported."""
    user: Literal["agent", "root"] = "agent"
    """Run as the unprivileged desktop user (default) or as root."""
    cwd: _Path | None = None
    """Working directory; the user's home when omitted."""
    writes: SkipJsonSchema[Annotated[str, Field(max_length=MAX_COMMAND_CHARS)] | None] = None
    """The text the command writes when its line does not show it (the text editor's content,
    sent base64): approval rules (``text_pattern``) read it as well as the command. Set by
    the runtime's own mappings, never offered to a model (not in the tool schema)."""


Action = Annotated[
    Click
    | DoubleClick
    | TripleClick
    | MouseDown
    | MouseUp
    | Move
    | Drag
    | Scroll
    | TypeText
    | KeyPress
    | HoldKey
    | Wait
    | TakeScreenshot
    | CursorPosition
    | Zoom
    | Shell,
    Field(discriminator="type"),
]
"""Any action, discriminated by its ``type``."""

_ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def parse_action(data: Any) -> Action:
    """Validate a dict (or JSON string) as an action; raises ``pydantic.ValidationError``."""
    if isinstance(data, str | bytes):
        return _ACTION_ADAPTER.validate_json(data)
    return _ACTION_ADAPTER.validate_python(data)


def action_json_schema() -> dict[str, Any]:
    """The JSON schema of ``Action`` (a ``oneOf`` discriminated on ``type``)."""
    return _ACTION_ADAPTER.json_schema()


class CommandResult(_Model):
    """What a shell command did."""

    exit_code: int | None
    """The exit status; None when the command was killed (timeout) or died by a signal."""
    stdout: str
    """Standard output (decoded as UTF-8, undecodable bytes replaced)."""
    stderr: str
    """Standard error."""
    timed_out: bool = False
    """True when the command ran past its timeout and was killed; the output is partial."""
    duration_s: float = 0.0
    """Wall-clock time from start to exit."""

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_code == 0 and not self.timed_out


class ActionResult(_Model):
    """What an action did: a failure here is for the model to read, not an exception."""

    ok: bool
    """Whether the action was carried out."""
    error: str | None = None
    """Why it was not, in words the model can act on."""
    cursor: Point | None = None
    """The pointer position after the action (in the caller's coordinate space)."""
    command: CommandResult | None = None
    """For ``shell`` actions, what the command did."""
    duration_ms: float = 0.0
    """How long carrying out the action took."""
    image: bytes | None = Field(default=None, exclude=True, repr=False)
    """For ``zoom``, the PNG image of the region; never in dumps (JSON, records, events)."""

    @classmethod
    def failure(cls, error: str) -> ActionResult:
        """A result saying the action could not be done, and why."""
        return cls(ok=False, error=error)
