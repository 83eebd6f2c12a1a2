"""The one wrapper around the model API client: every model call goes through here.

It builds an ``openai.AsyncOpenAI`` from a ``BrainConfig`` (falling back to the
environment: ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``ORCHESTRATOR_MODEL``), so OpenAI,
vLLM, Ollama and gateways all work; retries calls that failed for a passing reason (408,
409, 429, 5xx and 529 answers, honouring ``Retry-After``; timeouts; dropped connections) with
``_retry.with_retries`` (``ORCHESTRATOR_MODEL_API_RETRIES`` times, the SDK's own retries
off); translates API failures into ``BrainError``; and records the tokens of every call.
The key is never logged: it lives only in the client, and is cut out of error messages.
Reply bodies are read with a cap (``_retry.MAX_REPLY_BYTES``). The operator's organization
and project (``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``), which the SDK would send by itself,
go only to the operator's endpoint, like the key.

Example:
    >>> from orchestrator.domain import BrainConfig
    >>> client = ModelClient(BrainConfig(kind="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    >>> client.model, client.base_url
    ('m', 'http://127.0.0.1:9/v1')
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
import openai
from openai.types.chat import ChatCompletion

from ..config import (
    OPENAI_URL,
    ModelEnv,
    check_model_url,
    env_name,
    model_env,
    same_url,
    settings,
)
from ..domain import BrainConfig, TokenUsage
from ..errors import BrainError, ConfigError
from ._retry import Failure, parse_retry_after, read_reply, reply_json, with_retries

__all__ = ["ModelClient"]

log = logging.getLogger(__name__)

ENV_API_KEY = env_name(ModelEnv, "openai_api_key")
ENV_BASE_URL = env_name(ModelEnv, "openai_base_url")
ENV_MODEL = env_name(ModelEnv, "model")

_LOCAL_KEY = "unused"
"""Sent to servers that need no key (vLLM, Ollama on a base URL), since the client wants one."""

RETRYABLE_STATUSES = frozenset({408, 409, 429, 529})
"""Answers worth another try besides every 5xx: timeout, conflict, rate limit, overloaded."""

T = TypeVar("T")


def _endpoint(config: BrainConfig, env: ModelEnv) -> tuple[str | None, str | None, bool]:
    """The base URL and key of a brain's model API, and whether it is the operator's.

    The environment's key (``OPENAI_API_KEY``) is the operator's: it goes only to the
    environment's endpoint (``OPENAI_BASE_URL``, else OpenAI's). A brain that names another
    ``base_url`` (any tenant can) gets its own ``api_key`` or none: never the operator's.
    """
    env_url = env.openai_base_url
    own_key = config.api_key.get_secret_value() if config.api_key else None
    if config.base_url and not same_url(config.base_url, env_url or OPENAI_URL):
        check_model_url(config.base_url)
        return config.base_url, own_key, False
    env_key = env.openai_api_key.get_secret_value() if env.openai_api_key else None
    return config.base_url or env_url, own_key or env_key or None, True


def _identity(env: ModelEnv, operator: bool) -> dict[str, Any]:
    """The ``organization``, ``project`` and ``default_headers`` of the SDK client: the
    operator's ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT_ID`` for the operator's endpoint; for
    any other, their headers removed (given None, the SDK would read them from the
    environment by itself)."""
    if operator:
        return {
            "organization": env.openai_org_id.get_secret_value() if env.openai_org_id else None,
            "project": env.openai_project_id.get_secret_value() if env.openai_project_id else None,
        }
    omit = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
    return {"organization": None, "project": None, "default_headers": omit}


def _is_completion(reply: Any) -> bool:
    """Whether a reply has the shape the brains read: ``choices`` of objects with a
    ``message`` object (the SDK builds its types without checking)."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    return isinstance(choices, list) and all(
        isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices
    )


