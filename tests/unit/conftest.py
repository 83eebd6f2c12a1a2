"""Fixtures shared by the unit tests (they start nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.records import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A real record store in a fresh temporary directory."""
    with SQLiteStore(tmp_path) as s:
        yield s
