"""Isolation below the API (reliability check 11): from inside a real egress desktop, the
host's ports, another desktop, a link-local address and the private ranges are out of reach,
while DNS and apt (the Debian mirror) work.

Everything probed is started here: a network of the test's own (a fresh egress network name,
so its bridge and iptables chains are the test's), listeners on the host's own addresses, a
network namespace with a link-local address the test assigns, an HTTP server on a second
desktop. All of it is removed afterwards. No address outside this machine is contacted except
through DNS and apt, and no real metadata address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator import Desktop, DesktopSpec
from orchestrator._docker import client
from orchestrator.config import settings
from orchestrator.desktop import _network
from orchestrator.desktop._network import EgressFirewallError
from tests.integration.conftest import eventually
from tests.integration.test_sdk import Server, server

pytestmark = pytest.mark.integration

__all__ = ["server"]  # the imported module fixture

PROBE_S = 5
"""A blocked connection is rejected at once; this only bounds a silent drop."""


@pytest.fixture
def egress_net(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh egress network name for this test; its network and rules removed after."""
    name = f"orchtest-egress-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ORCHESTRATOR_EGRESS_NETWORK", name)
    settings.cache_clear()
    try:
        yield name
    finally:
        monkeypatch.undo()  # PATH too, if the test changed it
        settings.cache_clear()
        _network.remove_egress(name)
        assert name not in [n.name for n in client().networks.list()]
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        assert _network.EgressNetwork(name).bridge not in rules


@contextlib.asynccontextmanager
async def egress_desktops(image: str, n: int) -> AsyncIterator[list[Desktop]]:
    spec = DesktopSpec(image=image, network="egress")
    desks = await asyncio.gather(*(Desktop.start(spec) for _ in range(n)))
    try:
        yield list(desks)
    finally:
        await asyncio.gather(*(d.stop() for d in desks))


def _address(desk: Desktop, network: str) -> tuple[str, str]:
    """The desktop's address on ``network`` and the bridge's (the host's) address."""
    assert desk.container_id is not None
    attrs = client().containers.get(desk.container_id).attrs
    net = attrs["NetworkSettings"]["Networks"][network]
    return net["IPAddress"], net["Gateway"]


def _host_addresses() -> list[str]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    found = [line.split()[3].split("/")[0] for line in out.splitlines()]
    return [a for a in found if not ipaddress.ip_address(a).is_loopback]


