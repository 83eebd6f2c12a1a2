"""The pure parts of autoscaling: the autoscaler's config of ``orchestrator up --autoscale``,
the head's environment, the schedule timeout with and without an autoscaler, and
``wait_placed`` (a notice while an agent waits for a node, ``CapacityError`` at the limit)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from actors import _hire
from orchestrator import cli, local
from orchestrator._local_autoscale import (
    HEAD_TYPE,
    WORKER_TYPE,
    Autoscale,
    autoscaling_config,
    head_env,
    write_config,
)
from orchestrator.config import Settings
from orchestrator.errors import CapacityError


def test_config_declares_desktop_workers_on_this_gcs(tmp_path: Path) -> None:
    opts = Autoscale(max_workers=4, worker_desktops=3, idle_timeout_s=18)
    config = autoscaling_config(opts, "127.0.0.1:6390")
    assert config["provider"]["type"] == "fake_multinode"
    assert config["provider"]["gcs_address"] == "127.0.0.1:6390"  # else new nodes try 6379
    assert config["idle_timeout_minutes"] == pytest.approx(0.3)
    assert config["max_workers"] == 4
    worker = config["available_node_types"][WORKER_TYPE]
    assert worker["resources"] == {"CPU": 1, "desktop": 3}
    assert (worker["min_workers"], worker["max_workers"]) == (0, 4)
    assert config["head_node_type"] == HEAD_TYPE in config["available_node_types"]
    path = write_config(tmp_path, opts, "127.0.0.1:6390")
    assert json.loads(path.read_text()) == config  # JSON is YAML: Ray reads it as such
    assert path.stat().st_mode & 0o777 == 0o600


def test_head_env_turns_the_runtime_to_autoscaling() -> None:
    env = head_env(Autoscale(update_interval_s=2))
    assert env == {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # the fake workers' listeners on loopback
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "2",
        "ORCHESTRATOR_AUTOSCALE": "1",
    }


@pytest.mark.parametrize(
    "bad", [{"max_workers": 0}, {"idle_timeout_s": 1}, {"worker_desktops": 0}, {"x": 1}]
)
def test_options_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Autoscale(**bad)


def test_schedule_timeout_covers_a_node_start_only_with_an_autoscaler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_AUTOSCALE", raising=False)
    assert Settings().schedule_timeout_s() == 60.0  # today's behaviour
    monkeypatch.setenv("ORCHESTRATOR_AUTOSCALE", "1")
    assert Settings().schedule_timeout_s() == 300.0
    monkeypatch.setenv("ORCHESTRATOR_AUTOSCALE_SCHEDULE_TIMEOUT_S", "120")
    assert Settings().schedule_timeout_s() == 120.0
    monkeypatch.setenv("ORCHESTRATOR_AUTOSCALE", "0")
    assert Settings().schedule_timeout_s() == 60.0


class _Handle:
    """An actor handle whose ``get_info`` answers once ``placed`` is set."""

    def __init__(self) -> None:
        self.placed = asyncio.Event()
        self.get_info = self

    def remote(self) -> Any:
        async def info() -> str:
            await self.placed.wait()
            return "info"

        return info()


def _settings(monkeypatch: pytest.MonkeyPatch, *, placed: bool = False, **values: Any) -> None:
    """Settings ``values``; Ray says the actor is placed (``placed``) or waits for a node."""
    conf = Settings(**values)
    monkeypatch.setattr(_hire, "settings", lambda: conf)
    monkeypatch.setattr(_hire, "WAITING_NOTICE_S", 0.05)
    monkeypatch.setattr(_hire, "unplaced", lambda handle: not placed)


async def test_wait_placed_says_once_that_it_waits_for_a_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _settings(monkeypatch, autoscale=True)
    handle, said = _Handle(), []

    async def notice(text: str) -> None:
        said.append(text)
        handle.placed.set()  # a node came up

    await _hire.wait_placed(handle, "t/a", notice)
    assert said == ["waiting for a node with a free desktop unit (the autoscaler adds one)"]


async def test_a_placed_agent_starting_slowly_says_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its worker process takes longer than the first look: it has a node, no notice."""
    _settings(monkeypatch, placed=True)
    handle, said = _Handle(), []

    async def notice(text: str) -> None:
        said.append(text)

    asyncio.get_running_loop().call_later(0.3, handle.placed.set)
    await _hire.wait_placed(handle, "t/a", notice)
    assert said == []


