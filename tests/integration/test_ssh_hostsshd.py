"""ShellSession against a real OpenSSH sshd on the host, reached through a unix socket.

socat listens on ``<tmp>/ssh.sock`` and runs ``sshd -i`` per connection (root login by key
only, a temporary host key, a test user ``agent``): the same contract as a desktop container.
Everything here is built around the ``ssh_target`` fixture, so the same tests can run against
a real desktop by swapping that fixture (and ``drop_connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shlex
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import NamedTuple, get_args

import asyncssh
import pytest

from orchestrator.desktop._ssh import (
    KILL_AFTER_S,
    ShellSession,
    User,
    authorized_key_line,
    generate_client_key,
)
from orchestrator.errors import ShellError

pytestmark = pytest.mark.integration

SSHD = "/usr/sbin/sshd"


class SshTarget(NamedTuple):
    """Where a desktop's sshd answers, and the keys that go with it."""

    socket_path: Path
    host_key_path: Path
    client_key: asyncssh.SSHKey


async def eventually(
    probe: Callable[[], Awaitable[object]], *, timeout_s: float = 10.0, what: str = "condition"
) -> object:
    """Await ``probe()`` until it returns something truthy, or fail with its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s; last: {last!r}")
        await asyncio.sleep(0.05)


def _ensure_agent_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("agent")
    except KeyError:
        pass
    uid = ["-u", "1000"]
    try:
        pwd.getpwuid(1000)
        uid = []  # taken here: any uid will do, the prefix runs by name
    except KeyError:
        pass
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", *uid, "agent"], check=True)
    return pwd.getpwnam("agent")


@pytest.fixture(scope="session")
def agent_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("the host sshd harness needs root (sshd -i, useradd)")
    return _ensure_agent_user()


class _Sshd(NamedTuple):
    target: SshTarget
    socat: subprocess.Popen[bytes]
    isolated: bool  # root's dotfiles hidden from it, as in a desktop image


def _can_unshare() -> bool:
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    return shutil.which("unshare") is not None and subprocess.run(probe).returncode == 0


@pytest.fixture(scope="session")
def _sshd(agent_user: pwd.struct_passwd) -> Iterator[_Sshd]:
    missing = [tool for tool in (SSHD, "socat") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (apt-get install openssh-server socat)")
    tmp = Path(tempfile.mkdtemp(prefix="sshd-"))  # short: unix socket paths max 107 bytes
    try:
        yield from _serve_sshd(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _serve_sshd(tmp: Path) -> Iterator[_Sshd]:
    """Write keys and config into ``tmp``, serve sshd there until the generator is closed."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(tmp / "host_ed25519")
    (tmp / "host_ed25519").chmod(0o600)
    (tmp / "ssh_host_key.pub").write_bytes(host_key.export_public_key("openssh"))
    client_key = generate_client_key()
    (tmp / "authorized_keys").write_text(authorized_key_line(client_key) + "\n")
    config = tmp / "sshd_config"
    config.write_text(
        f"HostKey {tmp}/host_ed25519\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PidFile none\n"
        "PrintMotd no\n"
        "LogLevel ERROR\n"
        "SetEnv DISPLAY=:42 LANG=C.UTF-8\n"  # as a desktop's sshd hands its display on
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    sock = tmp / "ssh.sock"
    socat = f"exec socat UNIX-LISTEN:{sock},fork,mode=600 'EXEC:{SSHD} -i -e -f {config}'"
    # A developer's /root/.bashrc (pyenv, ...) would run before every command (sshd starts
    # root's shell); hide root's dotfiles in a private mount namespace, as a desktop has none.
    isolated = _can_unshare()
    if isolated:
        (tmp / "empty").touch()
        hide = "".join(
            f"mount --bind {tmp}/empty {dotfile} && "
            for dotfile in ("/root/.bashrc", "/root/.profile")
            if Path(dotfile).is_file()
        )
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide + socat]
    else:
        argv = ["sh", "-c", socat]
    with (tmp / "socat.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"socat did not listen: {(tmp / 'socat.log').read_text()}")
            time.sleep(0.01)  # sync fixture: polling for the socket to appear
        yield _Sshd(SshTarget(sock, tmp / "ssh_host_key.pub", client_key), proc, isolated)
    finally:
        _kill_children(proc.pid)  # before the parent: orphans would be reparented
        proc.terminate()
        proc.wait(timeout=10)


def _kill_children(parent: int) -> int:
    """SIGKILL the direct children of ``parent``: socat's one process per connection."""
    killed = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.parent.name), signal.SIGKILL)
                killed += 1
    return killed


