"""Replay fixtures: real model replies recorded by others, under ``tests/fixtures/replay/``.

Each ``<family>-<name>.yaml`` starts with a ``source:`` mapping (the public repository, path,
40-hex commit and where in the file the reply was recorded, plus its licence if known), then
``family``, ``model``, ``model_size`` (the space the model answered in), ``screen_size``,
``reply`` (the assistant text for text-protocol families, the parsed JSON body otherwise) and
``expect``: the decision kind and the actions with the screen coordinates computed by hand
from the coordinate rules of ``orchestrator.coords`` (the arithmetic is in each file's
comments). Only the fields a fixture lists are compared; ``expect_partial: true`` lets the
parser emit more actions around the expected ones (they must still appear in order).
An expected value ``{min: n}`` means "at least n".

Example:
    >>> from tests.fakes.replay import check, load_fixtures
    >>> from orchestrator.brains import parse_reply
    >>> for f in load_fixtures():
    ...     decision = parse_reply(f.family, f.reply, f.model_size, f.screen_size)
    ...     assert not check(decision, f.expect), f.name
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.domain import Family

__all__ = ["FIXTURES", "Expect", "Fixture", "Source", "check", "load_fixtures", "points"]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "replay"
"""Where the fixture files live."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    """Where a reply was recorded: enough to find the exact bytes again."""

    repository: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """``owner/name`` on GitHub."""
    path: str = Field(min_length=1)
    """The file inside the repository."""
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    """The commit whose file holds the reply."""
    where: str = Field(min_length=1)
    """Lines, cell or test name inside the file."""
    licence: str | None = None
    """The licence of the source, if known."""


class Expect(_Model):
    """What ``parse_reply`` must decide."""

    kind: Literal["act", "done", "fail", "ask", "await_approval", "retry"]
    """The decision's kind."""
    actions: list[dict[str, Any]] = Field(default_factory=list)
    """Expected actions, in order; each lists only the fields that are compared."""
    expect_partial: bool = False
    """True: the expected actions need only appear in order among the decision's actions."""

    @model_validator(mode="after")
    def _typed(self) -> Expect:
        for action in self.actions:
            if "type" not in action:
                raise ValueError(f"an expected action without a type: {action}")
        return self


class Fixture(_Model):
    """One recorded reply and what it must parse to."""

    name: str
    """The file's stem, ``<family>-<short-name>``."""
    source: Source
    family: Family
    model: str = Field(min_length=1)
    model_size: tuple[int, int]
    screen_size: tuple[int, int]
    reply: Any
    expect: Expect

    @model_validator(mode="after")
    def _consistent(self) -> Fixture:
        if not self.name.startswith(f"{self.family}-"):
            raise ValueError(
                f"{self.name}: the file name must start with its family {self.family!r}"
            )
        for what, (w, h) in (("model_size", self.model_size), ("screen_size", self.screen_size)):
            if w <= 0 or h <= 0:
                raise ValueError(f"{self.name}: bad {what} {w}x{h}")
        if self.family in ("uitars", "qwen-vl", "opencua"):
            if not isinstance(self.reply, str):
                raise ValueError(f"{self.name}: a {self.family} reply is the assistant's text")
        elif not isinstance(self.reply, dict):
            raise ValueError(f"{self.name}: a {self.family} reply is the parsed JSON body")
        return self


def load_fixtures(directory: Path = FIXTURES) -> list[Fixture]:
    """Every ``*.yaml`` fixture in ``directory``, validated, sorted by name.

    Raises ``ValueError`` naming the file when one does not start with a complete ``source:``
    header or does not validate.
    """
    fixtures = []
    for path in sorted(directory.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if not text.startswith("source:\n"):
            raise ValueError(f"{path.name}: a fixture must start with its source: mapping")
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path.name}: not a mapping")
        try:
            fixtures.append(Fixture.model_validate({"name": path.stem, **data}))
        except ValueError as e:
            raise ValueError(f"{path.name}: {e}") from e
    return fixtures


def _norm(value: Any) -> Any:
    """Points as ``[x, y]`` lists, whatever the model dumped them as."""
    if isinstance(value, dict) and set(value) == {"x", "y"}:
        return [value["x"], value["y"]]
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    return value


def _field_ok(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict) and set(expected) == {"min"}:
        return isinstance(actual, int | float) and actual >= expected["min"]
    return _norm(expected) == _norm(actual)


def _action_problems(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [
        f"{key}: expected {expected[key]!r}, got {actual.get(key, '<missing>')!r}"
        for key in expected
        if not _field_ok(expected[key], actual.get(key))
    ]


def check(decision: Any, expect: Expect) -> list[str]:
    """What differs between ``decision`` and ``expect`` (empty when it matches)."""
    kind = getattr(decision, "kind", None)
    if kind != expect.kind:
        detail = getattr(decision, "error", None) or getattr(decision, "reason", None)
        return [
            f"kind: expected {expect.kind!r}, got {kind!r}" + (f" ({detail})" if detail else "")
        ]
    actual = [a.model_dump() for a in getattr(decision, "actions", [])]
    if not expect.expect_partial:
        if len(actual) != len(expect.actions):
            return [
                f"{len(actual)} actions, expected {len(expect.actions)}: "
                f"{[a['type'] for a in actual]} vs {[e['type'] for e in expect.actions]}"
            ]
        problems = []
        for i, (e, a) in enumerate(zip(expect.actions, actual, strict=True)):
            problems += [f"action {i} ({a['type']}): {p}" for p in _action_problems(e, a)]
        return problems
    at = 0  # partial: the expected actions appear in order among the actual ones
    for i, e in enumerate(expect.actions):
        while at < len(actual) and _action_problems(e, actual[at]):
            at += 1
        if at == len(actual):
            return [f"expected action {i} {e} not found in order among {actual}"]
        at += 1
    return []


def points(decision: Any) -> list[tuple[int, int]]:
    """Every screen point a decision's actions name (clicks, moves, scrolls, drag paths)."""
    found = []
    for action in getattr(decision, "actions", []):
        data = action.model_dump()
        if data.get("x") is not None and data.get("y") is not None:
            found.append((data["x"], data["y"]))
        for p in data.get("path") or []:
            found.append((p["x"], p["y"]))
    return found
