"""The pure parts of ``orchestrator.local``: key files, the state file, stopping a head's
session (on ``sleep`` processes, no Ray), and the CLI's defaults from a local cluster."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import click
import pytest

from orchestrator import _cli_api, _local_files, _local_head, local
from orchestrator.desktop._owner import process_owner
from serve_app import KeyStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_made_private_and_match(tmp_path: Path) -> None:
    keys_file, key = local.ensure_keys(tmp_path)
    client_file = tmp_path / local.CLIENT_KEY_FILE
    assert keys_file == tmp_path / local.KEYS_FILE
    assert _mode(keys_file) == 0o600 and _mode(client_file) == 0o600
    assert client_file.read_text().strip() == key and len(key) >= 32
    text = keys_file.read_text()
    assert key not in text  # only its digest
    assert text == f"default:sha256:{hashlib.sha256(key.encode()).hexdigest()}\n"
    store = KeyStore.parse(text, separators="\n")
    assert store.tenant_for(key) == "default" and store.tenant_for(key + "x") is None


def test_keys_are_kept_and_other_tenants_survive(tmp_path: Path) -> None:
    keys_file, key = local.ensure_keys(tmp_path)
    assert local.ensure_keys(tmp_path) == (keys_file, key)  # the same key next time
    other = "acme:sha256:" + "ab" * 32
    keys_file.write_text(f"# mine\n{other}\n")  # someone's edit lost the default line
    keys_file.chmod(0o644)
    assert local.ensure_keys(tmp_path)[1] == key
    lines = keys_file.read_text().splitlines()
    assert lines[:2] == ["# mine", other] and lines[2].startswith("default:sha256:")
    assert _mode(keys_file) == 0o600
    (tmp_path / local.CLIENT_KEY_FILE).chmod(0o644)
    local.ensure_keys(tmp_path)
    assert _mode(tmp_path / local.CLIENT_KEY_FILE) == 0o600


def test_a_new_client_key_replaces_the_default_line(tmp_path: Path) -> None:
    keys_file, key = local.ensure_keys(tmp_path)
    (tmp_path / local.CLIENT_KEY_FILE).unlink()
    _, new = local.ensure_keys(tmp_path)
    assert new != key
    store = KeyStore.parse(keys_file.read_text(), separators="\n")
    assert len(store) == 1 and store.tenant_for(new) == "default"


def _state(tmp_path: Path, pid: int) -> dict[str, object]:
    return {
        "ray_address": "127.0.0.1:1",
        "api_url": "http://127.0.0.1:2",
        "api_port": 2,
        "dashboard_url": "http://127.0.0.1:3",
        "head_pid": pid,
        "head_owner": process_owner(pid),
        "data_dir": str(tmp_path),
    }


def test_current_reads_a_live_state_and_hides_the_key(tmp_path: Path) -> None:
    assert local.current(tmp_path) is None
    _, key = local.ensure_keys(tmp_path)
    _local_files.write_state(tmp_path, _state(tmp_path, os.getpid()))
    assert _mode(tmp_path / local.STATE_FILE) == 0o600
    cluster = local.current(tmp_path)
    assert cluster is not None
    assert cluster.api_url == "http://127.0.0.1:2" and cluster.api_key == key
    assert cluster.key_file == tmp_path / local.CLIENT_KEY_FILE
    assert key not in repr(cluster)
    assert key not in "\n".join(local.describe(cluster))
    assert str(cluster.key_file) in "\n".join(local.describe(cluster))


def test_current_ignores_a_dead_or_reused_head(tmp_path: Path) -> None:
    local.ensure_keys(tmp_path)
    proc = subprocess.Popen(["true"])
    proc.wait()
    _local_files.write_state(tmp_path, _state(tmp_path, proc.pid))
    assert local.current(tmp_path) is None  # the pid is gone
    state = _state(tmp_path, os.getpid())
    state["head_owner"] = str(state["head_owner"]).rsplit(":", 1)[0] + ":1"
    _local_files.write_state(tmp_path, state)
    assert local.current(tmp_path) is None  # the pid is another process now
    (tmp_path / local.STATE_FILE).write_text("{not json")
    assert local.current(tmp_path) is None


def test_down_without_a_cluster_is_harmless(tmp_path: Path) -> None:
    assert local.down(tmp_path, timeout_s=5) is False


def _session_with_children() -> subprocess.Popen[bytes]:
    # A "head" in a session of its own with two children, one ignoring SIGTERM.
    script = "sleep 60 & (trap '' TERM; sleep 60) & wait"
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(_local_head.session_members(proc.pid)) < 3:
        assert time.monotonic() < deadline, "the session's children did not start"
        time.sleep(0.02)  # polling interval of a deadline-bound wait
    return proc


def test_stop_head_ends_its_whole_session_only(tmp_path: Path) -> None:
    bystander = _session_with_children()
    proc = _session_with_children()
    try:
        _local_head.heads[proc.pid] = proc
        t0 = time.monotonic()
        _local_head.stop_head(_state(tmp_path, proc.pid), time.monotonic() + 1.0)
        assert _local_head.session_members(proc.pid) == []
        assert time.monotonic() - t0 < 10
        assert proc.pid not in _local_head.heads  # its exit status was collected
        assert len(_local_head.session_members(bystander.pid)) == 3  # another session: untouched
    finally:
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait()


def test_stop_head_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    other = _session_with_children()
    try:
        state = _state(tmp_path, other.pid)
        state["head_owner"] = str(state["head_owner"]).rsplit(":", 1)[0] + ":1"  # not it
        _local_head.stop_head(state, time.monotonic() + 1.0)
        assert len(_local_head.session_members(other.pid)) == 3
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()


def test_cli_defaults_to_the_local_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "current", lambda data_dir=None: None)
    assert _cli_api._resolve("http://h:1", "k" * 10) == ("http://h:1", "k" * 10)
    with pytest.raises(click.UsageError):
        _cli_api._resolve(None, None)

    cluster = local.LocalCluster(
        api_url="http://127.0.0.1:9999",
        api_key="secret-key-1",
        dashboard_url="http://127.0.0.1:8265",
        ray_address="127.0.0.1:6379",
        data_dir=tmp_path,
        head_pid=1,
    )
    monkeypatch.setattr(local, "current", lambda data_dir=None: cluster)
    assert _cli_api._resolve(None, None) == (cluster.api_url, "secret-key-1")
    assert _cli_api._resolve(None, "mine-1234") == (cluster.api_url, "mine-1234")
    with pytest.raises(click.UsageError):  # the local key never goes to another URL
        _cli_api._resolve("http://elsewhere:8000", None)


def test_state_file_is_json(tmp_path: Path) -> None:
    _local_files.write_state(tmp_path, {"a": 1})
    assert json.loads((tmp_path / local.STATE_FILE).read_text()) == {"a": 1}
    _local_files.remove_state(tmp_path)
    _local_files.remove_state(tmp_path)  # twice is fine
    assert not (tmp_path / local.STATE_FILE).exists()