@pytest.fixture(scope="session")
def ssh_target(_sshd: _Sshd) -> SshTarget:
    """(socket_path, host_key_path, client_key) of a running sshd."""
    return _sshd.target


@pytest.fixture
def drop_connections(_sshd: _Sshd) -> Callable[[], int]:
    """Cut every open connection on the server side (as a desktop restart would)."""
    return lambda: _kill_children(_sshd.socat.pid)


async def connect(target: SshTarget) -> ShellSession:
    return await ShellSession.connect(
        target.socket_path, target.client_key, target.host_key_path, timeout=10
    )


@pytest.fixture
async def shell(ssh_target: SshTarget) -> AsyncIterator[ShellSession]:
    session = await connect(ssh_target)
    try:
        yield session
    finally:
        await session.close()


_MATCHING_PIDS = """
for d in /proc/[0-9]*; do
  case "$(tr '\\0' ' ' <"$d/cmdline" 2>/dev/null)" in "$1"*) echo "${d#/proc/}";; esac
done
"""


async def count_processes(shell: ShellSession, prefix: str) -> int:
    """How many processes on the desktop have a command line starting with ``prefix``."""
    script = f"pids() {{ {_MATCHING_PIDS} }}; pids {shlex.quote(prefix)} | wc -l"
    res = await shell.run(script, user="root", timeout=10)
    assert res.exit_code == 0, res
    return int(res.stdout.strip())


async def kill_processes(shell: ShellSession, prefix: str) -> None:
    """SIGKILL the processes on the desktop whose command line starts with ``prefix``."""
    script = f"pids() {{ {_MATCHING_PIDS} }}; kill -9 $(pids {shlex.quote(prefix)}) 2>/dev/null"
    await shell.run(script + "; true", user="root", timeout=10)


# ---------------------------------------------------------------------- commands


async def test_true_and_echo(shell: ShellSession) -> None:
    res = await shell.run("true")
    assert res.ok and res.exit_code == 0 and res.stdout == "" and not res.timed_out
    res = await shell.run("echo hello; echo 'wörld ☃'")
    assert res.stdout == "hello\nwörld ☃\n"
    assert 0 < res.duration_s < 5


async def test_exit_codes_and_stderr(shell: ShellSession) -> None:
    assert (await shell.run("exit 3")).exit_code == 3
    res = await shell.run("false")
    assert res.exit_code == 1 and not res.ok and not res.timed_out
    res = await shell.run("echo out; echo oops >&2; exit 7")
    assert (res.exit_code, res.stdout, res.stderr) == (7, "out\n", "oops\n")
    res = await shell.run("no-such-command-xyz")
    assert res.exit_code == 127 and "not found" in res.stderr


async def test_undecodable_output_is_replaced(shell: ShellSession) -> None:
    res = await shell.run(r"printf 'a\377b'")
    assert res.stdout == "a\ufffdb"


async def test_stdin_is_closed(shell: ShellSession) -> None:
    res = await shell.run("cat; read x; echo done", timeout=5)
    assert res.stdout == "done\n" and not res.timed_out


async def test_cwd(shell: ShellSession, agent_user: pwd.struct_passwd) -> None:
    assert (await shell.run("pwd")).stdout.strip() == agent_user.pw_dir
    assert (await shell.run("pwd", user="root")).stdout.strip() == "/root"
    assert (await shell.run("pwd", cwd="/tmp")).stdout == "/tmp\n"
    await shell.run("mkdir -p 'sub dir'")
    res = await shell.run("pwd", cwd="~/sub dir")
    assert res.stdout == f"{agent_user.pw_dir}/sub dir\n"
    res = await shell.run("echo never", cwd="/no/such/dir")
    assert res.exit_code == 1 and res.stdout == "" and "/no/such/dir" in res.stderr


