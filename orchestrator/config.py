"""Every environment variable the project reads, in one place.

Durations carry their unit in the name (``..._S``), sizes theirs (``..._MB``). A value that
does not parse raises ``ConfigError`` naming the variable. Nothing else in ``orchestrator``,
``actors`` or ``serve_app`` reads the environment (``tests/unit/test_config.py`` checks).

- ``Settings`` (``settings()``, read once per process): the runtime's ``ORCHESTRATOR_*``
  variables: directories, desktops' limits, images, egress, model endpoints allowed.
- ``ModelEnv`` (``model_env()``, read at each use): the operator's model endpoint, key and
  model, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``ORCHESTRATOR_MODEL``.
- ``ApiSettings`` (``api_settings()``, read at each use): the HTTP API's
  ``ORCHESTRATOR_API_*`` variables: keys, concurrency caps, the event streams' keepalive.
- ``RayEnv`` (``ray_env()``, read at each use): the ``RAY_*`` variables the project reads
  (``RAY_ADDRESS``, ``RAY_AUTH_MODE``, ...); Ray itself reads many more.
- ``ENV_API_URL`` and ``ENV_API_KEY``: where the command line (``--url``, ``--api-key``)
  finds a remote API; the SDK's ``Client`` takes both as arguments, never from the
  environment.

Only light modules are imported here (pydantic, pydantic-settings): the SDK may import it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

__all__ = [
    "ENV_API_KEY",
    "ENV_API_URL",
    "RAY_CLUSTER_ENV",
    "RAY_LOOPBACK_ENV",
    "ApiSettings",
    "ModelEnv",
    "RayEnv",
    "Settings",
    "api_settings",
    "check_model_url",
    "env_name",
    "model_env",
    "ray_env",
    "settings",
]

_S = TypeVar("_S", bound=BaseSettings)


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable of ``cls``'s ``field`` (``ApiSettings, "max_streams"`` ->
    ``ORCHESTRATOR_API_MAX_STREAMS``)."""
    alias = cls.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def _read(cls: type[_S]) -> _S:
    """``cls()`` from the environment; ``ConfigError`` naming each variable that is wrong."""
    try:
        return cls()
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            loc = err["loc"][0] if err["loc"] else ""
            name = str(loc)
            if name in cls.model_fields:
                name = env_name(cls, name)
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid environment: " + "; ".join(problems)) from None


def _default_runtime_dir() -> Path:
    # Unix socket paths are limited to 108 bytes: keep this short.
    if os.geteuid() == 0:
        return Path("/run/orchestrator")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/orchestrator-{os.getuid()}")


OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"
"""The openai client's own default endpoint (a brain's when ``OPENAI_BASE_URL`` is unset)."""

_NETLOC = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:@\[\]/]+)(?::(\d{1,5}|\*))?")


