"""The model client retries API calls that failed for a passing reason (issue 11, item 7).

The real ``openai`` client talks to the fake server (``tests/fakes/openai_server.py``), which
answers with scripted statuses and headers; ``ORCHESTRATOR_MODEL_API_RETRIES`` sets the
attempts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace

import pytest

from orchestrator.brains._client import ModelClient
from orchestrator.config import same_url, settings
from orchestrator.domain import BrainConfig, TokenUsage
from orchestrator.errors import BrainError
from tests.fakes.openai_server import (
    CHAT,
    RESPONSES,
    TEST_KEY,
    FakeOpenAIServer,
    chat_text,
    http_error,
    raw_reply,
    responses_reply,
    slow,
)

LOGGER = "orchestrator.brains._retry"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two retries with short waits (the backoff is capped at 0.05 s)."""
    monkeypatch.setenv("ORCHESTRATOR_MODEL_API_RETRIES", "2")
    monkeypatch.setenv("ORCHESTRATOR_MODEL_API_MAX_WAIT_S", "0.05")
    settings.cache_clear()
    yield
    settings.cache_clear()


def _client(fake: FakeOpenAIServer, **kw: float) -> ModelClient:
    return ModelClient(BrainConfig(kind="openai", model="m"), client=fake.client(**kw))


