"""The progress a ``wait()`` shows: steps of the step budget while a task works itself,
its subtasks done once it delegated; tqdm's bar, or a status line without tqdm."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from orchestrator.sdk._progress import Progress


def test_the_bar_counts_steps_then_subtasks(capsys: pytest.CaptureFixture[str]) -> None:
    p = Progress("task-1", 50)
    bar: Any = p._bar
    assert bar is not None and bar.total == 50 and bar.unit == "step"
    p.update("running", 3)
    assert bar.n == 3
    p.update("waiting", 3, (0, 3))  # it delegated: three subtasks started
    assert (bar.n, bar.total, bar.unit) == (0, 3, "subtask")
    p.update("waiting", 3, (2, 3))
    p.update("succeeded", 3, (3, 3))
    assert (bar.n, bar.total) == (3, 3)
    p.close()
    err = capsys.readouterr().err
    assert "3/3" in err and "succeeded" in err


def test_without_tqdm_a_status_line_per_change(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = builtins.__import__

    def no_tqdm(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("importlib.import_module", lambda name: no_tqdm(name, fromlist=["x"]))
    p = Progress("task-2", 10)
    assert p._bar is None
    p.update("running", 1)
    p.update("running", 2)  # not a terminal: no line for a step alone
    p.update("waiting", 2, (1, 2))
    p.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("task-2: running, 1/10 steps done")
    assert lines[1].startswith("task-2: waiting, 1/2 subtasks done")
