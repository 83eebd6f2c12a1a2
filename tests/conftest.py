"""Shared test configuration: integration tests need a Docker engine and the desktop image."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Anything under tests/integration is an integration test, marked or not.
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
