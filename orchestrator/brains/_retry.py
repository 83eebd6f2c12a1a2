"""Retrying model API calls that failed for a passing reason, the same way for every client.

A client wrapper classifies each exception of its SDK into a ``Failure``: retryable or not,
the server's ``Retry-After`` if it sent one, and the reason in words. ``with_retries`` tries
again with exponential backoff and jitter (or after ``Retry-After``, capped) and, when the
attempts are spent or the failure is final, raises ``BrainError`` with the reason, which
fails the task with it (and nothing chained: the SDK's own message may hold what the reason
leaves out, such as a key the server echoed). ``read_reply`` reads a reply's body with a cap
(``MAX_REPLY_BYTES``) and ``reply_json`` parses it, both failing with ``BrainError``.

Example:
    >>> import asyncio
    >>> calls = []
    >>> async def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise TimeoutError("slow")
    ...     return "ok"
    >>> def classify(e: BaseException) -> Failure | None:
    ...     return Failure(retryable=True, reason="timed out", retry_after_s=0.0)
    >>> asyncio.run(with_retries(flaky, classify=classify, attempts=4, what="demo"))
    'ok'
    >>> len(calls)
    3
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import BrainError

__all__ = [
    "MAX_REPLY_BYTES",
    "Failure",
    "parse_retry_after",
    "read_reply",
    "reply_json",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

BASE_DELAY_S = 0.5
"""The first backoff; doubled on each further attempt, with jitter (50-100 %)."""
MAX_REPLY_BYTES = 16 * 2**20
"""The largest reply body read from a model API (decoded); a larger one is refused."""


@dataclass(frozen=True)
class Failure:
    """What a client wrapper makes of an exception of its SDK."""

    retryable: bool
    """A passing failure (429, 529, 5xx, a timeout, a dropped connection)."""
    reason: str
    """The failure in words, with where (the API's URL) but never the key."""
    retry_after_s: float | None = None
    """How long the server asked to wait (``Retry-After``/``retry-after-ms``), if it did."""


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date);
    None when absent or unreadable. Negative waits are 0.

    Example:
        >>> parse_retry_after({"retry-after": "2"}), parse_retry_after({"retry-after-ms": "250"})
        (2.0, 0.25)
        >>> parse_retry_after({"retry-after": "soon"}) is None
        True
    """
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    classify: Callable[[BaseException], Failure | None],
    attempts: int,
    what: str,
    max_wait_s: float = 60.0,
) -> T:
    """``await call()``, tried up to ``attempts + 1`` times while ``classify`` says the
    failure passes; ``BrainError`` with the reason when it does not, or no attempt is left.
    Exceptions ``classify`` does not know (None) propagate unchanged."""
    for attempt in range(attempts + 1):
        try:
            return await call()
        except Exception as e:
            failure = classify(e)
            if failure is None:
                raise
            final = not failure.retryable or attempt == attempts
        if final:  # raised out of the handler: no __cause__ nor __context__ to carry the SDK's text
            tries = f" (after {attempt + 1} attempts)" if attempt else ""
            raise BrainError(f"{failure.reason}{tries}")
        if failure.retry_after_s is not None:
            delay = failure.retry_after_s
        else:
            delay = BASE_DELAY_S * 2**attempt * (0.5 + random.random() / 2)  # noqa: S311
        delay = min(delay, max_wait_s)
        log.warning(
            "%s: %s; trying again in %.1f s (attempt %d of %d)",
            what,
            failure.reason,
            delay,
            attempt + 2,
            attempts + 1,
        )
        await asyncio.sleep(delay)  # the backoff itself: nothing to wait for but time
    raise AssertionError("unreachable")


async def read_reply(
    chunks: AsyncIterator[bytes],
    headers: Mapping[str, str],
    *,
    where: str,
    limit: int = MAX_REPLY_BYTES,
) -> bytes:
    """A reply's body from its ``chunks``, refused (``BrainError``) when ``Content-Length``
    says it is over ``limit`` bytes, or once more than ``limit`` have come: the rest is
    never read.

    Example:
        >>> async def body():
        ...     yield b"x" * 10
        >>> asyncio.run(read_reply(body(), {}, where="here", limit=20))
        b'xxxxxxxxxx'
    """
    too_big = BrainError(f"the model API at {where} sent a reply over {limit / 2**20:g} MiB")
    length = headers.get("content-length", "")
    if length.strip().isdigit() and int(length) > limit:
        raise too_big
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def reply_json(body: bytes) -> Any:
    """The JSON of a reply's body; ``ValueError`` when it is not JSON, also when it nests too
    deep for the parser (``RecursionError``).

    Example:
        >>> reply_json(b'{"a": 1}')
        {'a': 1}
        >>> reply_json(b"[" * 100_000)
        Traceback (most recent call last):
        ...
        ValueError: nested too deep
    """
    try:
        return json.loads(body)
    except (
        ValueError,
        RecursionError,
    ) as e:  # raised with nothing chained: the body may hold a key
        problem = "nested too deep" if isinstance(e, RecursionError) else "not JSON"
    raise ValueError(problem)
