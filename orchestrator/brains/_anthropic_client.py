"""The one wrapper around the ``anthropic`` SDK: every call to a Messages API goes through here.

It builds an ``anthropic.AsyncAnthropic`` from a ``BrainConfig`` or ``PlannerConfig``
(falling back to the environment: ``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``,
``ORCHESTRATOR_ANTHROPIC_MODEL``, then ``ORCHESTRATOR_MODEL``), retries failures that pass
(``_retry.with_retries``: 408, 409, 429, 5xx and 529 overloaded, honouring ``Retry-After``;
timeouts; dropped connections) with the SDK's own retries off, returns each reply's JSON as
the server sent it, and records the tokens of every call. The key is never logged nor put
in an error (it is cut out before a reply is excerpted): it lives only in the SDK client.
Reply bodies are read with a cap (``_retry.MAX_REPLY_BYTES``). ``BrainConfig.temperature``
is not sent: the Messages API of this SDK (``anthropic`` 2.17) takes no sampling parameters.

Where the key goes: ``ANTHROPIC_API_KEY`` is the operator's and is sent only to
``ANTHROPIC_BASE_URL`` (else Anthropic's API). A config naming another ``base_url`` must
pass ``check_model_url`` and sends its own ``api_key``, or none: never the operator's (the
SDK would read ``ANTHROPIC_API_KEY`` by itself, so a key is always passed explicitly). The
same holds for the headers of ``ANTHROPIC_CUSTOM_HEADERS``, which the SDK adds by itself: they
are removed from requests to any other endpoint.

Example:
    >>> from pydantic import SecretStr
    >>> from orchestrator.domain import BrainConfig
    >>> c = AnthropicClient(BrainConfig(kind="anthropic", model="claude-x", api_key=SecretStr("k")))
    >>> c.model, c.base_url
    ('claude-x', 'https://api.anthropic.com')
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2

from ..config import (
    ANTHROPIC_URL,
    ModelEnv,
    check_model_url,
    env_name,
    model_env,
    same_url,
    settings,
)
from ..domain import BrainConfig, PlannerConfig, TokenUsage
from ..errors import BrainError, ConfigError
from ._retry import Failure, parse_retry_after, read_reply, reply_json, with_retries

__all__ = ["AnthropicClient"]

log = logging.getLogger(__name__)

ENV_API_KEY = env_name(ModelEnv, "anthropic_api_key")
ENV_BASE_URL = env_name(ModelEnv, "anthropic_base_url")
ENV_MODEL = env_name(ModelEnv, "anthropic_model")
ENV_ANY_MODEL = env_name(ModelEnv, "model")

_NO_KEY = "unused"
"""Sent to a server that needs no key: an explicit key keeps the SDK from reading
``ANTHROPIC_API_KEY`` (the operator's) from the environment for a brain's own endpoint."""
TIMEOUT_S = 600.0
"""One request's limit (also keeps the SDK from refusing large ``max_tokens`` unstreamed)."""
_RETRYABLE = frozenset({408, 409, 429})


def _endpoint(config: BrainConfig | PlannerConfig, env: ModelEnv) -> tuple[str, str | None]:
    """The base URL and key of a config's Messages API.

    The environment's key (``ANTHROPIC_API_KEY``) goes only to the environment's endpoint
    (``ANTHROPIC_BASE_URL``, else Anthropic's). A config naming another ``base_url`` (any
    tenant can) gets its own ``api_key`` or none, and must be allowed (``check_model_url``).
    """
    env_url = env.anthropic_base_url or ANTHROPIC_URL
    own_key = config.api_key.get_secret_value() if config.api_key else None
    if config.base_url and not same_url(config.base_url, env_url):
        check_model_url(config.base_url)
        return config.base_url.rstrip("/"), own_key
    env_key = env.anthropic_api_key.get_secret_value() if env.anthropic_api_key else None
    return env_url.rstrip("/"), own_key or env_key or None


def _without_operator_headers(env: ModelEnv) -> dict[str, Any]:
    """Headers that remove the operator's ``ANTHROPIC_CUSTOM_HEADERS`` (which the SDK adds to
    every request by itself) from requests to an endpoint that is not the operator's."""
    if env.anthropic_custom_headers is None:
        return {}
    names = [
        line.partition(":")[0].strip()
        for line in env.anthropic_custom_headers.get_secret_value().splitlines()
        if ":" in line
    ]
    return {name: anthropic.Omit() for name in names if name}


def _excerpt(text: str, limit: int = 120) -> str:
    """The start of a reply on one line, for an error message."""
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class AnthropicClient:
    """Calls Claude over the Messages API (the beta endpoint) for one brain or planner.

    ``on_usage`` gets the ``TokenUsage`` of every call (input tokens count the cache's
    writes and reads too); ``client`` replaces the SDK client built from the config (then
    it is not closed here).
    """

    def __init__(
        self,
        config: BrainConfig | PlannerConfig,
        *,
        on_usage: Callable[[TokenUsage], None] | None = None,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        env = model_env()
        model = config.model or env.anthropic_model or env.model
        if not model:
            raise ConfigError(
                f"no Anthropic model named: set the brain's `model`, {ENV_MODEL} or {ENV_ANY_MODEL}"
            )
        self.model: str = model
        """The model every call asks for."""
        self._on_usage = on_usage
        self._owns_client = client is None
        if client is None:
            base_url, key = _endpoint(config, env)
            if key is None and same_url(base_url, ANTHROPIC_URL):
                raise ConfigError(
                    f"no API key for Anthropic's API: set the brain's `api_key` or {ENV_API_KEY}"
                )
            operator = same_url(base_url, env.anthropic_base_url or ANTHROPIC_URL)
            client = anthropic.AsyncAnthropic(
                api_key=key or _NO_KEY,
                base_url=base_url,
                max_retries=0,
                timeout=TIMEOUT_S,
                default_headers={} if operator else _without_operator_headers(env),
            )
        elif client.max_retries:
            client = client.with_options(max_retries=0)  # retried here, not twice
        self._client = client
        self.base_url: str = str(client.base_url).rstrip("/")
        """Where the API is (shown in errors; never with the key)."""

    @property
    def sdk(self) -> anthropic.AsyncAnthropic:
        """The SDK client (to share it: whoever gets it must not close it)."""
        return self._client

    async def create(self, *, betas: list[str] | None = None, **params: Any) -> dict[str, Any]:
        """``beta.messages.create`` with the model filled in, retried while
        the failure passes; the reply's JSON as sent (a ``message`` object), else
        ``BrainError`` with the reason. ``max_tokens`` is required by the API."""
        params.setdefault("model", self.model)
        if betas:
            params["betas"] = betas
        log.debug(
            "messages: model %s, %d messages, betas %s",
            params["model"],
            len(params.get("messages") or []),
            betas,
        )
        s = settings()
        reply = await with_retries(
            lambda: self._once(params),
            classify=self._classify,
            attempts=s.model_api_retries,
            what=f"messages call of model {params['model']}",
            max_wait_s=s.model_api_max_wait_s,
        )
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        self._usage(reply.get("model"), usage or {})
        return reply

    async def _once(self, params: dict[str, Any]) -> dict[str, Any]:
        """One call; its reply read with a cap (``_retry.MAX_REPLY_BYTES``)."""
        async with self._client.beta.messages.with_streaming_response.create(**params) as raw:
            response: httpx2.Response = raw.http_response
            try:
                body = await read_reply(
                    response.aiter_bytes(), response.headers, where=self.base_url
                )
            except httpx2.TimeoutException:  # the body stopped coming: the SDK's failure
                raise anthropic.APITimeoutError(request=response.request) from None
            except httpx2.HTTPError as e:
                raise anthropic.APIConnectionError(
                    message=str(e), request=response.request
                ) from None
        try:
            reply = reply_json(body)
        except ValueError:  # not JSON (an HTML page, plain text), or nested too deep
            kind = response.headers.get("content-type", "no content type")
            raise BrainError(
                f"the model API at {self.base_url} sent a reply that is not JSON ({kind}): "
                f"{self._excerpt(body)}"
            ) from None
        if (
            not isinstance(reply, dict)
            or reply.get("type") != "message"
            or not isinstance(reply.get("content"), list)
        ):
            raise BrainError(
                f"the model API at {self.base_url} sent a reply that is not a message: "
                f"{self._excerpt(body)}"
            )
        return reply

    def _excerpt(self, body: bytes) -> str:
        """The start of a reply for an error message, the key cut out before it is cut."""
        return _excerpt(self._redact(body.decode("utf-8", "replace")))

    def _classify(self, e: BaseException) -> Failure | None:
        """What an SDK exception means: a passing failure, a final one, or not ours (None)."""
        where = f"the model API at {self.base_url}"
        if isinstance(e, anthropic.APIStatusError):
            status = e.status_code
            retryable = status in _RETRYABLE or status >= 500
            return Failure(
                retryable=retryable,
                reason=self._redact(f"{where} answered {status}: {_message(e)}"),
                retry_after_s=parse_retry_after(dict(e.response.headers)) if retryable else None,
            )
        if isinstance(e, anthropic.APITimeoutError):
            return Failure(retryable=True, reason=f"{where} timed out")
        if isinstance(e, anthropic.APIConnectionError):
            return Failure(
                retryable=True, reason=self._redact(f"cannot reach {where}: {e.message}")
            )
        if isinstance(e, anthropic.AnthropicError):
            return Failure(
                retryable=False,
                reason=self._redact(f"the model API call failed: {type(e).__name__}: {e}"),
            )
        return None

    def _redact(self, text: str) -> str:
        """``text`` without the API key (a server may echo it in an error message)."""
        key = self._client.api_key
        if key and key != _NO_KEY and len(key) >= 8:
            text = text.replace(key, "<api key>")
        return text

    async def close(self) -> None:
        """Close the client's connections, if this wrapper made the client."""
        if self._owns_client:
            await self._client.close()

    def _usage(self, model: Any, usage: dict[str, Any]) -> None:
        if self._on_usage is None:
            return
        tokens = (
            _int(usage.get("input_tokens"))
            + _int(usage.get("cache_creation_input_tokens"))
            + _int(usage.get("cache_read_input_tokens"))
        )
        self._on_usage(
            TokenUsage(
                input_tokens=tokens,
                output_tokens=_int(usage.get("output_tokens")),
                cached_input_tokens=_int(usage.get("cache_read_input_tokens")),
                model=model if isinstance(model, str) and model else self.model,
            )
        )


def _message(e: anthropic.APIStatusError) -> str:
    """The error's own message (``{"error": {"type", "message"}}``), else the SDK's."""
    body = e.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            kind = f"{error['type']}: " if error.get("type") else ""
            return f"{kind}{error['message']}"
    return str(e.message)
