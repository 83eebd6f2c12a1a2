"""The brains package's public face, its configuration, API failures, and the fake server."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr

import orchestrator.brains as brains
from orchestrator.brains import BrainContext, Observation, OpenAIBrain, ScriptedBrain, make_brain
from orchestrator.config import settings
from orchestrator.domain import BrainConfig
from orchestrator.errors import BrainError, ConfigError
from tests.fakes.openai_server import (
    CHAT,
    RESPONSES,
    TEST_KEY,
    FakeOpenAIServer,
    chat_json,
    chat_text,
    http_error,
    responses_reply,
)

OBS = Observation(screenshot=b"png", media_type="image/png", width=640, height=480)
CTX = BrainContext(task_id="task-1", description="do it", role="generalist")
TRIAGE = {"decision": "do", "reason": "small"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def test_public_api_is_pinned() -> None:
    assert sorted(brains.__all__) == sorted(
        [
            "SAFETY_CHECK_PREFIX",
            "Brain",
            "BrainContext",
            "Observation",
            "OpenAIBrain",
            "Script",
            "ScriptedBrain",
            "StepRecord",
            "UsageCallback",
            "make_brain",
            "parse_reply",
        ]
    )
    for name in brains.__all__:
        assert getattr(brains, name) is not None


def test_observation_data_url_and_short_repr() -> None:
    obs = Observation(screenshot=b"\x00" * 10_000, media_type="image/jpeg", width=2, height=1)
    assert obs.data_url().startswith("data:image/jpeg;base64,AAAA")
    assert repr(obs) == "Observation(media_type='image/jpeg', width=2, height=1, 10000 bytes)"


async def test_make_brain_builds_a_client_from_the_config(
    fake: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(chat_json(TRIAGE))
    config = BrainConfig(
        kind="openai", model="m-1", base_url=fake.base_url, api_key=SecretStr(TEST_KEY)
    )
    brain = make_brain(config)
    assert isinstance(brain, OpenAIBrain)
    with caplog.at_level(logging.DEBUG):
        assert (await brain.triage(CTX, OBS)).decision == "do"
    await brain.close()

    (request,) = fake.requests
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert request.body["model"] == "m-1"
    assert TEST_KEY not in caplog.text
    assert TEST_KEY not in repr(config) and TEST_KEY not in repr(brain.config)


async def test_environment_fills_in_model_key_and_url(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    fake.add(chat_json(TRIAGE))
    brain = make_brain(BrainConfig(kind="openai", temperature=0.2))
    await brain.triage(CTX, OBS)
    await brain.close()
    (request,) = fake.requests
    assert request.body["model"] == "env-model" and request.body["temperature"] == 0.2
    assert request.headers["authorization"] == "Bearer sk-env"


async def test_a_local_server_needs_no_key(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake.add(chat_json(TRIAGE))
    brain = make_brain(BrainConfig(kind="openai", model="llama", base_url=fake.base_url))
    await brain.triage(CTX, OBS)
    await brain.close()


def test_missing_model_or_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORCHESTRATOR_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="ORCHESTRATOR_MODEL"):
        make_brain(BrainConfig(kind="openai"))
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_brain(BrainConfig(kind="openai", model="gpt"))


def test_make_brain_scripted() -> None:
    brain = make_brain(BrainConfig(kind="scripted", script={"steps": [{"type": "wait"}]}))
    assert isinstance(brain, ScriptedBrain) and brain.usage == []


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "Incorrect API key provided"), (400, "model does not support images")],
)
async def test_api_errors_become_brain_errors(
    fake: FakeOpenAIServer, status: int, message: str
) -> None:
    fake.add(http_error(CHAT, status, message))
    brain = OpenAIBrain(BrainConfig(kind="openai", model="m"), client=fake.client())
    with pytest.raises(BrainError, match=f"answered {status}: .*{message}"):
        await brain.triage(CTX, OBS)


async def test_an_unreachable_endpoint_is_a_brain_error(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_MODEL_API_RETRIES", "0")  # retries: test_brains_client
    settings.cache_clear()
    request.addfinalizer(settings.cache_clear)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = BrainConfig(
        kind="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key=SecretStr("k")
    )
    brain = make_brain(config)
    assert isinstance(brain, OpenAIBrain)
    brain._client._client = brain._client._client.with_options(max_retries=0)
    with pytest.raises(BrainError, match="cannot reach the model API at http://127.0.0.1"):
        await brain.step(CTX, OBS)
    await brain.close()


# ---------------------------------------------------------------------- the fake itself


async def test_fake_answers_unexpected_requests_with_500_and_notes_them() -> None:
    async with FakeOpenAIServer() as server:
        brain = OpenAIBrain(BrainConfig(kind="openai", model="m"), client=server.client())
        with pytest.raises(BrainError, match="no reply scripted"):
            await brain.triage(CTX, OBS)
        server.add(responses_reply())
        with pytest.raises(BrainError, match="the next reply is for /v1/responses"):
            await brain.triage(CTX, OBS)
        assert len(server.errors) == 2
        with pytest.raises(AssertionError, match="unexpected request POST /v1/chat/completions"):
            server.verify()
        server.clear_errors()
        with pytest.raises(AssertionError, match=r"never requested: \['/v1/responses \(200\)'\]"):
            server.verify()
        await server.client().responses.create(model="m", input="hi")
        assert [r.path for r in server.requests][-1] == RESPONSES


async def test_fake_fails_the_test_on_unconsumed_replies() -> None:
    with pytest.raises(AssertionError, match="1 scripted repl"):
        async with FakeOpenAIServer() as server:
            server.add(chat_text("never asked for"))


@pytest.mark.parametrize(
    "module",
    ["_base", "_client", "_factory", "_openai", "_scripted", "_template", "_tools", "__init__"],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    name = "orchestrator.brains" + ("" if module == "__init__" else f".{module}")
    failed, _ = doctest.testmod(importlib.import_module(name))
    assert failed == 0


async def test_the_operators_key_never_goes_to_a_base_url_a_brain_names(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any tenant may name a base URL: the environment's key is for the environment's
    endpoint only (else a tenant could point an agent at its own server and read it)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the operator's gateway
    fake.add(chat_json(TRIAGE), chat_json(TRIAGE), chat_json(TRIAGE))
    for config in (
        BrainConfig(kind="openai", model="m", base_url=fake.base_url),
        BrainConfig(kind="openai", model="m", base_url=fake.base_url, api_key=SecretStr("own")),
    ):
        brain = make_brain(config)
        await brain.triage(CTX, OBS)
        await brain.close()
    # The environment's endpoint named explicitly (another spelling) still gets its key.
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    brain = make_brain(BrainConfig(kind="openai", model="m", base_url=fake.base_url + "/"))
    await brain.triage(CTX, OBS)
    await brain.close()
    sent = [r.headers["authorization"] for r in fake.requests]
    assert sent == ["Bearer unused", "Bearer own", "Bearer sk-operator"]


def test_a_cluster_can_limit_the_model_apis_brains_name(
    operator_env: Callable[..., None],
) -> None:
    operator_env(
        ORCHESTRATOR_MODEL_BASE_URLS="http://127.0.0.1:9/v1, https://gw/v1",
        OPENAI_BASE_URL="http://127.0.0.1:7/v1",
    )
    with pytest.raises(ConfigError, match="ORCHESTRATOR_MODEL_BASE_URLS"):
        make_brain(BrainConfig(kind="openai", model="m", base_url="http://169.254.169.254/"))
    for ok in ("https://gw/v1/", "http://127.0.0.1:9/v1", "http://127.0.0.1:7/v1"):
        assert isinstance(
            make_brain(BrainConfig(kind="openai", model="m", base_url=ok)), OpenAIBrain
        )
