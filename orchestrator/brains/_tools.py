"""Function tools generated from the action models, and tool calls parsed back into actions.

One function per action type (its name is the action's ``type``, its parameters the
model's JSON schema without ``type``, ``$ref``s inlined for servers that do not resolve
them), plus ``done(result)`` and ``fail(reason)`` to finish a task and ``ask_user(question)`` to
ask the person the task is for (the task waits for the answer, which comes back as the
call's result).

Example:
    >>> names = [t["function"]["name"] for t in chat_tools()]
    >>> names[:3], names[-3:]
    (['click', 'double_click', 'triple_click'], ['done', 'fail', 'ask_user'])
    >>> parse_call("click", '{"x": 5, "y": 7}')
    Click(type='click', x=5, y=7, button='left', keys=[])
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from ..actions import Action, ActionResult, Drag, Point, Zoom, parse_action
from ..coords import Mapper

__all__ = [
    "ASK_USER",
    "DONE",
    "FAIL",
    "ACTION_TYPES",
    "NOT_OFFERED",
    "ToolCallError",
    "action_arguments",
    "chat_tools",
    "describe_validation_error",
    "function_schemas",
    "parse_call",
    "result_text",
    "to_model",
    "to_screen",
]

DONE = "done"
"""The tool that finishes the task successfully, with a report."""
FAIL = "fail"
"""The tool that gives up on the task, with the reason."""
ASK_USER = "ask_user"
"""The tool that asks the person the task is for a question (the task waits for the answer)."""
_FINALS = {DONE: "result", FAIL: "reason", ASK_USER: "question"}
"""The tools that are no action, and their one argument."""

_MAX_OUTPUT_CHARS = 4000
"""Command output longer than this is cut (head and tail kept) before the model sees it."""


class ToolCallError(ValueError):
    """A tool call cannot be carried out; the message is for the model to read."""


def _action_models() -> list[type[BaseModel]]:
    union = typing.get_args(Action)[0]
    return [m for m in typing.get_args(union) if isinstance(m, type) and issubclass(m, BaseModel)]


def _type_of(model: type[BaseModel]) -> str:
    default = model.model_fields["type"].default
    if not isinstance(default, str):  # pragma: no cover - every action has a literal type
        raise TypeError(f"{model.__name__} has no literal `type` default")
    return default


NOT_OFFERED = frozenset({"zoom"})
"""Action types not offered as function tools: ``zoom`` answers with an image, which tool
results here (JSON text) do not carry back to the model."""

ACTION_TYPES: tuple[str, ...] = tuple(
    t for t in (_type_of(m) for m in _action_models()) if t not in NOT_OFFERED
)
"""Every action type offered as a tool, in the order of the ``Action`` union."""


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = copy.deepcopy(defs[ref.removeprefix("#/$defs/")])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline_refs({**target, **rest}, defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k not in ("$defs", "title")}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@cache
def _function_schemas() -> tuple[tuple[str, str, str], ...]:
    out: list[tuple[str, str, str]] = []
    for model in _action_models():
        if _type_of(model) in NOT_OFFERED:
            continue
        schema = model.model_json_schema()
        description = str(schema.pop("description", "") or model.__name__)
        params = _inline_refs(schema, schema.get("$defs", {}))
        params["properties"].pop("type", None)
        params["required"] = [r for r in params.get("required", []) if r != "type"]
        out.append((_type_of(model), description, json.dumps(params)))
    for name, description, arg, arg_doc in (
        (
            DONE,
            "Finish the task: it is done and verified. Give the report the requester needs.",
            "result",
            "What was achieved, with the facts the requester needs (paths, versions, URLs).",
        ),
        (
            FAIL,
            "Give up on the task because it cannot be done; say why.",
            "reason",
            "Why the task cannot be done, in a sentence or two.",
        ),
        (
            ASK_USER,
            "Ask the person who gave you the task a question, when only they can answer it "
            "(a choice, a missing detail, a confirmation). The task waits for the answer, "
            "which comes back as this call's result. Call it alone.",
            "question",
            "The question, complete and self-contained.",
        ),
    ):
        params = {
            "type": "object",
            "properties": {arg: {"type": "string", "description": arg_doc}},
            "required": [arg],
            "additionalProperties": False,
        }
        out.append((name, description, json.dumps(params)))
    return tuple(out)


def function_schemas(
    *, only: frozenset[str] | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, description, parameters)`` of every tool (or of those in ``only``)."""
    return [
        (name, description, json.loads(params))
        for name, description, params in _function_schemas()
        if only is None or name in only
    ]


def chat_tools() -> list[dict[str, Any]]:
    """The tools in Chat Completions form: ``{"type": "function", "function": {...}}``."""
    return [
        {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": params},
        }
        for name, description, params in function_schemas()
    ]


