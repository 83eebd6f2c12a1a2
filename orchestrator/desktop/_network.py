"""The egress desktops' network and its firewall.

An ``egress`` desktop joins a user-defined Docker bridge of its own (not Docker's default
bridge), created once per node with inter-container traffic off, and guarded by iptables
rules that this module installs idempotently the first time a process needs the network:

- forwarded traffic from the bridge (a chain jumped to from ``DOCKER-USER``): rejected to
  another desktop on the bridge, to 10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16,
  127/8 and multicast; allowed to the node's DNS resolvers (``/etc/resolv.conf``) on port
  53 and to the ranges in ``ORCHESTRATOR_EGRESS_ALLOW_CIDRS``; everything else (the public
  internet) goes on to Docker's own rules;
- traffic from the bridge to the host itself (a chain jumped to from ``INPUT``): rejected,
  whatever the host address or port, except DNS to a resolver that is the host;
- IPv6: off in the desktop (sysctls) and dropped from the bridge (ip6tables) as well.

When the rules cannot be installed (not root, no iptables, no ``DOCKER-USER`` chain), an
egress desktop is refused with ``EgressFirewallError``: it never runs unprotected.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from .._docker import client, translate_errors
from .._flock import file_lock
from ..config import settings
from ..errors import DockerError

__all__ = [
    "BLOCKED_CIDRS",
    "EgressFirewallError",
    "EgressNetwork",
    "container_network",
    "ensure_egress",
    "remove_egress",
    "resolvers",
]

BLOCKED_CIDRS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "224.0.0.0/4",
)
"""Destinations an egress desktop never reaches (besides the host and other desktops)."""

LABEL = "orchestrator.egress"
_RESOLV_CONF = Path("/etc/resolv.conf")
_IPTABLES_TIMEOUT_S = 30.0
_IPV6_OFF = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


class EgressFirewallError(DockerError):
    """The egress network or its firewall could not be set up: no egress desktop starts."""


@dataclass(frozen=True)
class EgressNetwork:
    """One egress network: its Docker name, its bridge interface and its iptables chains."""

    name: str

    @property
    def _digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:10]

    @property
    def bridge(self) -> str:
        """The host's bridge interface (at most 15 characters)."""
        return f"oe-{self._digest}"

    @property
    def forward_chain(self) -> str:
        return f"OE-{self._digest}-FWD"

    @property
    def input_chain(self) -> str:
        return f"OE-{self._digest}-IN"


_installed: set[str] = set()
_lock = threading.Lock()


def resolvers(path: Path = _RESOLV_CONF) -> list[str]:
    """The IPv4 resolvers the node's ``resolv.conf`` names (Docker hands the same ones on)."""
    found: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                addr = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if addr.version == 4 and not addr.is_loopback and str(addr) not in found:
                found.append(str(addr))
    return found


def allowed_cidrs() -> list[str]:
    """The extra ranges the operator lets egress desktops reach (``EGRESS_ALLOW_CIDRS``)."""
    raw = settings().egress_allow_cidrs or ""
    return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in raw.split(",") if c.strip()]