def _count(value: Any) -> int:
    """A token count from a reply: a non-negative integer, else 0 (servers send odd things)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _cached(usage: dict[str, Any], details: str) -> int:
    """Input tokens read from the prompt cache: ``usage[details]["cached_tokens"]``
    (``prompt_tokens_details`` in Chat Completions, ``input_tokens_details`` in Responses)."""
    found = usage.get(details)
    return _count(found.get("cached_tokens")) if isinstance(found, dict) else 0


def _excerpt(text: str, limit: int = 120) -> str:
    """The start of a reply on one line, for an error message."""
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


class ModelClient:
    """Calls a model over the OpenAI API (Chat Completions or Responses) for one brain."""

    def __init__(
        self,
        config: BrainConfig,
        *,
        client: openai.AsyncOpenAI | None = None,
        on_usage: Callable[[TokenUsage], None] | None = None,
    ) -> None:
        env = model_env()
        model = config.model or env.model
        if not model:
            raise ConfigError(f"no model named: set the brain's `model` or {ENV_MODEL}")
        self.model: str = model
        """The model every call asks for."""
        self.temperature = config.temperature
        self._on_usage = on_usage
        self._owns_client = client is None
        if client is None:
            base_url, key, operator = _endpoint(config, env)
            if key is None and base_url is None:
                raise ConfigError(
                    f"no API key for the OpenAI API: set the brain's `api_key` or {ENV_API_KEY}, "
                    f"or a `base_url` (or {ENV_BASE_URL}) of a server that needs none"
                )
            client = openai.AsyncOpenAI(
                api_key=key or _LOCAL_KEY,
                base_url=base_url,
                max_retries=0,
                **_identity(env, operator),
            )
        elif client.max_retries:
            client = client.with_options(max_retries=0)  # retried here, not twice
        self._client = client
        self.base_url: str = str(client.base_url).rstrip("/")
        """Where the API is (shown in errors; never with the key)."""

    async def chat(self, **params: Any) -> ChatCompletion:
        """``chat.completions.create`` with the model (and temperature) filled in."""
        reply = await self._chat(params)
        return ChatCompletion.construct(**reply)  # as the SDK's own parse: typed, unchecked

    async def chat_body(self, **params: Any) -> dict[str, Any]:
        """Like ``chat``, but the reply's JSON as sent (checked to have ``choices`` of
        ``message`` objects), for parsers that read plain data."""
        return await self._chat(params)

    async def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        params.setdefault("model", self.model)
        if self.temperature is not None:
            params.setdefault("temperature", self.temperature)
        log.debug("chat completion: model %s, %d messages", self.model, len(params["messages"]))
        create = self._client.chat.completions.with_streaming_response.create
        reply, body = await self._call("chat completion", lambda: self._read(create(**params)))
        if not _is_completion(reply):
            raise BrainError(
                f"the model API at {self.base_url} sent a reply that is not a chat completion: "
                f"{self._excerpt(body)}"
            )
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        self._usage(
            reply.get("model"),
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            _cached(usage, "prompt_tokens_details"),
        )
        return dict(reply)

    async def respond(self, **params: Any) -> dict[str, Any]:
        """``responses.create`` with the model (and temperature) filled in; the reply's JSON.

        The reply is returned as sent, not parsed into the SDK's types: output items are
        read by type, and items or actions newer than the installed SDK pass through intact.
        """
        params.setdefault("model", self.model)
        if self.temperature is not None:
            params.setdefault("temperature", self.temperature)
        log.debug("response: model %s, previous %s", self.model, params.get("previous_response_id"))
        create = self._client.responses.with_streaming_response.create
        response, body = await self._call("response", lambda: self._read(create(**params)))
        if not isinstance(response, dict):
            raise BrainError(
                f"the model API at {self.base_url} sent a reply that is not an object: "
                f"{self._excerpt(body)}"
            )
        found = response.get("usage")
        usage: dict[str, Any] = found if isinstance(found, dict) else {}
        self._usage(
            response.get("model"),
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            _cached(usage, "input_tokens_details"),
        )
        return response

    async def close(self) -> None:
        """Close the client's connections, if this wrapper made the client."""
        if self._owns_client:
            await self._client.close()

    def _usage(
        self,
        model: Any,
        input_tokens: Any,
        output_tokens: Any,
        cached_input_tokens: int = 0,
    ) -> None:
        if self._on_usage is not None:
            self._on_usage(
                TokenUsage(
                    input_tokens=_count(input_tokens),
                    output_tokens=_count(output_tokens),
                    model=model if isinstance(model, str) and model else self.model,
                    cached_input_tokens=cached_input_tokens,
                )
            )

    async def _read(self, request: Any) -> tuple[Any, bytes]:
        """The JSON and body of a streamed reply (``with_streaming_response``), read with a
        cap; ``BrainError`` when it is too big or not JSON. A connection that fails while
        the body comes is the SDK's failure (retried like one)."""
        async with request as raw:
            reply: httpx2.Response = raw.http_response
            try:
                body = await read_reply(reply.aiter_bytes(), reply.headers, where=self.base_url)
            except httpx2.TimeoutException:
                raise openai.APITimeoutError(request=reply.request) from None
            except httpx2.HTTPError as e:
                raise openai.APIConnectionError(message=str(e), request=reply.request) from None
        try:
            return reply_json(body), body
        except ValueError:  # not JSON (an HTML page, plain text), or nested too deep
            kind = reply.headers.get("content-type", "no content type")
            raise BrainError(
                f"the model API at {self.base_url} sent a reply that is not JSON ({kind}): "
                f"{self._excerpt(body)}"
            ) from None

    def _excerpt(self, body: bytes) -> str:
        """The start of a reply for an error message, the key cut out before it is cut."""
        return _excerpt(self._redact(body.decode("utf-8", "replace")))

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, retried while it fails for a passing reason; ``BrainError``."""
        config = settings()
        return await with_retries(
            call,
            classify=self._classify,
            attempts=config.model_api_retries,
            what=f"{what} of model {self.model}",
            max_wait_s=config.model_api_max_wait_s,
        )

    def _classify(self, e: BaseException) -> Failure | None:
        """What an exception of the SDK means: retryable or not, the wait asked, the reason."""
        if not isinstance(e, openai.OpenAIError):
            return None
        where = f"the model API at {self.base_url}"
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            return Failure(
                retryable=status in RETRYABLE_STATUSES or status >= 500,
                reason=self._redact(f"{where} answered {status}: {e.message}"),
                retry_after_s=parse_retry_after(e.response.headers),
            )
        if isinstance(e, openai.APITimeoutError):  # before APIConnectionError: a subclass
            return Failure(retryable=True, reason=f"the model API at {self.base_url} timed out")
        if isinstance(e, openai.APIConnectionError):
            return Failure(
                retryable=True,
                reason=self._redact(f"cannot reach the model API at {self.base_url}: {e.message}"),
            )
        return Failure(
            retryable=False,
            reason=self._redact(f"the model API call failed: {type(e).__name__}: {e}"),
        )

    def _redact(self, text: str) -> str:
        """``text`` without the API key (a server may echo it in an error message)."""
        key = self._client.api_key
        if key and key != _LOCAL_KEY and len(key) >= 8:
            text = text.replace(key, "<api key>")
        return text
