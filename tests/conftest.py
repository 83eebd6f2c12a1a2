"""Shared test configuration: integration tests need a Docker engine and the desktop image."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest


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
