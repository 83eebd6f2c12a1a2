"""A quota refusal through the SDK: one request, a typed error, no retries (waiting alone
does not free a quota), against a real HTTP server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from orchestrator import errors
from orchestrator.sdk import Client, QuotaExceededError, UnavailableError
from tests.unit.test_sdk_retries import FAST, Scripted, answer

QUOTA = json.dumps(
    {
        "error": {
            "code": "quota_exceeded",
            "message": "quota exceeded: tenant 'acme' has 1 live top-level agents and its "
            "quota is 1 (max_agents); fire one first, or ask the operator for more",
        }
    }
).encode()


@pytest.fixture
def server() -> Iterator[Scripted]:
    s = Scripted()
    try:
        yield s
    finally:
        s.close()


def test_a_quota_refusal_is_raised_at_once_as_its_own_error(server: Scripted) -> None:
    server.on("/v1/agents", answer(429, QUOTA))
    with Client(server.url, "key", retry=FAST) as c, pytest.raises(QuotaExceededError) as e:
        c.create_agent("alice")
    assert isinstance(e.value, errors.QuotaExceededError)  # the runtime's class too
    assert e.value.status == 429 and e.value.code == "quota_exceeded"
    assert "its quota is 1 (max_agents)" in str(e.value)
    assert server.count("POST", "/v1/agents") == 1


def test_other_429s_are_still_retried(server: Scripted) -> None:
    busy = json.dumps({"error": {"code": "too_many_requests", "message": "busy"}}).encode()
    server.on("/v1/agents", answer(429, busy, Retry_After="0"))
    with Client(server.url, "key", retry=FAST) as c, pytest.raises(UnavailableError):
        c.create_agent("alice")
    assert server.count("POST", "/v1/agents") == 4
