"""Every environment variable the runtime reads, in one place.

All carry the ``ORCHESTRATOR_`` prefix; durations carry their unit in the name.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RAY_CLUSTER_ENV", "RAY_LOOPBACK_ENV", "Settings", "check_model_url", "settings"]


def _default_runtime_dir() -> Path:
    # Unix socket paths are limited to 108 bytes: keep this short.
    if os.geteuid() == 0:
        return Path("/run/orchestrator")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/orchestrator-{os.getuid()}")


OPENAI_URL = "https://api.openai.com/v1"
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

    model_base_urls: str | None = None
    """Comma-separated model API base URLs a brain's ``base_url`` may name besides
    ``OPENAI_BASE_URL`` (or OpenAI's, when that is unset); unset: none. A brain's
    ``base_url`` makes the agent's node send requests (with screenshots) there, so only
    the operator's endpoints are allowed. An entry's port may be ``*`` (any port)."""

    def model_url_allowed(self, url: str) -> bool:
        """Whether a brain may send model requests to ``url``: ``OPENAI_BASE_URL`` (else
        OpenAI's endpoint) or one of ``model_base_urls``, compared by scheme, host, port and
        path (so ``http://127.0.0.1:1@elsewhere/v1`` is not ``127.0.0.1``)."""
        want = _url_parts(url)
        if want is None:
            return False
        operator = os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        for entry in [operator, *(self.model_base_urls or "").split(",")]:
            allowed = _url_parts(entry, pattern=True)
            if allowed is None:
                continue
            scheme, host, port, path = allowed
            if (scheme, host, path) == (want[0], want[1], want[3]) and port in ("*", want[2]):
                return True
        return False

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
    """The process-wide settings, read once."""
    return Settings()


def check_model_url(url: str) -> None:
    """``ConfigError`` unless ``ORCHESTRATOR_MODEL_BASE_URLS`` lets a brain name ``url``."""
    from .errors import ConfigError

    if not settings().model_url_allowed(url):
        raise ConfigError(
            f"brain.base_url {url!r} is not one of the model APIs this cluster allows "
            "(OPENAI_BASE_URL and ORCHESTRATOR_MODEL_BASE_URLS)"
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