async def test_env(shell: ShellSession) -> None:
    tricky = "a b 'c' \"d\" $HOME `id` \\ \n;|&"
    res = await shell.run('printf %s "$FOO"; printf "|%s" "$BAR"', env={"FOO": tricky, "BAR": ""})
    assert res.stdout == tricky + "|"
    res = await shell.run('echo "$PATH"', env={"PATH": "/opt/x:/usr/bin:/bin"})
    assert res.stdout == "/opt/x:/usr/bin:/bin\n"  # wins over the login profile
    with pytest.raises(ValueError, match="variable name"):
        await shell.run("true", env={"BAD-NAME": "x"})
    with pytest.raises(ValueError):
        await shell.run("true", env={"X; rm -rf /": "x"})


async def test_session_environment_reaches_both_users(shell: ShellSession) -> None:
    for user in get_args(User):
        res = await shell.run('echo "$DISPLAY|$LANG|${SSH_CONNECTION:-none}"', user=user)
        assert res.stdout.startswith(":42|C.UTF-8|"), (user, res)
    # the agent gets only the listed variables, not the rest of root's session
    assert (await shell.run('echo "${SSH_CONNECTION:-none}"')).stdout == "none\n"


async def test_user_agent_and_root(shell: ShellSession, agent_user: pwd.struct_passwd) -> None:
    res = await shell.run("id -u; id -un; echo $HOME; echo $USER")
    assert res.stdout.split() == [str(agent_user.pw_uid), "agent", agent_user.pw_dir, "agent"]
    res = await shell.run("id -u; id -un", user="root")
    assert res.stdout.split() == ["0", "root"]
    status = (await shell.run("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")).stdout
    assert "CapEff:\t0000000000000000" in status
    with pytest.raises(ValueError):
        await shell.run("true", user="nobody")  # type: ignore[arg-type]


async def test_timeout_kills_command_and_children_keeps_output(shell: ShellSession) -> None:
    t0 = time.monotonic()
    res = await shell.run(
        "echo start; (sleep 98764 &); sleep 98765 & echo started >&2; sleep 98765", timeout=1
    )
    took = time.monotonic() - t0
    assert res.timed_out and res.exit_code is None and not res.ok
    assert res.stdout == "start\n" and res.stderr == "started\n"
    assert 1 <= took < 1 + KILL_AFTER_S, took

    async def gone() -> bool:
        return await count_processes(shell, "sleep 9876") == 0

    await eventually(gone, timeout_s=5, what="sleep processes killed")


async def test_timeout_kills_command_that_ignores_term(shell: ShellSession) -> None:
    res = await shell.run("trap '' TERM; echo start; sleep 98766; echo late", timeout=0.5)
    assert res.timed_out and res.exit_code is None and res.stdout == "start\n"
    assert res.duration_s < 0.5 + KILL_AFTER_S + 1.5

    async def gone() -> bool:
        return await count_processes(shell, "sleep 98766") == 0

    await eventually(gone, timeout_s=5, what="sleep process killed")


