"""Usage, cost and budgets: what a task (and its subtree of subtasks) spent, and the limits a
task sets for its whole subtree.

- ``Usage``: model calls, input and output tokens, cost in USD of the calls to priced
  models and how many calls had no configured price (``unpriced_calls``: their cost is
  unknown, never 0), steps (actions carried out on desktops) and wall seconds (time its
  tasks were ``running``: not waiting on subtasks or a person).
  Usages add up (``a + b``); a subtree's is the sum of its tasks'.
- ``Price`` / ``Prices``: USD per million tokens by model name or glob (``gpt-4o*``),
  configured with ``ORCHESTRATOR_MODEL_PRICES`` (JSON, or the path of a JSON or YAML file);
  none is assumed. ``cost`` prices one model call.
- ``Budget``: limits (steps, tokens, cost, wall time) for a task's whole subtree;
  ``Budget.exceeded`` says which limit a usage is over, in words.

Example:
    >>> prices = parse_prices('{"gpt-4o*": {"input": 2.5, "output": 10}}')
    >>> call = Usage.of_call("gpt-4o-2024-08-06", 1000, 100, prices)
    >>> mystery = Usage.of_call("mystery", 1000, 100, prices)
    >>> call.cost_usd, mystery.cost_usd, mystery.unpriced_calls
    (0.0035, 0.0, 1)
    >>> Budget(tokens=1000).exceeded(call + call)
    '2,200 tokens of 1,000'
"""

from __future__ import annotations

import fnmatch
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import ConfigError

if TYPE_CHECKING:
    from .domain import TokenUsage

