"""Retrying model API calls that failed for a passing reason, the same way for every client.

A client wrapper classifies each exception of its SDK into a ``Failure``: retryable or not,
the server's ``Retry-After`` if it sent one, and the reason in words. ``with_retries`` tries
again with exponential backoff and jitter (or after ``Retry-After``, capped) and, when the
attempts are spent or the failure is final, raises ``BrainError`` with the reason, which
fails the task with it.

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
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ..errors import BrainError

__all__ = ["Failure", "parse_retry_after", "with_retries"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BASE_DELAY_S = 0.5
"""The first backoff; doubled on each further attempt, with jitter (50-100 %)."""


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
            if not failure.retryable or attempt == attempts:
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                raise BrainError(f"{failure.reason}{tries}") from e
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