async def test_a_hanging_notice_counts_in_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, agent_schedule_timeout_s=0.5)

    async def notice(text: str) -> None:
        await asyncio.sleep(10)  # a recorder that does not answer

    t0 = time.monotonic()
    with pytest.raises(CapacityError):
        await _hire.wait_placed(_Handle(), "t/a", notice)
    assert time.monotonic() - t0 < 1.0


def test_state_unreadable_counts_as_placed() -> None:
    assert _hire.unplaced(object()) is False


async def test_wait_placed_without_a_wait_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch)
    handle, said = _Handle(), []
    handle.placed.set()

    async def notice(text: str) -> None:
        said.append(text)

    await _hire.wait_placed(handle, "t/a", notice)
    assert said == []


@pytest.mark.parametrize(("autoscale", "why"), [(False, "is taken"), (True, "autoscaler")])
async def test_wait_placed_fails_at_the_limit(
    monkeypatch: pytest.MonkeyPatch, autoscale: bool, why: str
) -> None:
    _settings(
        monkeypatch,
        autoscale=autoscale,
        agent_schedule_timeout_s=0.2,
        autoscale_schedule_timeout_s=0.3,
    )
    said: list[str] = []

    async def notice(text: str) -> None:
        said.append(text)

    t0 = asyncio.get_running_loop().time()
    with pytest.raises(CapacityError, match=why):
        await _hire.wait_placed(_Handle(), "t/a", notice)
    took = asyncio.get_running_loop().time() - t0
    assert (0.3 if autoscale else 0.2) <= took < 2.0
    assert len(said) == 1


async def test_a_failing_notice_does_not_fail_the_hire(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch)
    handle = _Handle()

    async def notice(text: str) -> None:
        handle.placed.set()
        raise RuntimeError("recorder away")

    await _hire.wait_placed(handle, "t/a", notice)


def test_up_autoscale_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_up(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(local, "current", lambda *a, **k: None)
    monkeypatch.setattr(local, "up", fake_up)
    args = ["up", "--autoscale", "--max-workers", "2", "--worker-desktops", "3"]
    done = CliRunner().invoke(cli.main, [*args, "--idle-timeout-s", "20"])
    assert done.exit_code == 0, done.output
    assert seen["autoscale"] == Autoscale(
        head_desktops=2, max_workers=2, worker_desktops=3, idle_timeout_s=20
    )
    done = CliRunner().invoke(cli.main, ["up", "--desktops", "4"])
    assert seen["autoscale"] is None and seen["desktops"] == 4


def test_stop_head_stops_what_its_session_left_at_once(tmp_path: Path) -> None:
    """An autoscaler's worker raylets outlive it (the head exits first): they are sent
    SIGTERM once the head is gone, not left until the deadline's SIGKILL."""
    from orchestrator import _local_head
    from orchestrator.desktop import process_owner

    # A "head" whose child stays when it exits (as the workers' raylets do).
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(_local_head.session_members(proc.pid)) < 2:
        assert time.monotonic() < deadline, "the head's child did not start"
        time.sleep(0.02)  # polling interval of a deadline-bound wait
    _local_head.heads[proc.pid] = proc
    state = {"head_pid": proc.pid, "head_owner": process_owner(proc.pid)}
    t0 = time.monotonic()
    _local_head.stop_head(state, time.monotonic() + 30)
    assert _local_head.session_members(proc.pid) == []
    assert time.monotonic() - t0 < 10  # not the 30 s deadline


def test_describe_and_status_lines(tmp_path: Path) -> None:
    cluster = local.LocalCluster(
        api_url="http://127.0.0.1:2",
        api_key="k",
        dashboard_url="http://127.0.0.1:3",
        ray_address="127.0.0.1:1",
        data_dir=tmp_path,
        head_pid=1,
        autoscale=Autoscale(max_workers=2, idle_timeout_s=30),
    )
    said = "\n".join(local.describe(cluster))
    assert "0-2 workers of 2 desktops, removed after 30 s idle" in said
    plain = "\n".join(local.describe(local.LocalCluster(**{**vars(cluster), "autoscale": None})))
    assert "autoscale" not in plain
    assert local.status_lines("http://127.0.0.1:2", tmp_path) == []  # no cluster runs there
