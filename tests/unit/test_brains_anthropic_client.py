"""The Anthropic client wrapper against the fake Messages API: retries (429 with Retry-After,
529 overloaded, 5xx), final errors, and where the operator's key may go."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

from orchestrator.brains import BrainContext, Observation, _anthropic, make_brain
from orchestrator.brains._anthropic_client import AnthropicClient
from orchestrator.brains._planner import _CLOSING, with_planner
from orchestrator.domain import BrainConfig, Done, PlannerConfig
from orchestrator.errors import BrainError, ConfigError
from tests.fakes.anthropic_server import (
    TEST_KEY,
    FakeAnthropicServer,
    error_reply,
    overloaded,
    rate_limited,
    raw_reply,
    text_message,
)

OPERATOR_KEY = "sk-ant-operator-secret-0123456789"
OBS = Observation(screenshot=b"png", media_type="image/png", width=640, height=480)
CTX = BrainContext(task_id="task-1", description="do it", role="generalist")
ASK: dict[str, Any] = {"max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
async def other() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server


def client_at(url: str, **kw: Any) -> AnthropicClient:
    return AnthropicClient(BrainConfig(kind="anthropic", model="claude-x", base_url=url, **kw))


async def test_429_waits_for_retry_after_then_succeeds(
    fake: FakeAnthropicServer, operator_env: Callable[..., None]
) -> None:
    operator_env(ORCHESTRATOR_MODEL_API_RETRIES="2")
    fake.add(rate_limited(retry_after=1), text_message("ok"))
    client = client_at(fake.base_url)
    t0 = time.monotonic()
    try:
        reply = await client.create(**ASK)
    finally:
        await client.close()
    assert time.monotonic() - t0 >= 1.0
    assert reply["content"] == [{"type": "text", "text": "ok"}] and len(fake.requests) == 2


async def test_529_overloaded_is_retried(
    fake: FakeAnthropicServer, operator_env: Callable[..., None]
) -> None:
    operator_env(ORCHESTRATOR_MODEL_API_RETRIES="3")
    fake.add(overloaded(retry_after=0), overloaded(retry_after=0), text_message("ok"))
    brain = make_brain(BrainConfig(kind="anthropic", model="claude-x", base_url=fake.base_url))
    try:
        assert await brain.step(CTX, OBS) == Done(result="ok")
    finally:
        await brain.close()
    assert len(fake.requests) == 3


async def test_5xx_every_time_fails_with_the_reason_after_every_attempt(
    fake: FakeAnthropicServer, operator_env: Callable[..., None]
) -> None:
    operator_env(ORCHESTRATOR_MODEL_API_RETRIES="2")
    fake.add(*[error_reply(500, "api_error", "boom", retry_after=0) for _ in range(3)])
    client = client_at(fake.base_url)
    try:
        with pytest.raises(BrainError) as err:
            await client.create(**ASK)
    finally:
        await client.close()
    assert str(err.value) == (
        f"the model API at {fake.base_url} answered 500: api_error: boom (after 3 attempts)"
    )
    assert len(fake.requests) == 3


async def test_other_errors_are_final_and_never_show_the_key(
    fake: FakeAnthropicServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(error_reply(400, "invalid_request_error", f"bad key {OPERATOR_KEY} given"))
    client = client_at(fake.base_url, api_key=SecretStr(OPERATOR_KEY))
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(BrainError, match="answered 400: invalid_request_error") as err:
            await client.create(**ASK)
    finally:
        await client.close()
    assert OPERATOR_KEY not in str(err.value) and "<api key>" in str(err.value)
    assert OPERATOR_KEY not in caplog.text
    assert len(fake.requests) == 1


async def test_the_sdks_own_retries_are_off(
    fake: FakeAnthropicServer, operator_env: Callable[..., None]
) -> None:
    operator_env(ORCHESTRATOR_MODEL_API_RETRIES="0")
    fake.add(overloaded(retry_after=0))
    client = AnthropicClient(
        BrainConfig(kind="anthropic", model="claude-x"), client=fake.client(max_retries=5)
    )
    with pytest.raises(BrainError, match="answered 529: overloaded_error"):
        await client.create(**ASK)
    assert len(fake.requests) == 1


async def test_the_operators_key_goes_only_to_the_operators_endpoint(
    fake: FakeAnthropicServer, other: FakeAnthropicServer, operator_env: Callable[..., None]
) -> None:
    operator_env(ANTHROPIC_BASE_URL=fake.base_url, ANTHROPIC_API_KEY=OPERATOR_KEY)
    fake.add(text_message("a"), text_message("b"))
    other.add(text_message("c"), text_message("d"))
    configs: list[BrainConfig | PlannerConfig] = [
        BrainConfig(kind="anthropic", model="claude-x"),  # the operator's endpoint
        BrainConfig(kind="anthropic", model="claude-x", base_url=fake.base_url + "/"),
        BrainConfig(kind="anthropic", model="claude-x", base_url=other.base_url),  # no key
        PlannerConfig(
            api="anthropic", model="claude-x", base_url=other.base_url, api_key=SecretStr("own")
        ),
    ]
    for config in configs:
        client = AnthropicClient(config)
        try:
            await client.create(**ASK)
        finally:
            await client.close()
    assert [r.api_key for r in fake.requests] == [OPERATOR_KEY, OPERATOR_KEY]
    assert [r.api_key for r in other.requests] == ["unused", "own"]
    for request in other.requests:
        assert OPERATOR_KEY not in str(request.headers)


async def test_the_operators_custom_headers_go_only_to_the_operators_endpoint(
    fake: FakeAnthropicServer, other: FakeAnthropicServer, operator_env: Callable[..., None]
) -> None:
    # the SDK adds ANTHROPIC_CUSTOM_HEADERS to every request by itself
    operator_env(
        ANTHROPIC_BASE_URL=fake.base_url,
        ANTHROPIC_API_KEY=OPERATOR_KEY,
        ANTHROPIC_CUSTOM_HEADERS="X-Gateway-Token: gw-secret\nX-Team: ops",
    )
    fake.add(text_message("a"))
    other.add(text_message("b"))
    for config in (
        BrainConfig(kind="anthropic", model="claude-x"),
        BrainConfig(kind="anthropic", model="claude-x", base_url=other.base_url),
    ):
        client = AnthropicClient(config)
        try:
            await client.create(**ASK)
        finally:
            await client.close()
    (mine,) = fake.requests
    (theirs,) = other.requests
    assert {k.lower(): v for k, v in mine.headers.items()}["x-gateway-token"] == "gw-secret"
    assert "gw-secret" not in str(theirs.headers)
    assert "x-team" not in {k.lower() for k in theirs.headers}


async def test_a_base_url_the_operator_does_not_allow_is_a_config_error(
    operator_env: Callable[..., None],
) -> None:
    operator_env(ORCHESTRATOR_MODEL_BASE_URLS=None, ANTHROPIC_BASE_URL=None, ANTHROPIC_API_KEY=None)
    for url in ("http://127.0.0.1:9", "https://api.anthropic.com.evil.example", "http://10.0.0.1"):
        with pytest.raises(ConfigError, match="is not one of the model APIs"):
            make_brain(BrainConfig(kind="anthropic", model="claude-x", base_url=url))
        with pytest.raises(ConfigError, match="is not one of the model APIs"):
            AnthropicClient(PlannerConfig(api="anthropic", model="claude-x", base_url=url))
    # Anthropic's own API is allowed, but needs a key
    with pytest.raises(ConfigError, match="no API key for Anthropic's API"):
        make_brain(BrainConfig(kind="anthropic", model="claude-x"))
    own = AnthropicClient(BrainConfig(kind="anthropic", model="claude-x", api_key=SecretStr("k")))
    assert own.base_url == "https://api.anthropic.com"
    await own.close()


def test_the_model_comes_from_the_config_else_the_environment(
    operator_env: Callable[..., None],
) -> None:
    key = SecretStr("k")
    operator_env(ORCHESTRATOR_ANTHROPIC_MODEL=None, ORCHESTRATOR_MODEL=None)
    with pytest.raises(ConfigError, match="no Anthropic model named"):
        AnthropicClient(BrainConfig(kind="anthropic", api_key=key))
    operator_env(ORCHESTRATOR_MODEL="generic")
    assert AnthropicClient(BrainConfig(kind="anthropic", api_key=key)).model == "generic"
    operator_env(ORCHESTRATOR_ANTHROPIC_MODEL="claude-y")
    assert AnthropicClient(BrainConfig(kind="anthropic", api_key=key)).model == "claude-y"
    config = BrainConfig(kind="anthropic", model="claude-z", api_key=key)
    assert AnthropicClient(config).model == "claude-z"


async def test_the_fake_server_fails_loudly_when_misused(fake: FakeAnthropicServer) -> None:
    client = client_at(fake.base_url)
    try:
        with pytest.raises(BrainError, match="answered 421: fake: fake server: unexpected"):
            await client.create(**ASK)  # nothing scripted: not retried
    finally:
        await client.close()
    assert fake.errors == ["unexpected request POST /v1/messages: no reply scripted"]
    with pytest.raises(AssertionError, match="misused"):
        fake.verify()
    fake.clear_errors()
    fake.add(text_message("never asked"))
    with pytest.raises(AssertionError, match="1 scripted repl"):
        fake.verify()
    again = client_at(fake.base_url)
    try:
        await again.create(**ASK)  # consumed: verified clean on exit
    finally:
        await again.close()


# ---------------------------------------------------------------- big, odd and leaky replies

_MIB = 2**20


async def test_a_reply_over_16_mib_is_refused_and_a_stream_read_only_up_to_it(
    fake: FakeAnthropicServer,
) -> None:
    fake.add(
        raw_reply(b"x" * (20 * _MIB), "application/json"),
        replace(raw_reply(b"[" * 65536, "application/json"), stream_bytes=1024 * _MIB),
    )
    client = AnthropicClient(BrainConfig(kind="anthropic", model="m"), client=fake.client())
    for _ in range(2):  # by Content-Length, then 1 GiB chunked: cut off after 16 MiB
        with pytest.raises(BrainError, match="sent a reply over 16 MiB"):
            await asyncio.wait_for(client.create(**ASK), 20)


async def test_a_reply_nested_too_deep_is_not_json(fake: FakeAnthropicServer) -> None:
    fake.add(raw_reply(b"[" * 100_000, "application/json"))
    client = AnthropicClient(BrainConfig(kind="anthropic", model="m"), client=fake.client())
    with pytest.raises(BrainError, match=r"not JSON \(application/json\)"):
        await client.create(**ASK)


async def test_a_key_across_the_excerpts_cut_never_shows(fake: FakeAnthropicServer) -> None:
    fake.add(
        raw_reply(b"y" * 110 + TEST_KEY.encode(), "text/plain"),
        raw_reply(json.dumps({"echo": "y" * 100 + TEST_KEY}).encode(), "application/json"),
        error_reply(400, "invalid_request_error", f"bad key {TEST_KEY}"),
    )
    client = AnthropicClient(BrainConfig(kind="anthropic", model="m"), client=fake.client())
    for what in ("not JSON", "not a message", "answered 400"):
        with pytest.raises(BrainError, match=what) as err:
            await client.create(**ASK)
        assert TEST_KEY[:6] not in str(err.value) and "<api" in str(err.value)
        assert err.value.__cause__ is None and TEST_KEY not in _chained(err.value)
        assert TEST_KEY not in "".join(traceback.format_exception(err.value))


def _chained(e: BaseException | None) -> str:
    """Everything an exception carries along its chain (Ray may carry it all)."""
    out = []
    while e is not None:
        out.append(f"{e!r} {vars(e)!r}")
        e = e.__cause__ or e.__context__
    return "\n".join(out)


def test_a_planner_that_cannot_be_made_closes_the_acting_brains_client(
    operator_env: Callable[..., None],
) -> None:
    operator_env(ORCHESTRATOR_MODEL_BASE_URLS=None, OPENAI_BASE_URL=None)
    actor = make_brain(BrainConfig(kind="anthropic", model="claude-x", api_key=SecretStr("k")))
    sdk = actor._client.sdk  # type: ignore[attr-defined]
    planner = PlannerConfig(model="p", base_url="https://attacker.example/v1", api_key="k")
    with pytest.raises(ConfigError, match="brain.planner.base_url"):
        with_planner(actor, planner)
    assert sdk.is_closed()


async def test_in_an_event_loop_the_close_runs_in_a_task(
    operator_env: Callable[..., None],
) -> None:
    operator_env(ORCHESTRATOR_MODEL_BASE_URLS=None, OPENAI_BASE_URL=None)
    actor = make_brain(BrainConfig(kind="anthropic", model="claude-x", api_key=SecretStr("k")))
    sdk = actor._client.sdk  # type: ignore[attr-defined]
    planner = PlannerConfig(model="p", base_url="https://attacker.example/v1", api_key="k")
    with pytest.raises(ConfigError):
        with_planner(actor, planner)
    await asyncio.wait_for(asyncio.gather(*_CLOSING), 5)
    assert sdk.is_closed()


def test_an_anthropic_brain_whose_planner_fails_closes_its_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []

    class Recording(AnthropicClient):
        async def close(self) -> None:
            closed.append(self.model)
            await super().close()

    def refuse(*args: Any, **kw: Any) -> None:
        raise ConfigError("no planner")

    monkeypatch.setattr(_anthropic, "AnthropicClient", Recording)
    monkeypatch.setattr(_anthropic, "AnthropicPlanner", refuse)
    with pytest.raises(ConfigError, match="no planner"):
        _anthropic.AnthropicBrain(
            BrainConfig(kind="anthropic", model="claude-x", api_key=SecretStr("k"))
        )
    assert closed == ["claude-x"]


def test_a_zoom_over_the_apis_image_limit_goes_as_jpeg_or_not_at_all() -> None:
    noise = Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    png = out.getvalue()
    assert len(png) > 4 * _MIB  # its base64 is over 5 MiB
    small = _anthropic.zoom_image(b"\x89PNG tiny")
    assert small is not None and small["source"]["media_type"] == "image/png"
    block = _anthropic.zoom_image(png)
    assert block is not None and block["source"]["media_type"] == "image/jpeg"
    assert len(block["source"]["data"]) <= _anthropic.MAX_IMAGE_BYTES
    assert _anthropic.zoom_image(png, limit=1000) is None
