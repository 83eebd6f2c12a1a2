"""The egress firewall's rules as text (the integration test shows them in force)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.config import Settings
from orchestrator.desktop._network import BLOCKED_CIDRS, EgressNetwork, resolvers, rules, rules6


def test_resolvers_are_the_ipv4_nameservers_of_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\n"
        "nameserver fd00::53\nsearch example\nnameserver 10.255.255.53\nnameserver bogus\n"
    )
    assert resolvers(conf) == ["10.255.255.53"]
    assert resolvers(tmp_path / "missing") == []


def test_rules_block_the_ranges_after_dns_and_allowed_ranges() -> None:
    net = EgressNetwork("orchestrator-egress")
    assert len(net.bridge) <= 15 and len(net.forward_chain) <= 28
    text = rules(net, ["10.255.255.53"], ["10.1.2.0/24"]).splitlines()
    fwd = [line for line in text if line.startswith(f"-A {net.forward_chain} ")]
    inp = [line for line in text if line.startswith(f"-A {net.input_chain} ")]
    # another desktop on the bridge first: no exception opens it
    reject = "-j REJECT --reject-with icmp-admin-prohibited"
    assert fwd[0] == f"-A {net.forward_chain} -o {net.bridge} {reject}"
    dns = [i for i, line in enumerate(fwd) if "--dport 53 -j RETURN" in line]
    allow = fwd.index(f"-A {net.forward_chain} -d 10.1.2.0/24 -j RETURN")
    blocks = [i for i, line in enumerate(fwd) if "-j REJECT" in line and " -d " in line]
    assert [fwd[i].split(" -d ")[1].split()[0] for i in blocks] == list(BLOCKED_CIDRS)
    assert len(dns) == 2 and max(dns) < allow < min(blocks)
    assert all("10.255.255.53/32" in fwd[i] for i in dns)
    # the host: nothing but DNS to a resolver, then everything rejected
    assert inp[-1] == f"-A {net.input_chain} {reject}"
    assert all("--dport 53 -j ACCEPT" in line for line in inp[:-1]) and len(inp) == 3
    assert text[0] == "*filter" and text[-1] == "COMMIT"
    assert f"-A {net.forward_chain} -j DROP" in rules6(net)


def test_allowed_ranges_must_be_ipv4_ranges() -> None:
    assert Settings(egress_allow_cidrs="10.1.2.3/32, 192.168.5.0/24").egress_allow_cidrs
    with pytest.raises(ValidationError, match="not an IPv4 range"):
        Settings(egress_allow_cidrs="10.1.2.3/32,mirror.local")
    with pytest.raises(ValidationError, match="not an IPv4 range"):
        Settings(egress_allow_cidrs="fd00::/8")