class Listener:
    """A TCP listener on the host that answers every connection with one line."""

    def __init__(self, host: str, family: socket.AddressFamily = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # every interface, IPv4 too: as Ray's gRPC port
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(b"listener-answered\n")

    def close(self) -> None:
        self.sock.close()


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _host_connects(addr: str, port: int) -> bool:
    with socket.create_connection((addr, port), timeout=PROBE_S) as s:
        return s.recv(64).startswith(b"listener-answered")


async def _reaches(desk: Desktop, addr: str, port: int) -> bool:
    """Whether a TCP connection from the desktop to addr:port is accepted."""
    probe = f"timeout {PROBE_S} bash -c 'exec 3<>/dev/tcp/{addr}/{port}' && echo OPEN || echo SHUT"
    out = await desk.run(probe, timeout=PROBE_S + 10)
    assert out.stdout.strip() in ("OPEN", "SHUT"), out
    return out.stdout.strip() == "OPEN"


@dataclass
class LinkLocal:
    namespace: str
    address: str
    port: int


@pytest.fixture
def link_local(tmp_path: Path) -> Iterator[LinkLocal]:
    """A network namespace reached over a veth pair, its end holding a link-local address
    the test assigns (never 169.254.169.254), with an HTTP listener in it."""
    tag = uuid.uuid4().hex[:6]
    ns, host_end, ns_end = f"orchtest-{tag}", f"otv{tag}", f"otp{tag}"
    third = random.choice([x for x in range(1, 250) if x != 169])
    host_addr, ns_addr = f"169.254.{third}.1", f"169.254.{third}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    server: subprocess.Popen[bytes] | None = None
    ip("netns", "add", ns)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", ns)
        ip("addr", "add", f"{host_addr}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", ns, "addr", "add", f"{ns_addr}/30", "dev", ns_end)
        ip("-n", ns, "link", "set", ns_end, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        code = (
            "import http.server as h; h.ThreadingHTTPServer("
            f"({ns_addr!r}, 8080), h.SimpleHTTPRequestHandler).serve_forever()"
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,  # it serves an empty directory
        )
        # The listener answers the host (a positive control) before the desktop is tried.
        deadline = time.monotonic() + 20
        while not _http_ok(f"http://{ns_addr}:8080/"):
            assert server.poll() is None, "the link-local listener died"
            assert time.monotonic() < deadline, "the link-local listener never answered"
            time.sleep(0.1)  # polling interval of a deadline-bound wait
        yield LinkLocal(ns, ns_addr, 8080)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert host_end not in links
        assert ns not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout


async def test_an_egress_desktop_reaches_no_host_port_no_desktop_no_link_local(
    desktop_image: str, egress_net: str, link_local: LinkLocal
) -> None:
    # Listeners of the test's own on the host: on every interface (as Serve's replica gRPC
    # port, S2) and on the bridge-facing address and each host address in particular.
    anywhere = Listener("::", socket.AF_INET6)
    listeners = [anywhere]
    try:
        async with egress_desktops(desktop_image, 2) as (a, b):
            a_addr, gateway = _address(a, egress_net)
            b_addr, _ = _address(b, egress_net)
            host_addrs = sorted({gateway, *_host_addresses()})
            assert "192.0.2.2" in host_addrs or len(host_addrs) > 1, host_addrs
            specific = {addr: Listener(addr) for addr in host_addrs}
            listeners += specific.values()
            for addr, lst in specific.items():  # positive controls: they answer the host
                assert _host_connects(addr, lst.port) and _host_connects(addr, anywhere.port)

            # Another desktop's HTTP server answers on its own address, from itself.
            # (started beside the desktop's shell, whose commands' processes end with them)
            assert b.container_id is not None
            server = ["python3", "-m", "http.server", "8000", "--directory", "/tmp"]
            client().containers.get(b.container_id).exec_run(server, user="agent", detach=True)
            self_check = f"curl -s -o /dev/null -w '%{{http_code}}' -m 2 http://{b_addr}:8000/"

            async def b_answers_itself() -> bool:
                return (await b.run(self_check)).stdout == "200"

            await eventually(b_answers_itself, timeout_s=20, what="the second desktop's server")

            blocked = [
                (addr, port) for addr, lst in specific.items() for port in (lst.port, anywhere.port)
            ]
            blocked += [(b_addr, 8000), (link_local.address, link_local.port)]
            reached = [(addr, port) for addr, port in blocked if await _reaches(a, addr, port)]
            assert reached == [], f"an egress desktop ({a_addr}) reached {reached}"
            # Only the positive controls got through.
            assert [lst.accepted for lst in specific.values()] == [1] * len(specific)
            assert anywhere.accepted == len(specific)
            http = await a.run(f"curl -sS -m {PROBE_S} http://{link_local.address}:8080/")
            assert http.exit_code != 0, http

            # What an egress desktop is for still works: names resolve, apt reaches the mirror.
            names = await a.run("getent hosts deb.debian.org pypi.org")
            assert names.exit_code == 0 and names.stdout.strip(), names
            apt = await a.run("apt-get update -o Acquire::Retries=1", user="root", timeout=180)
            assert apt.exit_code == 0, (apt.stdout[-2000:], apt.stderr[-2000:])
            assert "Err:" not in apt.stdout, apt.stdout[-2000:]
    finally:
        for lst in listeners:
            lst.close()


def _host_listening(*, loopback: bool = False) -> list[tuple[str, str, int]]:
    """(process, address, port) of the host's TCP listeners reachable from outside
    (loopback-only ones cannot be: they are left out unless ``loopback``); ``*`` means every
    address."""
    done = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True)
    found = []
    for line in done.stdout.splitlines():
        fields = line.split()
        addr, port = fields[3].rsplit(":", 1)
        addr = addr.strip("[]").split("%")[0]
        if addr in ("0.0.0.0", "::", "*"):
            addr = "*"
        elif addr.startswith("::ffff:"):
            addr = addr.removeprefix("::ffff:")
        if addr != "*" and ":" in addr:
            continue
        if addr != "*" and ipaddress.ip_address(addr).is_loopback and not loopback:
            continue
        names = re.findall(r'"([^"]*)"', fields[-1]) or ["?"]
        found.append((names[0], addr, int(port)))
    return found


async def test_no_host_port_answers_an_egress_desktop(
    server: Server, desktop_image: str, egress_net: str
) -> None:
    """S2: with the API running on Serve (its replica's gRPC server up), an egress desktop
    tries every port the host listens on, at every host address: none answers."""
    async with egress_desktops(desktop_image, 1) as (desk,):
        _, gateway = _address(desk, egress_net)
        addrs = sorted({gateway, *_host_addresses()})
        # The replica's gRPC server is up (on 127.0.0.1 since serve_app._grpc_bind, where a
        # desktop cannot reach it in any case; on every interface before).
        assert any("ServeRepli" in name for name, _, _ in _host_listening(loopback=True))
        listening = _host_listening()
        targets = sorted(
            {
                f"{a}/{port}"
                for _, addr, port in listening
                for a in (addrs if addr == "*" else [addr])
            }
        )
        script = (
            f"for t in {' '.join(targets)}; do "
            'timeout 2 bash -c "exec 3<>/dev/tcp/$t" 2>/dev/null && echo "OPEN $t"; '
            "done; echo done"
        )
        out = await desk.run(script, timeout=60 + 2 * len(targets))
        assert out.stdout.strip().splitlines() == ["done"], (out.stdout, len(targets))


async def test_no_egress_desktop_runs_without_its_firewall(
    desktop_image: str, egress_net: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # iptables out of reach: the firewall cannot be installed, so no egress desktop starts.
    monkeypatch.setenv("PATH", "/nonexistent")
    before = {c.id for c in client().containers.list(all=True)}
    with pytest.raises(EgressFirewallError, match="iptables"):
        await Desktop.start(DesktopSpec(image=desktop_image, network="egress"))
    after = {c.id for c in client().containers.list(all=True)}
    assert after - before == set()
    # A desktop without a network does not need the firewall.
    async with await Desktop.start(DesktopSpec(image=desktop_image)) as d:
        assert (await d.run("ls /sys/class/net")).stdout.split() == ["lo"]


def test_the_firewall_comes_back_when_its_rules_are_flushed(egress_net: str) -> None:
    net = _network.ensure_egress()
    jumps = [("DOCKER-USER", net.forward_chain), ("INPUT", net.input_chain)]

    def present(parent: str, chain: str) -> bool:
        check = ["iptables", "-w", "-C", parent, "-i", net.bridge, "-j", chain]
        return subprocess.run(check, capture_output=True).returncode == 0

    assert all(present(*j) for j in jumps)
    for parent, chain in jumps:  # as an operator's `iptables -F` would
        subprocess.run(["iptables", "-w", "-D", parent, "-i", net.bridge, "-j", chain], check=True)
    assert not any(present(*j) for j in jumps)
    assert _network.ensure_egress() == net  # the next egress desktop's start
    assert all(present(*j) for j in jumps)