def _url_parts(url: str, *, pattern: bool = False) -> tuple[str, str, str, str] | None:
    """``(scheme, host, port, path)`` of an http(s) URL, normalised; None for anything else
    (user info, a query, a malformed host). In a ``pattern`` the port may be ``*``."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    m = _NETLOC.fullmatch(parts.netloc)
    if scheme not in ("http", "https") or m is None or parts.query or parts.fragment:
        return None
    port = m.group(2) or ("443" if scheme == "https" else "80")
    if port == "*" and not pattern:
        return None
    host, path = m.group(1).lower(), parts.path.rstrip("/")
    return scheme, host, port if port == "*" else str(int(port)), path


def same_url(a: str, b: str) -> bool:
    """Whether two base URLs name the same endpoint: scheme and host in any case, the
    default port or none, a trailing ``/`` or none; the path exactly (servers may tell
    ``/V1`` from ``/v1``). Anything not an http(s) URL matches only itself, stripped.

    Example:
        >>> same_url("HTTPS://API.example.com:443/v1/", "https://api.example.com/v1")
        True
        >>> same_url("https://api.example.com/V1", "https://api.example.com/v1")
        False
    """
    pa, pb = _url_parts(a), _url_parts(b)
    if pa is None or pb is None:
        return a.strip().rstrip("/") == b.strip().rstrip("/")
    return pa == pb


class Settings(BaseSettings):
    """Runtime settings read from ``ORCHESTRATOR_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    runtime_dir: Path = Field(default_factory=_default_runtime_dir)
    """Where desktops' socket directories live (sockets, ready markers, keys)."""

    data_dir: Path = Field(default_factory=lambda: Path.home() / ".local/share/orchestrator")
    """Where records, screenshots and files are stored."""

    records_retention_days: float = Field(default=30.0, ge=0)
    """Runs (a task and its subtasks), fired agents, their events, screenshots and files that
    ended longer ago than this are removed (by the recorder every hour, and by
    ``orchestrator gc``); 0 keeps everything for ever. Pinned runs, open tasks and live agents'
    records are always kept."""

    docker_host: str | None = None
    """Docker engine address; default: DOCKER_HOST or the local unix socket."""

    desktop_image: str | None = None
    """Desktop image to run; default: the tag built from this checkout's desktop_image/."""

    desktop_image_dir: Path = Path(__file__).resolve().parent.parent / "desktop_image"
    """The desktop image's sources (Dockerfile and start-up), hashed into the image tag."""

    desktop_images: str | None = None
    """Comma-separated desktop images a spec may name; an entry ending in ``*`` names every
    image that starts with it. Unset: the images this project builds (``orchestrator-desktop:*``)
    and ``ORCHESTRATOR_DESKTOP_IMAGE``."""

    desktop_max_cpus: float | None = Field(default=None, gt=0)
    """Most CPU cores one desktop may ask for; unset: the cores of the node starting it."""

    desktop_max_memory_mb: int | None = Field(default=None, gt=0)
    """Most memory one desktop may ask for, in MiB; unset: the memory of the node starting it."""

    desktop_max_shm_mb: int | None = Field(default=None, gt=0)
    """Most ``/dev/shm`` one desktop may ask for, in MiB; never more than its own memory."""

    desktop_max_pids: int = Field(default=4096, gt=0)
    """Most processes and threads one desktop may ask for (``pids_limit``)."""

    desktop_ready_timeout_s: float = 30.0
    """How long a desktop may take to report ready."""

    desktop_start_slots: int | None = Field(default=None, ge=0)
    """How many desktops one node starts at once; the other starts queue (their agents stay
    ``starting``) and each one's ready deadline counts from when it leaves the queue. 0: no
    limit; unset: the node's cores, at least 2 (measured best on a 2-core node)."""

    agent_schedule_timeout_s: float = Field(default=60.0, gt=0)
    """How long a new agent may wait for a node with a free ``desktop`` unit before its
    creation or hire fails with ``CapacityError`` (instead of waiting without end)."""

    autoscale: bool = False
    """Whether an autoscaler adds nodes with ``desktop`` units while agents wait for one
    (``orchestrator up --autoscale`` sets it on every node): a new agent then waits up to
    ``autoscale_schedule_timeout_s``, long enough for a node to start."""

    autoscale_schedule_timeout_s: float = Field(default=300.0, gt=0)
    """With ``autoscale``: how long a new agent may wait for a node (a new one included)
    with a free ``desktop`` unit before it fails with ``CapacityError``."""

    def schedule_timeout_s(self) -> float:
        """How long a new agent may wait to be placed on a node with a free ``desktop``."""
        if self.autoscale:
            return self.autoscale_schedule_timeout_s
        return self.agent_schedule_timeout_s

    human_wait_timeout_s: float = Field(default=3600.0, gt=0)
    """How long a task may wait for a person (an answer, an approval, a resume after a
    pause) before it fails with the reason; such waits do not count against its deadline."""

    model_prices: str | None = None
    """Prices of models, in USD per million tokens: JSON, or the path of a JSON or YAML
    file, mapping a model name or glob to ``{"input": ..., "output": ..., "cached_input":
    ...}`` (``orchestrator.usage.Price``). None is assumed: a call to a model without a
    price has an unknown cost (None, not 0)."""

    @field_validator("model_prices")
    @classmethod
    def _check_prices(cls, value: str | None) -> str | None:
        from .errors import ConfigError
        from .usage import parse_prices

        try:
            parse_prices(value)
        except ConfigError as e:
            raise ValueError(str(e).removeprefix("ORCHESTRATOR_MODEL_PRICES: ")) from None
        return value

    allow_acknowledge_safety_checks: bool = False
    """Whether an agent's policy may acknowledge a model provider's pending safety checks
    without asking a person (``ApprovalPolicy.safety_checks = "acknowledge"``); otherwise such
    an agent is refused at hire (``ConfigError``, HTTP 422)."""

    model_api_retries: int = Field(default=4, ge=0, le=20)
    """How often a model API call that failed for a passing reason (429, 529 overloaded, 5xx,
    a timeout, a dropped connection) is tried again, with exponential backoff that honours the
    server's ``Retry-After``, before the task fails with the reason."""

    model_api_max_wait_s: float = Field(default=60.0, gt=0, le=3600)
    """The longest a single wait before a retry may be, whatever ``Retry-After`` asks."""

    model_base_urls: str | None = None
    """Comma-separated model API base URLs a brain's ``base_url`` may name besides
    ``OPENAI_BASE_URL`` (or OpenAI's, when that is unset) and ``ANTHROPIC_BASE_URL`` (or
    Anthropic's); unset: none. A brain's
    ``base_url`` makes the agent's node send requests (with screenshots) there, so only
    the operator's endpoints are allowed. An entry's port may be ``*`` (any port)."""

    def model_url_allowed(self, url: str) -> bool:
        """Whether a brain may send model requests to ``url``: ``OPENAI_BASE_URL`` (else
        OpenAI's endpoint) or one of ``model_base_urls``, compared by scheme, host, port and
        path (so ``http://127.0.0.1:1@elsewhere/v1`` is not ``127.0.0.1``)."""
        want = _url_parts(url)
        if want is None:
            return False
        env = model_env()
        operators = [env.openai_base_url or OPENAI_URL, env.anthropic_base_url or ANTHROPIC_URL]
        for entry in [*operators, *(self.model_base_urls or "").split(",")]:
            allowed = _url_parts(entry, pattern=True)
            if allowed is None:
                continue
            scheme, host, port, path = allowed
            if (scheme, host, path) == (want[0], want[1], want[3]) and port in ("*", want[2]):
                return True
        return False

    live_view_proxy: bool = True
    """Whether a desktop serves its loopback noVNC link (``live_view``) on its node; off
    (``ORCHESTRATOR_LIVE_VIEW_PROXY=off``): ``live_view`` answers an error and a desktop is
    watched only through the API's relay (``/v1/agents/{id}/vnc``), which works either way."""

    display_base: int = 100
    """First X display number used for host-side symlinks to desktops' X sockets."""

    egress_network: str = "orchestrator-egress"
    """The Docker network of ``egress`` desktops (created, with its firewall, on first use)."""

    egress_allow_cidrs: str | None = None
    """Comma-separated private ranges egress desktops may reach besides the node's DNS
    resolvers (e.g. a package mirror on ``10.1.2.3/32``); unset: none. Public addresses are
    always reachable; the host itself and other desktops never are."""

    @field_validator("egress_allow_cidrs")
    @classmethod
    def _check_cidrs(cls, value: str | None) -> str | None:
        for cidr in (value or "").split(","):
            if cidr.strip():
                try:
                    ipaddress.IPv4Network(cidr.strip(), strict=False)
                except ValueError as e:
                    raise ValueError(f"not an IPv4 range: {cidr.strip()!r} ({e})") from None
        return value


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once (``ConfigError`` naming a variable that is wrong)."""
    return _read(Settings)


class ModelEnv(BaseSettings):
    """The operator's model API, the default of every brain's (``BrainConfig``)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    """``OPENAI_BASE_URL``: the operator's model API (OpenAI, vLLM, Ollama, a gateway);
    unset: OpenAI's. A brain naming no ``base_url`` uses this one."""

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    """``OPENAI_API_KEY``: the operator's key; it is sent only to ``OPENAI_BASE_URL`` (else
    OpenAI's endpoint), never to a ``base_url`` a brain names."""

    openai_org_id: SecretStr | None = Field(default=None, validation_alias="OPENAI_ORG_ID")
    """``OPENAI_ORG_ID``: the operator's OpenAI organization (the ``OpenAI-Organization``
    header), sent only with the operator's key to the operator's endpoint."""

    openai_project_id: SecretStr | None = Field(default=None, validation_alias="OPENAI_PROJECT_ID")
    """``OPENAI_PROJECT_ID``: the operator's OpenAI project (the ``OpenAI-Project`` header),
    sent only to the operator's endpoint, like the organization."""

    model: str | None = Field(default=None, validation_alias="ORCHESTRATOR_MODEL")
    """``ORCHESTRATOR_MODEL``: the model a brain naming none asks for."""

    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    """``ANTHROPIC_BASE_URL``: the operator's Anthropic Messages API; unset: Anthropic's. An
    ``anthropic`` brain naming no ``base_url`` uses this one."""

    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    """``ANTHROPIC_API_KEY``: the operator's Anthropic key; it is sent only to
    ``ANTHROPIC_BASE_URL`` (else Anthropic's API), never to a ``base_url`` a brain names."""

    anthropic_custom_headers: SecretStr | None = Field(
        default=None, validation_alias="ANTHROPIC_CUSTOM_HEADERS"
    )
    """``ANTHROPIC_CUSTOM_HEADERS`` (``Name: value`` lines): headers the ``anthropic`` SDK adds to
    every request by itself; sent only to the operator's endpoint, like the key (a brain's own
    ``base_url`` gets them removed)."""

    anthropic_model: str | None = Field(
        default=None, validation_alias="ORCHESTRATOR_ANTHROPIC_MODEL"
    )
    """``ORCHESTRATOR_ANTHROPIC_MODEL``: the model an ``anthropic`` brain naming none asks for
    (default ``ORCHESTRATOR_MODEL``)."""


