"""Shared test configuration: integration tests need a Docker engine and the desktop image."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

# The tests' operator allows the fake model servers (tests/fakes/openai_server.py at /v1,
# tests/fakes/anthropic_server.py at the root: the anthropic client adds /v1), which
# listen on ephemeral loopback ports; set before any Ray cluster starts, so its workers see
# it too. Tests of the default (nothing but OpenAI's endpoint) unset it with `operator_env`.
os.environ.setdefault("ORCHESTRATOR_MODEL_BASE_URLS", "http://127.0.0.1:*/v1,http://127.0.0.1:*")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Anything under tests/integration is an integration test, marked or not.
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set environment variables as an operator would (``None`` unsets one) and re-read the
    settings; both are restored after the test."""
    from orchestrator.config import settings

    def set_env(**env: str | None) -> None:
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    settings.cache_clear()
