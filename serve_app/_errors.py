"""One JSON error shape for every failure, and the request body limit.

Every error answers ``{"error": {"code": "...", "message": "..."}}``:

=====  ======================  ================================================
401    ``unauthorized``        no or an invalid API key or console session
                               (``WWW-Authenticate: Bearer``)
403    ``forbidden``           a desktop refused a file read or write (its permissions);
                               a console request from another origin
404    ``not_found``           unknown id, or another tenant's id (never 403)
409    ``conflict``            the agent cannot do it (duplicate name, busy, gone)
409    ``agent_gone``          the agent's actor died while it was asked
413    ``body_too_large``      the body is over ``MAX_BODY_BYTES``
422    ``invalid_request``     the body or a parameter fails validation (says which)
429    ``quota_exceeded``      the tenant is at a quota (the limit and the count); no
                               Retry-After: it frees when the tenant fires an agent or a
                               task ends, not after a time the server could name
429    ``too_many_requests``   over a concurrency limit (``Retry-After: RETRY_AFTER_S``)
503    ``unavailable``         Ray, the recorder, Docker or a desktop is unavailable
                               (``Retry-After: RETRY_AFTER_S``; ``no_capacity``:
                               ``CAPACITY_RETRY_AFTER_S``)
=====  ======================  ================================================
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray.exceptions import RayError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actors import ours
from orchestrator.errors import (
    AgentError,
    AgentGoneError,
    CapacityError,
    ConfigError,
    DesktopError,
    DockerError,
    NotFoundError,
    OrchestratorError,
    QuotaExceededError,
    RecordError,
    UnavailableError,
)

from ._auth import Unauthorized, needs_key, principal_of

__all__ = [
    "CAPACITY_RETRY_AFTER_S",
    "MAX_BODY_BYTES",
    "RETRY_AFTER_S",
    "BodyLimit",
    "body_error_message",
    "error_body",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB)."""

RETRY_AFTER_S = 1
"""Seconds a client waits before it retries a refusal that passes by itself: over a
concurrency cap (429: the app's, its streams' and Serve's own queue), or the records, the
cluster or a desktop unavailable (503). The one value every such ``Retry-After`` says."""
CAPACITY_RETRY_AFTER_S = 10
"""A full cluster (503 ``no_capacity``) frees a desktop when an agent is fired: not within a
second or two."""

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        kind, rest = parts[0], parts[1:]
        return f"{kind} field '{'.'.join(rest)}'" if rest else kind
    return ".".join(parts) or "request"


def validation_message(errors: Sequence[Any]) -> str:
    """The validation errors in words, naming each offending field."""
    lines = []
    for err in list(errors)[:10]:
        kind = err.get("type", "")
        loc = err.get("loc", ())
        if kind == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            pos = loc[1] if len(loc) > 1 else "?"
            lines.append(f"malformed JSON body at character {pos}: {detail}".rstrip(": "))
            continue
        if tuple(loc) == ("body",) and kind in ("model_attributes_type", "dict_type"):
            lines.append("the body must be a JSON object (send Content-Type: application/json)")
            continue
        lines.append(f"{_where(loc)}: {err.get('msg', 'invalid')}")
    if len(errors) > 10:
        lines.append(f"... and {len(errors) - 10} more")
    return "; ".join(lines) or "invalid request"


_FASTAPI_BODY_ERROR = "There was an error parsing the body"
"""FastAPI's 400 detail when reading a body fails other than as malformed JSON."""