async def test_a_429_with_retry_after_is_waited_for_then_retried(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_MODEL_API_RETRIES", "3")
    settings.cache_clear()
    try:
        fake.add(
            http_error(CHAT, 429, "Rate limit reached", headers={"Retry-After": "1"}),
            chat_text("hello"),
        )
        client = _client(fake)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            reply = await client.chat(messages=[{"role": "user", "content": "hi"}])
        elapsed = time.monotonic() - start
    finally:
        settings.cache_clear()
    assert reply.choices[0].message.content == "hello"
    assert elapsed >= 1.0
    retried = [r for r in caplog.records if r.name == LOGGER]
    assert len(retried) == 1
    line = retried[0].getMessage()
    assert "answered 429: " in line and "Rate limit reached" in line
    assert "trying again in 1.0 s (attempt 2 of 4)" in line
    assert TEST_KEY not in caplog.text
    assert len(fake.requests) == 2


async def test_a_503_is_retried_until_the_attempts_are_spent(
    fake: FakeOpenAIServer, retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(*[http_error(RESPONSES, 503, "The engine is overloaded")] * 3)
    client = _client(fake)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with pytest.raises(BrainError) as err:
            await client.respond(input="hi")
    message = str(err.value)
    assert f"the model API at {fake.base_url} answered 503: " in message
    assert "The engine is overloaded" in message and "(after 3 attempts)" in message
    assert len(fake.requests) == 3
    assert len([r for r in caplog.records if r.name == LOGGER]) == 2
    assert TEST_KEY not in caplog.text and TEST_KEY not in message


@pytest.mark.parametrize("status", [408, 409, 500, 502, 529])
async def test_passing_statuses_are_retried(
    fake: FakeOpenAIServer, retries: None, status: int
) -> None:
    fake.add(http_error(RESPONSES, status, "try later"), responses_reply())
    reply = await _client(fake).respond(input="hi")
    assert reply["status"] == "completed" and len(fake.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_final_statuses_are_not_retried(
    fake: FakeOpenAIServer, retries: None, status: int
) -> None:
    fake.add(http_error(CHAT, status, "bad request"))
    with pytest.raises(BrainError, match=f"answered {status}: .*bad request") as err:
        await _client(fake).chat(messages=[])
    assert "attempts" not in str(err.value)
    assert len(fake.requests) == 1


async def test_a_timeout_is_retried(fake: FakeOpenAIServer, retries: None) -> None:
    fake.add(slow(chat_text("too late"), 30), chat_text("in time"))
    reply = await _client(fake, timeout=0.5).chat(messages=[])
    assert reply.choices[0].message.content == "in time"
    assert len(fake.requests) == 2


async def test_timeouts_until_the_attempts_are_spent(fake: FakeOpenAIServer, retries: None) -> None:
    fake.add(*[slow(chat_text("too late"), 30)] * 3)
    with pytest.raises(BrainError, match=r"timed out \(after 3 attempts\)"):
        await _client(fake, timeout=0.3).chat(messages=[])


async def test_no_retries_when_the_setting_is_zero(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_MODEL_API_RETRIES", "0")
    settings.cache_clear()
    try:
        fake.add(http_error(CHAT, 503, "overloaded"))
        with pytest.raises(BrainError, match="answered 503: .*overloaded") as err:
            await _client(fake).chat(messages=[])
    finally:
        settings.cache_clear()
    assert "attempts" not in str(err.value)
    assert len(fake.requests) == 1


async def test_the_sdk_does_not_retry_as_well(fake: FakeOpenAIServer, retries: None) -> None:
    """A client handed in with the SDK's own retries is used without them."""
    fake.add(*[http_error(CHAT, 500, "broken")] * 3)
    with pytest.raises(BrainError, match=r"\(after 3 attempts\)"):
        await _client(fake, max_retries=3).chat(messages=[])
    assert len(fake.requests) == 3


def test_a_built_client_has_the_sdk_retries_off() -> None:
    client = ModelClient(BrainConfig(kind="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    assert client._client.max_retries == 0


async def test_the_key_is_cut_out_of_error_messages(fake: FakeOpenAIServer, retries: None) -> None:
    fake.add(http_error(CHAT, 401, f"Incorrect API key provided: {TEST_KEY}"))
    with pytest.raises(BrainError, match="answered 401") as err:
        await _client(fake).chat(messages=[])
    assert TEST_KEY not in str(err.value) and "<api key>" in str(err.value)


async def test_a_long_retry_after_is_capped(
    fake: FakeOpenAIServer, retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    """ORCHESTRATOR_MODEL_API_MAX_WAIT_S (0.05 s here) bounds what the server asks."""
    fake.add(
        http_error(CHAT, 429, "slow down", headers={"Retry-After": "30"}),
        http_error(CHAT, 529, "overloaded", headers={"retry-after-ms": "20000"}),
        chat_text("ok"),
    )
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await _client(fake).chat(messages=[])
    assert time.monotonic() - start < 5
    waits = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(waits) == 2 and all("trying again in 0.1 s" in w for w in waits)


async def test_cached_input_tokens_are_recorded_with_each_call(fake: FakeOpenAIServer) -> None:
    chat = chat_text("hi", input_tokens=1000)
    chat.body["usage"]["prompt_tokens_details"] = {"cached_tokens": 600}
    response = responses_reply(input_tokens=900)
    response.body["usage"]["input_tokens_details"] = {"cached_tokens": 512}
    odd = chat_text("hi", input_tokens=10)
    odd.body["usage"]["prompt_tokens_details"] = {"cached_tokens": "lots"}  # not a count
    fake.add(chat, response, odd)
    seen: list[TokenUsage] = []
    client = ModelClient(
        BrainConfig(kind="openai", model="m"), client=fake.client(), on_usage=seen.append
    )
    await client.chat(messages=[{"role": "user", "content": "hi"}])
    await client.respond(input="hi")
    await client.chat(messages=[{"role": "user", "content": "hi"}])
    assert [(u.input_tokens, u.cached_input_tokens) for u in seen] == [
        (1000, 600),
        (900, 512),
        (10, 0),
    ]


# ---------------------------------------------------------------- big, odd and leaky replies

_MIB = 2**20


async def test_a_reply_over_16_mib_is_refused_by_its_content_length(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(raw_reply(CHAT, b"x" * (20 * _MIB), "application/json"))
    with pytest.raises(BrainError, match="sent a reply over 16 MiB"):
        await asyncio.wait_for(_client(fake).chat(messages=[]), 20)


async def test_a_streamed_reply_is_read_only_up_to_the_cap(fake: FakeOpenAIServer) -> None:
    """1 GiB chunked, no Content-Length: refused once 16 MiB came, the rest never read."""
    fake.add(replace(raw_reply(RESPONSES, b"[" * 65536), stream_bytes=1024 * _MIB))
    with pytest.raises(BrainError, match="over 16 MiB"):
        await asyncio.wait_for(_client(fake).respond(input="hi"), 20)


async def test_a_reply_nested_too_deep_is_not_json(fake: FakeOpenAIServer) -> None:
    fake.add(raw_reply(CHAT, b"[" * 100_000, "application/json"))
    fake.add(raw_reply(RESPONSES, b"[" * 100_000, "application/json"))
    client = _client(fake)
    with pytest.raises(BrainError, match=r"not JSON \(application/json\)"):
        await client.chat_body(messages=[])
    with pytest.raises(BrainError, match="not JSON"):
        await client.respond(input="hi")


async def test_a_key_echoed_in_a_reply_is_cut_out_before_the_excerpt(
    fake: FakeOpenAIServer,
) -> None:
    """The key straddles the excerpt's cut (120 characters), in a reply that is not JSON
    and in one that is JSON but not a completion."""
    fake.add(raw_reply(CHAT, b"y" * 110 + TEST_KEY.encode(), "text/plain"))
    fake.add(raw_reply(CHAT, json.dumps({"echo": "y" * 100 + TEST_KEY}).encode()))
    client = _client(fake)
    for what in ("not JSON", "not a chat completion"):
        with pytest.raises(BrainError, match=what) as err:
            await client.chat_body(messages=[])
        assert TEST_KEY[:6] not in str(err.value) and "<api" in str(err.value)


async def test_a_final_failure_chains_nothing_that_holds_the_key(fake: FakeOpenAIServer) -> None:
    fake.add(http_error(CHAT, 400, f"bad key {TEST_KEY}"))
    with pytest.raises(BrainError, match="answered 400: .*bad key <api key>") as err:
        await _client(fake).chat(messages=[])
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert TEST_KEY not in "".join(traceback.format_exception(err.value))


async def test_the_operators_organization_and_project_go_only_to_its_endpoint(
    fake: FakeOpenAIServer, operator_env: Callable[..., None]
) -> None:
    operator_env(
        OPENAI_ORG_ID="org-operator",
        OPENAI_PROJECT_ID="proj-operator",
        OPENAI_API_KEY="sk-operator-0123456789",
        OPENAI_BASE_URL=fake.base_url,
        ORCHESTRATOR_MODEL_BASE_URLS="http://127.0.0.1:*/v1",
    )
    fake.add(chat_text("a"), chat_text("b"))
    mine = ModelClient(BrainConfig(kind="openai", model="m"))
    try:
        await mine.chat(messages=[])
    finally:
        await mine.close()
    operator_env(OPENAI_BASE_URL="http://gw.internal:8000/v1")  # now another endpoint
    theirs = ModelClient(BrainConfig(kind="openai", model="m", base_url=fake.base_url))
    try:
        await theirs.chat(messages=[])
    finally:
        await theirs.close()
    first, second = (r.headers for r in fake.requests)
    assert first["openai-organization"] == "org-operator"
    assert first["openai-project"] == "proj-operator"
    assert "openai-organization" not in second and "openai-project" not in second
    assert "sk-operator" not in second.get("authorization", "")


def test_urls_are_the_same_whatever_the_case_of_scheme_and_host_but_not_of_the_path() -> None:
    assert same_url("HTTP://GW.Internal:80/v1/", "http://gw.internal/v1")
    assert not same_url("http://gw.internal/V1", "http://gw.internal/v1")
    assert not same_url("http://gw.internal:8000/v1", "http://gw.internal/v1")
