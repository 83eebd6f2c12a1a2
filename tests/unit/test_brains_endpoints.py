"""Which model APIs a brain may send to (S6: only the operator's, by default), and replies
that are not JSON, from a real local HTTP server through the real ``openai`` client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr

from orchestrator.brains import BrainContext, Observation, OpenAIBrain, make_brain
from orchestrator.config import settings
from orchestrator.domain import BrainConfig
from orchestrator.errors import BrainError, ConfigError
from tests.fakes.openai_server import CHAT, RESPONSES, FakeOpenAIServer, raw_reply

OBS = Observation(screenshot=b"png", media_type="image/png", width=640, height=480)
CTX = BrainContext(task_id="task-1", description="do it", role="generalist")
HTML = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body>"


@pytest.fixture
def no_operator_urls(operator_env: Callable[..., None]) -> Callable[..., None]:
    """An operator who configured no model endpoints at all."""
    operator_env(ORCHESTRATOR_MODEL_BASE_URLS=None, OPENAI_BASE_URL=None, OPENAI_API_KEY=None)
    return operator_env


def brain_at(url: str) -> object:
    return make_brain(BrainConfig(kind="openai", model="m", base_url=url, api_key=SecretStr("k")))


def test_by_default_a_brain_may_name_only_the_operators_endpoint(
    no_operator_urls: Callable[..., None],
) -> None:
    """The probe pointed a brain at an address of its choice and the node POSTed there."""
    for url in (
        "http://169.254.169.254/latest",
        "http://127.0.0.1:8080/v1",
        "https://attacker.example/v1",
        "https://api.openai.com.attacker.example/v1",
    ):
        with pytest.raises(ConfigError, match="ORCHESTRATOR_MODEL_BASE_URLS") as err:
            brain_at(url)
        assert str(err.value).startswith(f"brain.base_url {url!r} is not one of the model APIs")
    assert isinstance(brain_at("https://api.openai.com/v1/"), OpenAIBrain)  # OpenAI's own
    # The operator's OPENAI_BASE_URL replaces OpenAI's as the one endpoint allowed.
    no_operator_urls(OPENAI_BASE_URL="http://gw.internal:8000/v1")
    assert isinstance(brain_at("http://GW.internal:8000/v1/"), OpenAIBrain)
    for url in ("https://api.openai.com/v1", "http://gw.internal:8001/v1", "http://gw.internal/v1"):
        with pytest.raises(ConfigError):
            brain_at(url)


def test_the_operator_allows_more_endpoints_compared_by_their_parts(
    no_operator_urls: Callable[..., None],
) -> None:
    no_operator_urls(
        ORCHESTRATOR_MODEL_BASE_URLS="http://vllm.internal/v1, http://127.0.0.1:*/v1, bad url"
    )
    allowed = settings().model_url_allowed
    assert allowed("http://vllm.internal:80/v1") and allowed("HTTP://vllm.internal/v1/")
    assert allowed("http://127.0.0.1:5555/v1") and allowed("http://127.0.0.1/v1")
    for url in (
        "http://127.0.0.1:1@attacker.example/v1",  # user info: the host is attacker.example
        "http://vllm.internal@attacker.example/v1",
        "https://127.0.0.1:5555/v1",  # another scheme
        "http://127.0.0.1:5555/v1/../admin",
        "http://127.0.0.1:5555/other",
        "http://localhost:5555/v1",  # names are not resolved: listed as written
        "http://127.0.0.1:*/v1",  # a pattern is not a URL
        "http://vllm.internal/v1?x=1",
        "file:///etc/passwd",
        "bad url",
        "",
    ):
        assert not allowed(url), url


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


@pytest.mark.parametrize("mode", ["chat", "responses"])
async def test_a_reply_that_is_not_json_is_a_brain_error_with_the_reason(
    fake: FakeOpenAIServer, mode: str
) -> None:
    """A proxy's HTML page (200) crashed the brain with AttributeError."""
    path = CHAT if mode == "chat" else RESPONSES
    fake.add(
        raw_reply(path, HTML),
        raw_reply(path, b"upstream says no", "text/plain"),
        raw_reply(path, HTML),
    )
    brain = make_brain(BrainConfig(kind="openai", model="m", base_url=fake.base_url, mode=mode))  # type: ignore[arg-type]
    try:
        with pytest.raises(BrainError) as err:
            await brain.triage(CTX, OBS)
        assert f"the model API at {fake.base_url} sent a reply that is not JSON" in str(err.value)
        assert "(text/html)" in str(err.value) and "502 Bad Gateway" in str(err.value)
        with pytest.raises(BrainError, match=r"not JSON \(text/plain\): 'upstream says no'"):
            await brain.triage(CTX, OBS)
        with pytest.raises(BrainError, match="not JSON"):
            await brain.step(CTX, OBS)
    finally:
        await brain.close()


async def test_json_that_is_not_a_chat_completion_is_a_brain_error(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        raw_reply(CHAT, b'{"status": "ok"}', "application/json"),
        raw_reply(CHAT, b'{"choices": ["x"]}', "application/json"),
        raw_reply(CHAT, b"[1, 2]", "application/json"),
    )
    brain = make_brain(BrainConfig(kind="openai", model="m", base_url=fake.base_url, mode="chat"))
    try:
        for _ in range(3):
            with pytest.raises(BrainError, match="sent a reply that is not a chat completion"):
                await brain.triage(CTX, OBS)
    finally:
        await brain.close()