def describe_validation_error(error: ValidationError, *, skip: int = 0) -> str:
    """A compact, model-readable account of a validation error: ``path: message; ...``.

    ``skip`` drops that many leading location parts (e.g. the union tag of an action).
    """
    parts = []
    for e in error.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"][skip:])
        parts.append(f"{loc}: {e['msg']}" if loc else str(e["msg"]))
    return "; ".join(parts)


def _arguments(name: str, arguments: str | None) -> dict[str, Any]:
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError as e:
        raise ToolCallError(f"the arguments of {name} are not valid JSON ({e})") from None
    except (ValueError, RecursionError):  # a number over 4,300 digits; nesting too deep
        raise ToolCallError(
            f"the arguments of {name} are not JSON this side reads (too deeply nested, or a "
            "number too long)"
        ) from None
    if not isinstance(args, dict):
        raise ToolCallError(f"the arguments of {name} must be a JSON object")
    return args


def parse_call(name: str, arguments: str | None) -> Action | tuple[str, str]:
    """Turn a tool call into an action, or ``(DONE|FAIL|ASK_USER, text)``; raises
    ``ToolCallError``."""
    args = _arguments(name, arguments)
    if name in _FINALS:
        key = _FINALS[name]
        text = args.get(key)
        extra = sorted(set(args) - {key})
        if not isinstance(text, str) or extra:
            raise ToolCallError(
                f"{name} takes exactly one argument, {key!r} (a string)"
                + (f"; unexpected: {extra}" if extra else "")
            )
        if name == ASK_USER and not text.strip():
            raise ToolCallError("ask_user needs a question (a non-empty string)")
        return (name, text)
    if name not in ACTION_TYPES:
        raise ToolCallError(
            f"there is no tool named {name!r}; the tools are: "
            + ", ".join([*ACTION_TYPES, *_FINALS])
        )
    args.pop("type", None)
    try:
        return parse_action({"type": name, **args})
    except ValidationError as e:
        raise ToolCallError(
            f"invalid arguments for {name}: {describe_validation_error(e, skip=1)}"
        ) from None


def _map_points(action: Action, point: Callable[[int, int], tuple[int, int]]) -> Action:
    if isinstance(action, Drag):
        path = [Point(x=x, y=y) for x, y in (point(p.x, p.y) for p in action.path)]
        return action.model_copy(update={"path": path})
    if isinstance(action, Zoom):  # a region: both corners
        (x0, y0), (x1, y1) = point(action.x0, action.y0), point(action.x1, action.y1)
        return action.model_copy(update={"x0": x0, "y0": y0, "x1": x1, "y1": y1})
    x, y = getattr(action, "x", None), getattr(action, "y", None)
    if isinstance(x, int) and isinstance(y, int):
        x, y = point(x, y)
        return action.model_copy(update={"x": x, "y": y})
    return action


def to_screen(action: Action, mapper: Mapper) -> Action:
    """``action`` with its points (``x``/``y``, a drag's ``path``) mapped from the model's
    space to screen pixels; ``OutOfSpaceError`` (a ``ValueError``) for a point outside it.

    Example:
        >>> from orchestrator.actions import Click
        >>> mapper = Mapper(model_size=(1000, 1000), screen_size=(1920, 1080))
        >>> to_screen(Click(x=500, y=500), mapper)
        Click(type='click', x=960, y=540, button='left', keys=[])
    """
    return _map_points(action, mapper.point)


def to_model(action: Action, mapper: Mapper) -> Action:
    """``action`` (in screen pixels) with its points in the model's space, to show it back
    to the model (a history the brain did not write)."""
    return _map_points(action, mapper.to_model)


def action_arguments(action: Action) -> str:
    """An action's tool-call arguments (its JSON without ``type``), for rebuilding history."""
    return json.dumps(action.model_dump(mode="json", exclude={"type"}))


def _cut(text: str) -> str:
    if len(text) <= _MAX_OUTPUT_CHARS:
        return text
    half = _MAX_OUTPUT_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def result_text(result: ActionResult, mapper: Mapper | None = None) -> str:
    """An action's result as the JSON the model reads (long command output cut; the
    ``cursor``, in screen pixels, shown in the model's space when ``mapper`` is given)."""
    if mapper is not None and result.cursor is not None:
        x, y = mapper.to_model(result.cursor.x, result.cursor.y)
        result = result.model_copy(update={"cursor": Point(x=x, y=y)})
    data = result.model_dump(mode="json", exclude_none=True)
    command = data.get("command")
    if isinstance(command, dict):
        for key in ("stdout", "stderr"):
            if isinstance(command.get(key), str):
                command[key] = _cut(command[key])
    return json.dumps(data)