def body_error_message(cause: BaseException | None) -> str:
    """What is wrong with a body FastAPI could not parse (e.g. bytes that are not UTF-8)."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"malformed JSON body: not UTF-8 text (byte {cause.start}: "
            f"{cause.object[cause.start : cause.start + 1]!r})"
        )
    if cause is not None and str(cause):
        return f"malformed body: {_first_line(cause)}"
    return "malformed body: it could not be parsed"


async def _unauthenticated(request: Request) -> JSONResponse | None:
    """401 when the request's route needs an API key and it has no valid one, else None.

    Authentication comes first: a client without a valid key learns nothing about its body.
    """
    if not needs_key(request):
        return None
    try:
        await principal_of(request)
    except Unauthorized as e:
        return _unauthorized(e)
    except HTTPException as e:  # a console cookie from another origin: 403
        return _error(e.status_code, _HTTP_CODES.get(e.status_code, "error"), str(e.detail))
    except RecordError as e:  # the records' keys cannot be read: whether it is valid is unknown
        return _runtime_error(e)
    return None


def _unauthorized(exc: Exception) -> JSONResponse:
    return _error(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _runtime_error(exc: BaseException) -> JSONResponse:
    cause = ours(exc)  # what an actor raised, behind Ray's wrappers; Ray's own in our terms
    msg = _first_line(cause)
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(cause, NotFoundError):
        return _error(404, "not_found", msg)
    if isinstance(cause, AgentGoneError):
        return _error(409, "agent_gone", msg)
    if isinstance(cause, AgentError):
        return _error(409, "conflict", msg)
    if isinstance(cause, ConfigError):
        return _error(422, "invalid_request", msg)
    if isinstance(cause, ValidationError):
        return _error(422, "invalid_request", validation_message(cause.errors()))
    if isinstance(cause, QuotaExceededError):
        return _error(429, "quota_exceeded", msg)
    if isinstance(cause, CapacityError):
        return _error(503, "no_capacity", msg, {"Retry-After": str(CAPACITY_RETRY_AFTER_S)})
    # The engine's and the store's own messages name host paths and addresses: logged
    # for the operator, never sent to a tenant.
    if isinstance(cause, DockerError):
        log.warning("docker error: %s", msg)
        return _error(503, "desktop_unavailable", "the desktop engine is unavailable", retry)
    if isinstance(cause, DesktopError):
        return _error(503, "desktop_unavailable", msg, retry)
    if isinstance(cause, RecordError):
        log.warning("records error: %s", msg)
        return _error(503, "records_unavailable", "the records are unavailable", retry)
    if isinstance(cause, UnavailableError):
        return _error(503, "unavailable", msg, retry)
    if isinstance(cause, OrchestratorError):
        log.warning("unmapped runtime error %s: %s", type(cause).__name__, msg)
        return _error(500, "internal", msg)
    log.exception("unexpected error", exc_info=cause)
    return _error(500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app raises with the one error shape."""

    async def unauthorized(_: Request, exc: Exception) -> JSONResponse:
        return _unauthorized(exc)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            # a body that could not be read as JSON (not UTF-8, ...): malformed, say why
            denied = await _unauthenticated(request)
            if denied is not None:
                return denied
            return _error(422, "invalid_request", body_error_message(exc.__cause__))
        code = _HTTP_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _error(exc.status_code, code, detail, dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError | ValidationError)
        if isinstance(exc, RequestValidationError):
            # FastAPI parses a JSON body before it authenticates: malformed JSON without a
            # valid key is still 401
            denied = await _unauthenticated(request)
            if denied is not None:
                return denied
        return _error(422, "invalid_request", validation_message(exc.errors()))

    async def runtime(_: Request, exc: Exception) -> JSONResponse:
        return _runtime_error(exc)

    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ValidationError, invalid)
    app.add_exception_handler(OrchestratorError, runtime)
    app.add_exception_handler(RayError, runtime)
    # Anything else is a bug: still the one error shape (500, logged), never plain text.
    app.add_exception_handler(Exception, runtime)


class _TooLarge(HTTPException):
    """Raised while reading a body past the limit (an HTTPException, so that FastAPI's body
    parsing re-raises it instead of turning it into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, judged by Content-Length when
    the client sends one and by counting while reading (chunked bodies) otherwise."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        overrides: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        self.app = app
        self.default_limit = limit
        self.overrides = [(m.upper(), re.compile(p), n) for m, p, n in overrides]
        """``(method, path regex, limit)``: routes that take larger bodies (uploads)."""

    def _limit(self, scope: Scope) -> int:
        for method, pattern, limit in self.overrides:
            if scope.get("method") == method and pattern.match(scope.get("path", "")):
                return limit
        return self.default_limit

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        msg = f"request body is larger than {limit} bytes"
        await _error(413, "body_too_large", msg)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > limit
                except ValueError:
                    await _error(400, "bad_request", "bad Content-Length")(scope, receive, send)
                    return
                if too_large:
                    await self._reject(scope, receive, send, limit)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._reject(scope, receive, send, limit)