async def test_cancelled_run_kills_remote_command(shell: ShellSession) -> None:
    task = asyncio.create_task(shell.run("sleep 98767", timeout=60))

    async def running() -> bool:
        return await count_processes(shell, "sleep 98767") == 1

    await eventually(running, what="sleep running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def gone() -> bool:
        return await count_processes(shell, "sleep 98767") == 0

    await eventually(gone, timeout_s=5, what="sleep killed after cancellation")


async def test_background_job_with_detached_output_survives(shell: ShellSession) -> None:
    res = await shell.run("sleep 98768 >/dev/null 2>&1 & echo ok", timeout=5)
    assert res.exit_code == 0 and res.stdout == "ok\n" and res.duration_s < 2
    assert await count_processes(shell, "sleep 98768") == 1
    await kill_processes(shell, "sleep 98768")


async def test_background_job_holding_output_does_not_hang(shell: ShellSession) -> None:
    res = await shell.run("sleep 98769 & echo ok", timeout=30)
    assert res.exit_code == 0 and res.stdout == "ok\n" and res.duration_s < 3
    await kill_processes(shell, "sleep 98769")


async def test_large_output_is_capped_head_and_tail(shell: ShellSession) -> None:
    res = await shell.run("seq 100000")
    assert res.stdout == "".join(f"{i}\n" for i in range(1, 100001))
    res = await shell.run("head -c 6000000 /dev/zero | tr '\\0' a; echo; echo END", timeout=30)
    assert res.exit_code == 0
    assert res.stdout.startswith("a" * 1000) and res.stdout.endswith("a\nEND\n")
    assert "bytes of output omitted" in res.stdout
    assert len(res.stdout) < (1 << 20) + 200


async def test_big_script_goes_through_stdin(shell: ShellSession) -> None:
    payload = "x'y\"z " * 40_000  # ~280 kB quoted: too big for one argv string
    res = await shell.run(f'v={shlex.quote(payload)}\nprintf %s "$v" | wc -c')
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split()[0] == str(len(payload))


async def test_concurrent_runs_share_one_connection(shell: ShellSession) -> None:
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(shell.run(f"sleep 0.5; echo {i}; echo e{i} >&2") for i in range(10))
    )
    took = time.monotonic() - t0
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(10)]
    assert [r.stderr for r in results] == [f"e{i}\n" for i in range(10)]
    assert took < 3, took  # 10 x 0.5 s sequentially would be 5 s


async def test_round_trip_latency(
    shell: ShellSession, _sshd: _Sshd, record_property: Callable[[str, object], None]
) -> None:
    await shell.run("true")
    p50: dict[User, float] = {}
    for user in get_args(User):
        samples = []
        for _ in range(30):
            t0 = time.perf_counter()
            assert (await shell.run("true", user=user)).ok
            samples.append(time.perf_counter() - t0)
        p50[user] = statistics.median(samples)
        record_property(f"true_p50_ms_{user}", round(p50[user] * 1000, 2))
    # The target is 15 ms; assert loosely (shared CI machines), and only when root's own
    # dotfiles are hidden (a developer's pyenv ~/.bashrc alone takes 100 ms).
    if _sshd.isolated:
        assert max(p50.values()) < 0.05, p50


# ---------------------------------------------------------------------- connection


async def test_wrong_host_key_is_rejected(ssh_target: SshTarget, tmp_path: Path) -> None:
    other = tmp_path / "other.pub"
    other.write_bytes(generate_client_key().export_public_key("openssh"))
    t0 = time.monotonic()
    with pytest.raises(ShellError, match="host key"):
        await ShellSession.connect(ssh_target.socket_path, ssh_target.client_key, other, timeout=10)
    assert time.monotonic() - t0 < 5  # refused at once, not retried until the deadline


async def test_unknown_client_key_is_rejected(ssh_target: SshTarget) -> None:
    with pytest.raises(ShellError, match="refused the client key"):
        await ShellSession.connect(
            ssh_target.socket_path, generate_client_key(), ssh_target.host_key_path, timeout=10
        )