def model_env() -> ModelEnv:
    """The operator's model endpoint, key and model, read now (tests and operators change
    them without restarting)."""
    return _read(ModelEnv)


class ApiSettings(BaseSettings):
    """The HTTP API's settings, ``ORCHESTRATOR_API_*``; each replica reads them itself."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_API_", extra="ignore", env_ignore_empty=True
    )

    keys: SecretStr | None = None
    """``ORCHESTRATOR_API_KEYS``: comma-separated ``tenant:key`` (or ``tenant:sha256:<hex>``)
    entries the API accepts, besides those of ``keys_file``."""

    keys_file: Path | None = None
    """``ORCHESTRATOR_API_KEYS_FILE``: a file of such entries, one a line."""

    max_concurrent: int = Field(default=64, gt=0)
    """``ORCHESTRATOR_API_MAX_CONCURRENT``: requests (event streams and ``/healthz`` aside)
    one replica works on at once; over it, 429 with ``Retry-After``."""

    max_streams: int = Field(default=256, gt=0)
    """``ORCHESTRATOR_API_MAX_STREAMS``: event streams one replica serves at once."""

    sse_keepalive_s: float = 15.0
    """``ORCHESTRATOR_API_SSE_KEEPALIVE_S``: seconds between keepalive comments on an idle
    event stream; 0 or less: the default."""

    session_ttl_s: float = Field(default=43_200.0, ge=60.0, le=43_200.0)
    """``ORCHESTRATOR_API_SESSION_TTL_S``: how long a console sign-in (its cookie) lasts, in
    seconds (at most 12 hours; it also ends on sign-out or when its key is revoked)."""

    ticket_secret: SecretStr | None = None
    """``ORCHESTRATOR_API_TICKET_SECRET``: the secret (at least 32 characters, the same for
    every replica) desktop tickets are sealed with and lease holder names derived from;
    unset: a random one kept in the records (then a copy of the records file could forge
    tickets)."""

    @field_validator("sse_keepalive_s")
    @classmethod
    def _default_keepalive(cls, value: float) -> float:
        return value if value > 0 else 15.0


def api_settings() -> ApiSettings:
    """The API's settings, read now (``ConfigError`` naming a variable that is wrong)."""
    return _read(ApiSettings)


