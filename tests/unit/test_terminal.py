"""What the CLI prints of tenants' text reaches the terminal harmless (S8): control
characters, escape sequences and bidi controls are shown escaped, never sent raw."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator._terminal import safe
from orchestrator.cli import main
from orchestrator.domain import AgentInfo, AgentSpec

ESC = "\x1b"
HOSTILE = (
    f"{ESC}[2J{ESC}[H"  # clear the screen, cursor home
    f"{ESC}]0;owned{chr(7)}"  # OSC: set the window title
    f"{ESC}]8;;https://attacker.example{ESC}\\click{ESC}]8;;{ESC}\\"  # OSC 8 hyperlink
    "\x00nul\rcr\x08bs\x7fdel\x9b31mcsi"  # NUL, CR, BS, DEL, C1 CSI
    "\u202egnp.exe\u202c \u2066iso\u2069"  # RLO ... PDF, LRI ... PDI
)
"""A role a tenant might give its agent."""


def raw_controls(text: str) -> list[str]:
    """The characters in ``text`` that a terminal would act on."""
    bidi = {*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
    return [
        c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 or c in bidi
    ]


def test_safe_escapes_every_control_and_keeps_the_rest() -> None:
    every = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0), *range(0x2000, 0x2070)]))
    assert raw_controls(safe(every)) == []
    assert safe("\x00\x1b\x7f\x9b\r") == "\\x00\\x1b\\x7f\\x9b\\x0d"
    assert safe("\u202a\u202e\u2066\u2069") == "\\u202a\\u202e\\u2066\\u2069"
    kept = "tab\there\nnew line, héllo → 世界 🖥️ \u200d zero-width joiner stays"
    assert safe(kept) == kept
    assert safe(3) == "3" and safe(None) == "None"


class _Api(BaseHTTPRequestHandler):
    """A stand-in API that answers GET /v1/agents with one agent of a hostile role, and
    anything else with a 404 whose message carries the same text."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v1/agents":
            spec = AgentSpec(name="evil", role=HOSTILE)
            info = AgentInfo(id="agent-1", path="t/evil", tenant="t", parent_id=None, spec=spec)
            status, body = 200, [info.model_dump(mode="json")]
        else:
            status, body = 404, {"error": {"code": "not_found", "message": f"no {HOSTILE}"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_cli_prints_a_hostile_role_and_error_escaped(api: str) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["agents", "--url", api, "--api-key", "k"])
    assert out.exit_code == 0, out.output
    assert raw_controls(out.output) == []
    assert out.output == f"agent-1  starting  t/evil  ({safe(HOSTILE)})\n"
    assert "\\x1b]0;owned\\x07" in out.output and "\\u202egnp.exe" in out.output
    err = runner.invoke(main, ["watch", "task-1", "--url", api, "--api-key", "k"])
    assert err.exit_code == 1
    assert raw_controls(err.output) == []
    assert err.output.startswith("error: ") and "no \\x1b[2J" in err.output
