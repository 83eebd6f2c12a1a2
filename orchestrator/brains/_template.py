"""A tiny, safe template language for scripts: ``{{ outputs[-1] }}``, ``{{ results.build }}``.

A placeholder is ``{{ ROOT ACCESS* FILTER? }}``:

- ``ROOT``: ``outputs`` (the output of every shell command the script ran so far, stdout
  then stderr, stripped), ``results`` (results of prerequisite subtasks, or of the
  delegating agent's subtasks, by id), ``task`` (the task's description), ``role``, or
  ``feedback`` and ``round`` (a review round's: the reviewer's feedback, the round number).
- ``ACCESS``: ``[0]``, ``[-1]`` (list index), ``[key]``, ``["key"]``, ``.key`` (dict key).
- ``FILTER``: ``| q`` quotes the value for a shell command (``shlex.quote``).

Nothing is evaluated: there is no attribute access, no call and no expression. Text in
``{{ }}`` that does not start with a root name (a Go template such as ``{{.Names}}``, say)
is left as it is, so shell commands pass through untouched.

Example:
    >>> print(render("echo {{ outputs[-1] }} {{ results.build | q }}",
    ...              {"outputs": ["a", "b"], "results": {"build": "all ok"}}))
    echo b 'all ok'
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["ROOTS", "TemplateError", "check_template", "render"]

ROOTS = ("outputs", "results", "task", "role", "feedback", "round")
"""The names a placeholder may start with."""

_PLACEHOLDER = re.compile(r"\{\{\s*(" + "|".join(ROOTS) + r")\b(.*?)\}\}", re.DOTALL)
_ACCESS = re.compile(
    r"""\s*(?:\[\s*(?:(-?\d+)|'([^']*)'|"([^"]*)"|([A-Za-z0-9_.-]+))\s*\]|\.([A-Za-z0-9_-]+))"""
)
_FILTER = re.compile(r"\s*\|\s*([A-Za-z_]+)\s*")
_FILTERS = {"q": shlex.quote}


class TemplateError(ValueError):
    """A template is malformed, or names a value that does not exist."""


def _parse(root: str, rest: str) -> tuple[list[int | str], str | None]:
    """The accessors and the filter of a placeholder's text after its root."""
    path: list[int | str] = []
    pos = 0
    while m := _ACCESS.match(rest, pos):
        index, single, double, bare, dotted = m.groups()
        if index is not None:
            path.append(int(index))
        else:
            key = next(k for k in (single, double, bare, dotted) if k is not None)
            path.append(key)
        pos = m.end()
    filt = None
    if m := _FILTER.match(rest, pos):
        filt = m.group(1)
        if filt not in _FILTERS:
            raise TemplateError(
                f"{{{{ {root}{rest}}}}}: unknown filter {filt!r} (known: {', '.join(_FILTERS)})"
            )
        pos = m.end()
    if rest[pos:].strip():
        raise TemplateError(
            f"{{{{ {root}{rest}}}}}: cannot read {rest[pos:].strip()!r}; write e.g. "
            "{{ outputs[-1] }}, {{ results.build }} or {{ results['my.id'] | q }}"
        )
    return path, filt


def check_template(text: str) -> str:
    """Return ``text`` if its placeholders are well formed; raise ``TemplateError`` if not."""
    for m in _PLACEHOLDER.finditer(text):
        _parse(m.group(1), m.group(2))
    return text


def _lookup(root: str, path: list[int | str], scope: Mapping[str, Any]) -> str:
    value: Any = scope.get(root, "")
    where = root
    for key in path:
        if isinstance(value, list):
            if not isinstance(key, int):
                raise TemplateError(f"{where} is a list: index it with a number, not {key!r}")
            if not -len(value) <= key < len(value):
                raise TemplateError(f"{where}[{key}] does not exist ({len(value)} item(s))")
            value = value[key]
            where += f"[{key}]"
        elif isinstance(value, Mapping):
            name = str(key)
            if name not in value:
                known = ", ".join(map(str, value)) or "none"
                raise TemplateError(f"{where} has no {name!r} (known: {known})")
            value = value[name]
            where += f".{name}"
        else:
            raise TemplateError(f"{where} is text: it has no {key!r}")
    if isinstance(value, list | Mapping):
        raise TemplateError(f"{where} is a collection: pick an item, e.g. {where}[-1]")
    return str(value)


def render(text: str, scope: Mapping[str, Any]) -> str:
    """Fill in the placeholders of ``text`` from ``scope``; raises ``TemplateError``."""

    def fill(m: re.Match[str]) -> str:
        root = m.group(1)
        path, filt = _parse(root, m.group(2))
        value = _lookup(root, path, scope)
        return _FILTERS[filt](value) if filt else value

    return _PLACEHOLDER.sub(fill, text)
