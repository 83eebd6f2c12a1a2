"""Usage, prices and budgets (orchestrator.usage): a glob price, no price -> cost None (not
0), prices from JSON or a YAML file, usages adding up, budgets saying which limit is over."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import settings
from orchestrator.domain import TaskInfo, TaskSpec, TokenUsage
from orchestrator.errors import ConfigError
from orchestrator.usage import (
    Budget,
    Price,
    Usage,
    configured_prices,
    cost,
    parse_prices,
    price_of,
)

PRICES = parse_prices(
    '{"gpt-4o*": {"input": 2.5, "output": 10, "cached_input": 1.25},'
    ' "gpt-4o-mini*": {"input": 0.15, "output": 0.6},'
    ' "claude-sonnet-4-5": {"input": 3, "output": 15}}'
)


def test_a_glob_prices_every_model_it_matches_and_the_longest_glob_wins() -> None:
    assert cost(TokenUsage(input_tokens=1_000_000, model="gpt-4o-2024-08-06"), PRICES) == 2.5
    mini = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000, model="gpt-4o-mini-1")
    assert cost(mini, PRICES) == pytest.approx(0.75)
    exact = TokenUsage(input_tokens=1000, output_tokens=1000, model="claude-sonnet-4-5")
    assert cost(exact, PRICES) == pytest.approx(0.018)
    assert price_of("gpt-4o", PRICES) == Price(input=2.5, output=10, cached_input=1.25)


def test_a_model_without_a_price_costs_none_not_zero() -> None:
    assert cost(TokenUsage(input_tokens=10, model="mystery-model"), PRICES) is None
    assert cost(TokenUsage(input_tokens=10, model=None), PRICES) is None
    assert cost(TokenUsage(input_tokens=10, model="gpt-4o"), {}) is None
    # a call that used nothing of a priced model is free, and that is known
    assert cost(TokenUsage(model="gpt-4o"), PRICES) == 0.0


def test_cached_input_tokens_are_priced_at_the_cached_rate() -> None:
    call = TokenUsage(input_tokens=1_000_000, cached_input_tokens=400_000, model="gpt-4o")
    assert cost(call, PRICES) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)
    # no cached price: the input price
    mini = TokenUsage(input_tokens=1_000_000, cached_input_tokens=1_000_000, model="gpt-4o-mini")
    assert cost(mini, PRICES) == pytest.approx(0.15)


def test_usages_add_up_and_unpriced_calls_are_counted_apart() -> None:
    priced = Usage.of_call("gpt-4o", 1000, 100, PRICES)
    unpriced = Usage.of_call("mystery", 50, 5, PRICES)
    assert priced.cost_usd == pytest.approx(0.0035)
    total = priced + priced + Usage(steps=3, wall_s=1.5)
    assert (total.model_calls, total.tokens, total.steps, total.wall_s) == (2, 2200, 3, 1.5)
    assert total.cost_usd == pytest.approx(0.007)
    assert (total + unpriced).cost_usd == pytest.approx(0.007)  # the priced calls' cost
    assert (total + unpriced).unpriced_calls == 1  # and one call of unknown cost
    assert (total + unpriced).tokens == 2255
    assert Usage().cost_usd == 0.0  # nothing spent: free, and known
    assert "+ 1 unpriced calls" in (total + unpriced).summary()


def test_a_budget_names_the_limit_that_is_exceeded() -> None:
    spent = Usage(model_calls=3, input_tokens=12_000, output_tokens=400, cost_usd=0.5, steps=7)
    assert Budget(tokens=10_000).exceeded(spent) == "12,400 tokens of 10,000"
    assert Budget(steps=6).exceeded(spent) == "7 steps of 6"
    assert Budget(steps=7).exceeded(spent) is None  # reaching a limit is not exceeding it
    assert Budget(cost_usd=0.25).exceeded(spent) == "$0.5000 of $0.2500"
    assert Budget(wall_s=1).exceeded(spent.model_copy(update={"wall_s": 2.5})) is not None
    assert Budget(steps=100, tokens=100_000).exceeded(spent) is None
    # calls of unknown cost do not count against a cost limit; the priced ones still do
    unpriced = Usage(model_calls=5, unpriced_calls=5)
    assert Budget(cost_usd=0.01).exceeded(unpriced) is None
    assert Budget(cost_usd=0.25).exceeded(spent + unpriced) == "$0.5000 of $0.2500"


def test_a_task_spec_carries_a_budget_for_its_subtree() -> None:
    spec = TaskSpec(description="x", budget={"steps": 5, "tokens": 1000})
    assert spec.budget == Budget(steps=5, tokens=1000)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        TaskSpec(description="x", budget={"steps": 0})
    shown = TaskInfo(id="task-1", agent_id="agent-1", spec=spec, usage=Usage(steps=2))
    assert TaskInfo.model_validate_json(shown.model_dump_json()).usage == Usage(steps=2)


def test_prices_come_from_json_or_a_yaml_or_json_file(tmp_path: Path) -> None:
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text("'gpt-5*':\n  input: 1.25\n  output: 10\n")
    assert parse_prices(str(yaml_file)) == {"gpt-5*": Price(input=1.25, output=10)}
    json_file = tmp_path / "prices.json"
    json_file.write_text('{"m": {"input": 1, "output": 2}}')
    assert parse_prices(str(json_file)) == {"m": Price(input=1, output=2)}
    assert parse_prices(None) == {} and parse_prices("  ") == {}
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_prices("{nope")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_prices(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="output"):
        parse_prices('{"m": {"input": 1}}')


def test_the_configured_prices_are_read_from_the_environment(
    operator_env: Callable[..., None],
) -> None:
    operator_env(ORCHESTRATOR_MODEL_PRICES='{"gpt-4o*": {"input": 2.5, "output": 10}}')
    assert configured_prices() == {"gpt-4o*": Price(input=2.5, output=10)}
    operator_env(ORCHESTRATOR_MODEL_PRICES='{"gpt-4o*": {"input": -1, "output": 1}}')
    with pytest.raises(ConfigError, match="ORCHESTRATOR_MODEL_PRICES"):
        settings()
    operator_env(ORCHESTRATOR_MODEL_PRICES=None)
    assert configured_prices() == {}  # none assumed
