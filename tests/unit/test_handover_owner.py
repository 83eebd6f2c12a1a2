"""The owner of a handed-over desktop (``handover:<desktop id>``): whichever process the
host-only ``<sockdir>/owner`` file names, as the reaper judges it (no Docker, no Ray)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import settings
from orchestrator.desktop import owner_is_alive, process_owner
from orchestrator.desktop._container import SocketDir, handover_owner


@pytest.fixture
def desktops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime directory of this test's own; yields where its desktops' directories go."""
    monkeypatch.setenv("ORCHESTRATOR_RUNTIME_DIR", str(tmp_path))
    settings.cache_clear()
    yield tmp_path / "desktops"
    settings.cache_clear()


def _dead_owner() -> str:
    """The owner string of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = process_owner(proc.pid)
    proc.wait()
    return owner


def test_the_holder_named_in_the_owner_file_decides(desktops: Path) -> None:
    sockdir = SocketDir(desktops / "0123abcd45")
    sockdir.make()
    owner = handover_owner("0123abcd45")
    assert owner == "handover:0123abcd45"

    sockdir.write_owner(process_owner())  # the process that prepared it, alive
    assert owner_is_alive(owner)
    sockdir.write_owner(_dead_owner())  # handed to a process that has died since
    assert not owner_is_alive(owner)
    sockdir.write_owner(process_owner())  # rewritten in place, atomically
    assert owner_is_alive(owner)
    assert sockdir.owner_file.read_text() == process_owner()
    assert [p.name for p in sockdir.root.iterdir() if p.name.startswith("owner")] == ["owner"]


def test_no_owner_file_or_a_strange_id_counts_as_gone(desktops: Path) -> None:
    sockdir = SocketDir(desktops / "00ff00ff00")
    sockdir.make()
    assert not owner_is_alive(handover_owner("00ff00ff00"))  # never written, or removed
    assert not owner_is_alive(handover_owner("../../etc"))
    assert not owner_is_alive(handover_owner(""))
    sockdir.write_owner("nobody:knows")  # only a process may hold a desktop
    assert not owner_is_alive(handover_owner("00ff00ff00"))


def test_a_link_in_place_of_the_owner_file_is_not_followed(desktops: Path) -> None:
    sockdir = SocketDir(desktops / "0a0a0a0a0a")
    sockdir.make()
    elsewhere = desktops.parent / "elsewhere"
    elsewhere.write_text(process_owner())  # a live owner, reachable only through the link
    sockdir.owner_file.symlink_to(elsewhere)
    assert not owner_is_alive(handover_owner("0a0a0a0a0a"))
