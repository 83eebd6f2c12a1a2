"""One entry point for turning a model's reply into a decision: ``parse_reply``.

Pure and importable without Ray, the ``openai`` or the ``anthropic`` package: replay tests
and outside checks call it with replies as servers sent them. Each family's parser lives in
its own module (``_parse_<family>``) with the signature ``parse(reply, mapper) -> Decision``;
the brains use the same parsers (plus whatever else the module offers, such as call ids).

Example:
    >>> parse_reply("uitars", "Thought: open it\\nAction: click(start_box='(500,500)')",
    ...             (1000, 1000), (1920, 1080)).actions[0]
    Click(type='click', x=960, y=540, button='left', keys=[])
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol, cast

from ..coords import Mapper, Size
from ..domain import FAMILIES, Decision, Family, Retry

_log = logging.getLogger(__name__)

_UNEXPECTED = (
    ValueError,
    OverflowError,
    RecursionError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
)
"""What a family parser might still raise on a reply nobody foresaw: a ``Retry``, logged."""

__all__ = ["parse_reply"]

_MODULES: dict[Family, str] = {
    "chat-tools": "._parse_chat",
    "openai-responses": "._parse_responses",
    "anthropic": "._parse_anthropic",
    "uitars": "._parse_uitars",
    "qwen-vl": "._parse_qwen",
    "opencua": "._parse_opencua",
}


class _Parser(Protocol):
    def parse(self, reply: Any, mapper: Mapper) -> Decision: ...


def parse_reply(family: Family, reply: Any, model_size: Size, screen_size: Size) -> Decision:
    """The decision a model of ``family`` made in ``reply``, in integer screen pixels.

    - ``reply``: as the server sent it: the parsed JSON body (a dict) for
      ``openai-responses``, ``anthropic`` and ``chat-tools``; the assistant's text for
      ``uitars``, ``qwen-vl`` and ``opencua`` (a whole chat-completion dict is accepted too).
    - ``model_size``: the space the model answered in: the size of the image it was sent
      (the ``smart_resize``d size for pixel-grid models), or ``(1000, 1000)`` for a reply in
      0..1000; 0..1 coordinates are fractions of it.
    - ``screen_size``: the screen's ``(width, height)``.

    A reply that cannot be used (an unknown action, bad arguments, a point outside the space)
    is a ``Retry`` with what was wrong, not an exception; a bad ``family`` or size is
    ``ValueError``. A parser's own bug on a strange reply is a ``Retry`` too (and logged).
    """
    if family not in _MODULES:
        raise ValueError(f"unknown model family {family!r}; one of {', '.join(FAMILIES)}")
    mapper = Mapper(model_size=tuple(model_size), screen_size=tuple(screen_size))  # type: ignore[arg-type]
    module = cast(_Parser, importlib.import_module(_MODULES[family], __package__))
    try:
        return module.parse(reply, mapper)
    except _UNEXPECTED as e:
        _log.warning("the %s parser failed on a reply: %s: %.200s", family, type(e).__name__, e)
        return Retry(
            error=f"the reply could not be read ({type(e).__name__}): answer in the format "
            "asked for, with plain numbers and short texts"
        )


def reply_text(reply: Any) -> str | None:
    """The assistant's text of a text-protocol reply: the string itself, or the first
    choice's message content of a chat-completion dict; None when there is none."""
    if isinstance(reply, str):
        return reply
    if isinstance(reply, dict):
        choices = reply.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):  # content parts: join the text ones
                    texts = [
                        p.get("text", "")
                        for p in content
                        if isinstance(p, dict) and p.get("type") == "text"
                    ]
                    return "".join(texts) if texts else None
    return None