__all__ = [
    "Budget",
    "Price",
    "Prices",
    "Usage",
    "check_budget",
    "configured_prices",
    "cost",
    "parse_prices",
    "price_of",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Price(_Model):
    """What a model's tokens cost, in USD per million tokens."""

    input: Annotated[float, Field(ge=0)]
    """Per million input (prompt) tokens."""
    output: Annotated[float, Field(ge=0)]
    """Per million output (completion) tokens."""
    cached_input: Annotated[float, Field(ge=0)] | None = None
    """Per million input tokens read from the provider's prompt cache (default: ``input``)."""


Prices = dict[str, Price]
"""Prices by model name or glob (``fnmatch``: ``gpt-4o*``, ``claude-*``); an exact name wins
over globs, a longer glob over a shorter one."""

_PRICES = TypeAdapter(Prices)


class Usage(_Model):
    """What a task (or a subtree, or an agent) spent. Usages add up with ``+``.

    Example:
        >>> u = Usage(model_calls=1, input_tokens=10, output_tokens=2, unpriced_calls=1)
        >>> u = u + Usage(model_calls=1, cost_usd=0.5)
        >>> u.tokens, u.cost_usd, u.unpriced_calls
        (12, 0.5, 1)
    """

    model_calls: int = 0
    """Calls to a model (a reply sent back and asked again counts each time)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """What the calls to priced models cost, in USD (calls of a model without a configured
    price are not in it: see ``unpriced_calls``)."""
    unpriced_calls: int = 0
    """Calls to models without a configured price: their cost is unknown (not free) and not
    in ``cost_usd``."""
    steps: int = 0
    """Actions carried out on desktops (each action of a decision is one step)."""
    wall_s: float = 0.0
    """Seconds its tasks were ``running`` (waiting on subtasks or on a person not counted;
    tasks running at once each count)."""

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            model_calls=self.model_calls + other.model_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
            steps=self.steps + other.steps,
            wall_s=self.wall_s + other.wall_s,
        )

    @classmethod
    def of_call(
        cls,
        model: str | None,
        input_tokens: int,
        output_tokens: int,
        prices: Prices,
        *,
        cached_input_tokens: int = 0,
        calls: int = 1,
    ) -> Usage:
        """The usage of ``calls`` model calls of ``model`` that used these tokens in all."""
        price = price_of(model, prices)
        return cls(
            model_calls=calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=0.0
            if price is None
            else _priced(price, input_tokens, output_tokens, cached_input_tokens),
            unpriced_calls=calls if price is None else 0,
        )

    def summary(self) -> str:
        """One line for people: ``3 calls, 12,400 tokens, $0.0310, 7 steps, 41 s``."""
        cost = f"${self.cost_usd:.4f}"
        if self.unpriced_calls:
            cost += f" + {self.unpriced_calls} unpriced calls"
        return (
            f"{self.model_calls} calls, {self.tokens:,} tokens, {cost}, "
            f"{self.steps} steps, {self.wall_s:.0f} s"
        )


class Budget(_Model):
    """Limits for a task's whole subtree (the task and all its subtasks, recursively): once
    the subtree's usage exceeds any of them, the subtree is cancelled with the reason.

    Example:
        >>> Budget(steps=5).exceeded(Usage(steps=6))
        '6 steps of 5'
    """

    steps: Annotated[int, Field(ge=1)] | None = None
    """Most actions carried out on desktops."""
    tokens: Annotated[int, Field(ge=1)] | None = None
    """Most model tokens (input and output)."""
    cost_usd: Annotated[float, Field(gt=0)] | None = None
    """Most USD spent on models (calls to models without a configured price are not
    counted: their cost is unknown). Refused (``check_budget``) when no prices are
    configured at all."""
    wall_s: Annotated[float, Field(gt=0)] | None = None
    """Most seconds its tasks may be running, summed (see ``Usage.wall_s``)."""

    def exceeded(self, usage: Usage) -> str | None:
        """Which limit ``usage`` is over, in words (``"12,400 tokens of 10,000"``), or None."""
        if self.steps is not None and usage.steps > self.steps:
            return f"{usage.steps:,} steps of {self.steps:,}"
        if self.tokens is not None and usage.tokens > self.tokens:
            return f"{usage.tokens:,} tokens of {self.tokens:,}"
        if self.cost_usd is not None and usage.cost_usd > self.cost_usd:
            return f"${usage.cost_usd:.4f} of ${self.cost_usd:.4f}"
        if self.wall_s is not None and usage.wall_s > self.wall_s:
            return f"{usage.wall_s:.1f} s of {self.wall_s:g} s running"
        return None


def check_budget(budget: Budget | None, prices: Prices) -> None:
    """``ConfigError`` for a cost budget when no model prices are configured at all: it
    could never be exceeded (every call's cost is unknown)."""
    if budget is not None and budget.cost_usd is not None and not prices:
        raise ConfigError(
            "budget.cost_usd needs model prices (ORCHESTRATOR_MODEL_PRICES); none are configured"
        )


def _priced(price: Price, input_tokens: int, output_tokens: int, cached: int) -> float:
    cached = min(max(cached, 0), input_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    usd = (
        (input_tokens - cached) * price.input + cached * cached_rate + output_tokens * price.output
    ) / 1_000_000
    return round(usd, 10)


def price_of(model: str | None, prices: Prices) -> Price | None:
    """The price of ``model``: its exact entry, else the longest glob that matches; None when
    none does (or the model is not known)."""
    if model is None:
        return None
    if model in prices:
        return prices[model]
    globs = sorted((p for p in prices if fnmatch.fnmatchcase(model, p)), key=len, reverse=True)
    return prices[globs[0]] if globs else None


def cost(token_usage: TokenUsage, prices: Prices) -> float | None:
    """What one model call cost in USD, or None when its model has no price in ``prices``."""
    price = price_of(token_usage.model, prices)
    if price is None:
        return None
    cached = int(getattr(token_usage, "cached_input_tokens", 0) or 0)
    return _priced(price, token_usage.input_tokens, token_usage.output_tokens, cached)


def parse_prices(text: str | None) -> Prices:
    """Prices from ``ORCHESTRATOR_MODEL_PRICES``: JSON (``{"gpt-4o*": {"input": 2.5, "output":
    10}}``) or the path of a ``.json``/``.yaml``/``.yml`` file holding the same; empty: none.
    ``ConfigError`` naming what is wrong."""
    if text is None or not text.strip():
        return {}
    raw: Any
    source = text.strip()
    if source.startswith("{"):
        try:
            raw = json.loads(source)
        except json.JSONDecodeError as e:
            raise ConfigError(f"ORCHESTRATOR_MODEL_PRICES is not valid JSON: {e}") from None
    else:
        path = Path(source).expanduser()
        try:
            body = path.read_text()
        except OSError as e:
            raise ConfigError(f"ORCHESTRATOR_MODEL_PRICES: cannot read {path}: {e}") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(body)
            else:
                raw = json.loads(body)
        except Exception as e:  # noqa: BLE001 - a parse error of either format
            raise ConfigError(f"ORCHESTRATOR_MODEL_PRICES: {path} is unreadable: {e}") from None
    try:
        return _PRICES.validate_python(raw or {})
    except ValidationError as e:
        raise ConfigError(f"ORCHESTRATOR_MODEL_PRICES: {e}") from None


@lru_cache(maxsize=4)
def _parsed(text: str | None) -> tuple[tuple[str, Price], ...]:
    return tuple(parse_prices(text).items())


def configured_prices() -> Prices:
    """The prices this process was configured with (``ORCHESTRATOR_MODEL_PRICES``)."""
    from .config import settings

    return dict(_parsed(settings().model_prices))
