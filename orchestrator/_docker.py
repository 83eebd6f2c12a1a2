"""The one wrapper around the Docker engine (docker-py): every call goes through here.

docker-py is blocking; async callers use ``asyncio.to_thread`` around these functions.
Errors are translated into ``orchestrator.errors`` with messages that say what to do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from .config import settings
from .errors import DockerError, DockerRefusedError, DockerUnavailableError, ImageNotFoundError

__all__ = ["client", "docker_call", "translate_errors"]

T = TypeVar("T")

_HOW_TO_START = (
    "start one with `scripts/setup.sh` (or: apt-get install -y docker.io && "
    "dockerd --host unix:///var/run/docker.sock &), or point DOCKER_HOST / "
    "ORCHESTRATOR_DOCKER_HOST at a running engine"
)

_lock = threading.Lock()
_client: docker.DockerClient | None = None


def client() -> docker.DockerClient:
    """The process-wide Docker client, connected and checked on first use."""
    global _client
    with _lock:
        if _client is None:
            base_url = settings().docker_host
            try:
                c = (
                    docker.DockerClient(base_url=base_url, timeout=120)
                    if base_url
                    else docker.from_env(timeout=120)
                )
                c.ping()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
                raise DockerUnavailableError(
                    f"no Docker engine answers ({e}); {_HOW_TO_START}"
                ) from e
            _client = c
        return _client


@contextmanager
def translate_errors(what: str, image: str | None = None) -> Iterator[None]:
    """Turn docker-py exceptions raised inside the block into ``DockerError`` subclasses."""
    try:
        yield
    except docker.errors.ImageNotFound as e:
        raise ImageNotFoundError(
            f"{what}: image {image or ''} is not on this machine; build it with "
            "`orchestrator image build`"
        ) from e
    except docker.errors.APIError as e:
        if e.status_code == 400:  # the engine's own words, without its internal URL
            raise DockerRefusedError(f"{what}: Docker refused it: {e.explanation or e}") from e
        raise DockerError(f"{what}: {e}") from e
    except requests.exceptions.ConnectionError as e:
        raise DockerUnavailableError(
            f"{what}: lost the Docker engine ({e}); {_HOW_TO_START}"
        ) from e
    except docker.errors.DockerException as e:
        raise DockerError(f"{what}: {e}") from e


def docker_call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` with Docker errors translated."""
    with translate_errors(what, image=kwargs.get("image")):
        return fn(*args, **kwargs)
