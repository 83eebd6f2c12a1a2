"""Exceptions for the API's error answers, rooted in ``orchestrator.errors``.

Every error the API sends is ``{"error": {"code": "...", "message": "..."}}``; the SDK raises
it as an ``ApiError`` carrying the HTTP ``status`` and the ``code``. The subclasses are also
the runtime's own classes where one fits, so ``except orchestrator.errors.NotFoundError``
catches a 404 from the API as well as one raised in-process::

    OrchestratorError
    └── ApiError                 any error answer (.status, .code, .message)
        ├── AuthError            401: no or an invalid API key
        ├── NotFoundError        404: no such agent or task for this tenant (also errors.NotFoundError)
        ├── ConflictError        409: the agent cannot do this now (also errors.AgentError)
        ├── ForbiddenError       403: a desktop refused a file read or write (also PermissionError)
        ├── InvalidRequestError  413, 422: the request fails validation (also errors.ConfigError)
        ├── QuotaExceededError   429 quota_exceeded: the tenant is at a quota (not retried)
        └── UnavailableError     429, 503, or no answer (status 0): still so after the retries
"""  # noqa: E501

from __future__ import annotations

import json

import httpx

from .. import errors

__all__ = [
    "ApiError",
    "AuthError",
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "QuotaExceededError",
    "UnavailableError",
    "error_from",
]


class ApiError(errors.OrchestratorError):
    """The API answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        """The HTTP status (0: no answer came)."""
        self.code = code
        """The API's error code (``not_found``, ``conflict``, ...)."""
        self.message = message
        """The API's message, in words."""


class AuthError(ApiError):
    """401: the API key is missing or invalid."""


class NotFoundError(ApiError, errors.NotFoundError):
    """404: no such agent or task for this tenant."""


class ConflictError(ApiError, errors.AgentError):
    """409: the agent cannot do this now (duplicate name, busy, gone)."""


class InvalidRequestError(ApiError, errors.ConfigError):
    """413 or 422: the request fails validation (the message names the field)."""


class ForbiddenError(ApiError, PermissionError):
    """403: a desktop refused a file read or write (its permissions)."""


class QuotaExceededError(ApiError, errors.QuotaExceededError):
    """429 ``quota_exceeded``: the tenant is at one of its quotas (the message names it, its
    limit and the count). Not retried: it frees when the tenant fires an agent or a task
    ends, not after a wait."""


class UnavailableError(ApiError):
    """429 or 503, or no answer at all (``status`` 0, code ``unreachable``: the connection
    failed or broke): the API or the cluster is unavailable, still after the retries."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: UnavailableError,
    503: UnavailableError,
}


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an error answer (the JSON error shape, or any other body)."""
    status = response.status_code
    code, message = "error", ""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or code)
        message = str(err.get("message") or "")
    if not message:
        message = response.text.strip()[:500] or response.reason_phrase or "error"
    if status == 429 and code == "quota_exceeded":
        return QuotaExceededError(status, code, message)
    return _BY_STATUS.get(status, ApiError)(status, code, message)