async def test_missing_socket_fails_after_timeout(ssh_target: SshTarget, tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(ShellError, match="no SSH connection"):
        await ShellSession.connect(
            tmp_path / "nothing.sock", ssh_target.client_key, ssh_target.host_key_path, timeout=0.5
        )
    assert time.monotonic() - t0 < 3


async def test_reconnects_after_the_server_went_away(
    shell: ShellSession, drop_connections: Callable[[], int]
) -> None:
    assert (await shell.run("echo one")).stdout == "one\n"
    assert drop_connections() >= 1

    async def noticed() -> bool:
        return not shell.connected

    await eventually(noticed, what="connection loss noticed")
    assert (await shell.run("echo two")).stdout == "two\n"
    assert shell.connected


async def test_connection_lost_mid_command_raises(
    shell: ShellSession, drop_connections: Callable[[], int]
) -> None:
    task = asyncio.create_task(shell.run("echo started; sleep 98770", timeout=30))

    async def running() -> bool:
        return await count_processes(shell, "sleep 98770") == 1

    await eventually(running, what="command running")
    drop_connections()
    with pytest.raises(ShellError, match="lost the SSH connection"):
        await task
    assert (await shell.run("echo back")).stdout == "back\n"
    await kill_processes(shell, "sleep 98770")


async def test_closed_session_refuses(ssh_target: SshTarget) -> None:
    session = await connect(ssh_target)
    await session.close()
    with pytest.raises(ShellError, match="closed"):
        await session.run("true")


# ---------------------------------------------------------------------- files


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_upload_and_download_a_file(
    shell: ShellSession, tmp_path: Path, agent_user: pwd.struct_passwd
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    await shell.upload(src, "up/one/blob.bin")
    res = await shell.run("stat -c '%U %s' up/one/blob.bin up/one up")
    assert res.stdout.split("\n")[:3] == [f"agent {len(data)}", "agent 4096", "agent 4096"]
    back = tmp_path / "back" / "blob.bin"
    await shell.download(f"{agent_user.pw_dir}/up/one/blob.bin", back)
    assert back.read_bytes() == data
    src.write_bytes(b"replaced")  # an existing file is replaced
    await shell.upload(src, "~/up/one/blob.bin")
    await shell.download("~/up/one/blob.bin", back)
    assert back.read_bytes() == b"replaced"


async def test_upload_and_download_a_tree(shell: ShellSession, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "a" / "mid.bin").write_bytes(os.urandom(100_000))
    (src / "a" / "b" / "deep name.txt").write_text("deep ☃\n")
    (src / "a" / "b" / "deep name.txt").chmod(0o750)
    await shell.upload(src, "/tmp/agent-tree")
    res = await shell.run("find /tmp/agent-tree -printf '%u %P\\n' | sort")
    assert res.stdout.splitlines() == [
        "agent ",
        "agent a",
        "agent a/b",
        "agent a/b/deep name.txt",
        "agent a/mid.bin",
        "agent top.txt",
    ]
    assert (await shell.run("stat -c %a '/tmp/agent-tree/a/b/deep name.txt'")).stdout == "750\n"
    back = tmp_path / "back"
    await shell.download("/tmp/agent-tree", back)
    assert _tree(back) == _tree(src) and len(_tree(src)) == 3
    await shell.run("rm -rf /tmp/agent-tree")


async def test_upload_as_root(shell: ShellSession, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("root's\n")
    await shell.upload(src, "/root/uploaded.txt", user="root")
    res = await shell.run("stat -c %U /root/uploaded.txt && cat /root/uploaded.txt", user="root")
    assert res.stdout == "root\nroot's\n"
    with pytest.raises(PermissionError):
        await shell.upload(src, "/root/not-for-agent.txt")  # agent cannot write there
    await shell.run("rm -f /root/uploaded.txt", user="root")


async def test_missing_paths(shell: ShellSession, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="local"):
        await shell.upload(tmp_path / "nope", "x")
    with pytest.raises(FileNotFoundError, match="no-such-file"):
        await shell.download("/tmp/no-such-file", tmp_path / "x")
    with pytest.raises(PermissionError):
        await shell.download("/root/.bashrc", tmp_path / "x")  # not readable by agent
    with pytest.raises(ValueError):
        await shell.upload(tmp_path, "/")


async def test_agent_symlinks_cannot_redirect_transfers(
    shell: ShellSession, tmp_path: Path
) -> None:
    victim = "/root/victim.txt"
    await shell.run(f"echo original > {victim}", user="root")
    await shell.run(f"ln -sfn {victim} ~/planted")
    src = tmp_path / "evil"
    src.write_text("overwritten\n")
    await shell.upload(src, "~/planted")  # as agent: replaces the link, never writes through
    res = await shell.run(f"cat {victim}", user="root")
    assert res.stdout == "original\n"
    await shell.run(f"ln -sfn {victim} ~/planted")
    with pytest.raises(PermissionError):  # read as agent, so root's file stays unreadable
        await shell.download("~/planted", tmp_path / "leak")
    await shell.run(f"rm -f {victim}", user="root")