def rules(net: EgressNetwork, dns: list[str], allow: list[str]) -> str:
    """The IPv4 chains, in ``iptables-restore --noflush`` form (applied in one transaction)."""
    br, fwd, inp = net.bridge, net.forward_chain, net.input_chain
    reject = "-j REJECT --reject-with icmp-admin-prohibited"
    lines = ["*filter", f":{fwd} - [0:0]", f":{inp} - [0:0]"]
    # Another desktop on this bridge: before any exception, so no allowed range opens it.
    lines.append(f"-A {fwd} -o {br} {reject}")
    for ip in dns:
        for proto in ("udp", "tcp"):
            lines.append(f"-A {fwd} -d {ip}/32 -p {proto} --dport 53 -j RETURN")
            lines.append(f"-A {inp} -d {ip}/32 -p {proto} --dport 53 -j ACCEPT")
    lines += [f"-A {fwd} -d {cidr} -j RETURN" for cidr in allow]
    lines += [f"-A {fwd} -d {cidr} {reject}" for cidr in BLOCKED_CIDRS]
    lines.append(f"-A {inp} {reject}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def rules6(net: EgressNetwork) -> str:
    """The IPv6 chain: nothing leaves the bridge (desktops have IPv6 off anyway)."""
    chain = net.forward_chain
    return "\n".join(["*filter", f":{chain} - [0:0]", f"-A {chain} -j DROP", "COMMIT"]) + "\n"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EgressFirewallError(
            f"egress desktops need {name} on PATH to install their firewall; install the "
            "iptables package, or use network 'none'"
        )
    return path


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_IPTABLES_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EgressFirewallError(f"cannot run {args[0]}: {e}") from e


def _must(args: list[str], stdin: str | None = None) -> None:
    done = _run(args, stdin)
    if done.returncode != 0:
        hint = "" if os.geteuid() == 0 else " (it needs root)"
        raise EgressFirewallError(
            f"cannot install the egress desktops' firewall{hint}: `{' '.join(args)}` "
            f"failed: {(done.stderr or done.stdout).strip()}"
        )


def _jump(tool: str, parent: str, net: EgressNetwork, chain: str) -> None:
    """Make ``parent``'s first rule send the bridge's traffic to ``chain`` (once)."""
    spec = ["-i", net.bridge, "-j", chain]
    if _run([tool, "-w", "-C", parent, *spec]).returncode != 0:
        _must([tool, "-w", "-I", parent, "1", *spec])


def _ipv6_present() -> bool:
    return Path("/proc/sys/net/ipv6").exists()


def _node_lock() -> AbstractContextManager[None]:
    """One process at a time sets the network up on this node."""
    d = settings().runtime_dir
    d.mkdir(parents=True, exist_ok=True)
    return file_lock(d / ".egress.lock")


def _ensure_docker_network(net: EgressNetwork) -> None:
    options = {
        "com.docker.network.bridge.name": net.bridge,
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "true",
    }
    with translate_errors("setting up the egress network"):
        try:
            found = client().networks.get(net.name)
        except docker.errors.NotFound:
            client().networks.create(
                net.name,
                driver="bridge",
                options=options,
                enable_ipv6=False,
                labels={LABEL: "1"},
                check_duplicate=True,
            )
            return
    attrs: dict[str, Any] = found.attrs
    have = attrs.get("Options") or {}
    if attrs.get("EnableIPv6") or any(have.get(k) != v for k, v in options.items()):
        raise EgressFirewallError(
            f"the Docker network {net.name!r} exists with other settings than egress desktops "
            f"need ({have}); remove it (docker network rm {net.name}) and try again"
        )


def _install(net: EgressNetwork) -> None:
    iptables, restore = _tool("iptables"), _tool("iptables-restore")
    if _run([iptables, "-w", "-S", "DOCKER-USER"]).returncode != 0:
        raise EgressFirewallError(
            "the Docker engine's DOCKER-USER iptables chain is missing (is Docker's iptables "
            "integration off?): egress desktops cannot be firewalled"
        )
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not bridge_nf.exists() or bridge_nf.read_text().strip() != "1":
        raise EgressFirewallError(
            "bridged traffic bypasses iptables (net.bridge.bridge-nf-call-iptables is not 1; "
            "modprobe br_netfilter): desktops on the egress bridge could reach each other"
        )
    _must([restore, "-w", "--noflush"], rules(net, resolvers(), allowed_cidrs()))
    _jump(iptables, "DOCKER-USER", net, net.forward_chain)
    _jump(iptables, "INPUT", net, net.input_chain)
    if _ipv6_present():
        ip6tables, restore6 = _tool("ip6tables"), _tool("ip6tables-restore")
        _must([restore6, "-w", "--noflush"], rules6(net))
        _jump(ip6tables, "FORWARD", net, net.forward_chain)
        _jump(ip6tables, "INPUT", net, net.forward_chain)


def _in_force(net: EgressNetwork) -> bool:
    """Whether both jumps are still there (someone may have flushed the rules)."""
    iptables = _tool("iptables")
    return all(
        _run([iptables, "-w", "-C", parent, "-i", net.bridge, "-j", chain]).returncode == 0
        for parent, chain in (("DOCKER-USER", net.forward_chain), ("INPUT", net.input_chain))
    )


def ensure_egress(name: str | None = None) -> EgressNetwork:
    """The egress network, created and firewalled if need be (blocking).

    The whole set-up runs the first time a process needs the network; later calls check
    that the rules are still in force and install them again if not. Raises
    ``EgressFirewallError`` when that fails.
    """
    net = EgressNetwork(name or settings().egress_network)
    with _lock:
        if net.name in _installed and _in_force(net):
            return net
        _installed.discard(net.name)
        with _node_lock():
            _install(net)  # first: the bridge never exists without its rules
            _ensure_docker_network(net)
        _installed.add(net.name)
    return net


def container_network(network: str) -> dict[str, Any]:
    """The ``containers.run`` arguments that put a desktop on ``network`` (``none`` or
    ``egress``); for egress, after making sure the network and its firewall are there."""
    if network == "none":
        return {"network_mode": "none"}
    net = ensure_egress()
    return {"network": net.name, "sysctls": dict(_IPV6_OFF)}


def remove_egress(name: str) -> None:
    """Remove an egress network and its rules (tests; an operator tidying up). The network
    must have no containers left."""
    net = EgressNetwork(name)
    with _lock, _node_lock():
        _installed.discard(name)
        with translate_errors("removing the egress network"):
            try:
                client().networks.get(name).remove()
            except docker.errors.NotFound:
                pass
        fwd, inp = net.forward_chain, net.input_chain
        tables = [("iptables", [("DOCKER-USER", fwd), ("INPUT", inp)])]
        if _ipv6_present():
            tables.append(("ip6tables", [("FORWARD", fwd), ("INPUT", fwd)]))
        for tool_name, jumps in tables:
            tool = _tool(tool_name)
            for parent, chain in jumps:
                spec = ["-i", net.bridge, "-j", chain]
                while _run([tool, "-w", "-C", parent, *spec]).returncode == 0:
                    _must([tool, "-w", "-D", parent, *spec])
            for chain in {c for _, c in jumps}:
                if _run([tool, "-w", "-S", chain]).returncode == 0:
                    _must([tool, "-w", "-F", chain])
                    _must([tool, "-w", "-X", chain])