ENV_API_URL = "ORCHESTRATOR_API_URL"
"""The API the command line talks to (``--url``); default: the local cluster of ``orchestrator
up``, else ``http://127.0.0.1:8000``. Read by click, for the CLI only."""

ENV_API_KEY = "ORCHESTRATOR_API_KEY"
"""The caller's API key for the command line (``--api-key``); default: the local cluster's,
for its own URL only. Read by click, for the CLI only."""


class RayEnv(BaseSettings):
    """The Ray variables the project reads (Ray reads them, and many more, itself)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    address: str | None = Field(default=None, validation_alias="RAY_ADDRESS")
    """``RAY_ADDRESS``: the cluster a driver joins when no address is given; unset: the local
    cluster of ``orchestrator up``, else a cluster of its own."""

    auth_mode: str = Field(default="token", validation_alias="RAY_AUTH_MODE")
    """``RAY_AUTH_MODE``: Ray's authentication, for a local cluster and its clients alike
    (default ``token``: the token in ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``)."""

    auth_token: SecretStr | None = Field(default=None, validation_alias="RAY_AUTH_TOKEN")
    """``RAY_AUTH_TOKEN``: Ray's token itself; when set, ``up`` makes no token file."""

    auth_token_path: Path | None = Field(default=None, validation_alias="RAY_AUTH_TOKEN_PATH")
    """``RAY_AUTH_TOKEN_PATH``: the file of Ray's token; unset: ``~/.ray/auth_token``."""

    enable_windows_or_osx_cluster: str | None = Field(
        default=None, validation_alias="RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    )
    """``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``: ``"0"`` keeps a local Ray on loopback (see
    ``RAY_LOOPBACK_ENV``, which sets it)."""

    fake_cluster: bool = Field(default=False, validation_alias="RAY_FAKE_CLUSTER")
    """``RAY_FAKE_CLUSTER``: ``1`` on a cluster whose autoscaler is Ray's fake multi-node
    provider (``orchestrator up --autoscale``): its nodes all run on this one machine."""


def ray_env() -> RayEnv:
    """The Ray variables, read now."""
    return _read(RayEnv)


def check_model_url(url: str) -> None:
    """``ConfigError`` unless ``ORCHESTRATOR_MODEL_BASE_URLS`` lets a brain name ``url``."""
    if not settings().model_url_allowed(url):
        raise ConfigError(
            f"brain.base_url {url!r} is not one of the model APIs this cluster allows "
            "(OPENAI_BASE_URL, ANTHROPIC_BASE_URL and ORCHESTRATOR_MODEL_BASE_URLS)"
        )


RAY_SERVE_GRPC_MAX_MESSAGE_BYTES = 512 << 20
"""Largest message between Serve's proxy and a replica (Ray's default: 4 MiB, below the API's
own limits: a 64 MiB upload, a 256 MiB read). A response that is not streamed is one message."""

RAY_CLUSTER_ENV = {
    "RAY_SERVE_PROXY_USE_GRPC": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(RAY_SERVE_GRPC_MAX_MESSAGE_BYTES),
}
"""Environment the processes of a cluster we start get (defaults; the caller's own values
win): Serve's proxy forwards requests to replicas over gRPC instead of actor calls (measured
by ``bench/serve.py``: a status read 7.3 -> 5.8 ms p50, 253 -> 312 requests/s at 16 clients
on 2 cores; again 2.6 -> 4.0 ms and 749 -> 482 requests/s without it), with messages up to
``RAY_SERVE_GRPC_MAX_MESSAGE_BYTES``. Ray 2.60 starts each replica's gRPC server whether or
not the proxy uses it, on every interface: the API binds it to the node's address instead
(``serve_app._grpc_bind``), and the egress firewall (``orchestrator.desktop._network``)
keeps desktops off the host anyway. ``cluster.yaml`` sets the same on its nodes."""

RAY_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Keeps a local Ray on loopback: without it ``ray start`` and ``ray.init`` replace 127.0.0.1
by the machine's address, and the GCS, the raylet and the workers listen on every interface
(check 11: a local cluster binds every port it opens to 127.0.0.1)."""
