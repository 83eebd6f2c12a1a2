"""Bodies larger than gRPC's default 4 MiB message through the real API (R3): Serve's proxy
talks to the replica over gRPC, and a response that is not streamed is one message. A 64 MiB
upload (the API's upload limit) and its download come back whole."""

from __future__ import annotations

import hashlib
import secrets

import httpx
import pytest

from orchestrator.sdk import Agent
from serve_app._files import MAX_UPLOAD_BYTES
from tests.integration.test_sdk import Server, server
from tests.integration.test_sdk_files import desk

pytestmark = pytest.mark.integration

__all__ = ["desk", "server"]  # the imported module fixtures


def test_a_64_mib_upload_and_download(server: Server, desk: Agent) -> None:
    assert MAX_UPLOAD_BYTES == 64 << 20
    data = secrets.token_bytes(MAX_UPLOAD_BYTES)
    assert desk.write_file("~/big/64mib.bin", data) == len(data)
    digest = desk.shell("sha256sum ~/big/64mib.bin").stdout.split()[0]
    assert digest == hashlib.sha256(data).hexdigest()

    got = desk.read_file("~/big/64mib.bin")
    assert len(got) == len(data) and bytes(got) == data

    # The same through plain HTTP: one 200 with the whole body, not a plain-text 500.
    with httpx.Client(timeout=120) as http:
        r = http.get(
            f"{server.url}/v1/agents/{desk.id}/files",
            params={"path": "~/big/64mib.bin"},
            headers={"Authorization": f"Bearer {server.key}"},
        )
    assert r.status_code == 200, r.text[:300]
    assert hashlib.sha256(r.content).hexdigest() == digest


def test_a_5_mib_file_made_on_the_desktop_downloads(desk: Agent) -> None:
    made = desk.shell("head -c 5242880 /dev/urandom > ~/big/5mib.bin && sha256sum ~/big/5mib.bin")
    got = desk.read_file("~/big/5mib.bin")
    assert len(got) == 5 << 20
    assert hashlib.sha256(bytes(got)).hexdigest() == made.stdout.split()[0]
