"""Schemathesis over the live OpenAPI spec of a real Serve deployment: no 5xx on any input,
every error in the one error shape, successful answers as the spec describes them, and every
/v1 route refusing a request without a valid API key with 401.

The schema is loaded from the deployment's own ``/openapi.json``, so new routes are fuzzed
as soon as they exist. Valid ids (an agent of tenant A with a desktop, and a finished task of
it) are mixed with random ones. The run is bounded: a few examples per operation
(``ORCHESTRATOR_FUZZ_EXAMPLES``, default 15), waits and command timeouts clamped, a timeout
on every request (a hang fails the test), no shrinking. Generation is derandomized, so a run
in CI is repeatable; set ``ORCHESTRATOR_FUZZ_SEED`` to explore other inputs.

Routes that create desktops get hard limits: ``POST /v1/agents`` and ``.../children`` are
sent only a couple of valid specs (with a small desktop of the test image); their invalid
specs get a name that fails validation, so no invalid-but-coercible spec starts a desktop.
``DELETE /v1/agents/{agent_id}`` is fuzzed with unknown ids only; every agent the run created
is fired at the end through it (and its answer checked too).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.integration.test_serve_api import ECHO, TENANT_A, Api, api, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

__all__ = ["api"]  # the imported module fixture

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = int(os.environ.get("ORCHESTRATOR_FUZZ_EXAMPLES", "15"))
"""Examples per operation and generation mode."""
CREATE_EXAMPLES = 2
"""Valid specs sent to each route that starts a desktop."""
STREAM_EXAMPLES = 3
"""Valid examples for the event stream (resuming past a finished task's end waits 5 s)."""
AUTH_EXAMPLES = 3
REQUEST_TIMEOUT_S = 30.0
"""Longer than any clamped wait; a request still running by then counts as a hang."""
MAX_FAILURES = 3
"""Distinct failures kept per operation and mode."""
SEED = os.environ.get("ORCHESTRATOR_FUZZ_SEED")

PUBLIC = {"/healthz", "/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"}
CREATES_DESKTOPS = {("POST", "/v1/agents"), ("POST", "/v1/agents/{agent_id}/children")}
FIRE = ("DELETE", "/v1/agents/{agent_id}")
STREAM_SUFFIX = "/events/stream"
BAD_NAME = "not a valid name"

REACHED = [
    "GET /v1/agents/{agent_id}",
    "GET /v1/agents/{agent_id}/screenshot",
    "POST /v1/agents/{agent_id}/actions",
    "POST /v1/agents/{agent_id}/shell",
    "POST /v1/agents/{agent_id}/tasks",
    "GET /v1/tasks/{task_id}/events",
    "POST /v1/agents",
]
"""Operations that must have answered 2xx at least once in a run."""

MAX_WAIT_S = 0.2
MAX_COMMAND_S = 2.0
MAX_TEXT = 40


@dataclass
class Target:
    """The live deployment, its schema, and ids that exist for tenant A."""

    api: Api
    schema: Any
    agent_id: str
    task_id: str
    before: set[str] = field(default_factory=set)
    """Top-level agents of tenant A from before the run (not fired by it)."""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api.keys[TENANT_A]}"}

    def operations(self) -> list[Any]:
        ops = [result.ok() for result in self.schema.get_all_operations()]
        return sorted(ops, key=lambda op: _order(op))


def _key(op: Any) -> tuple[str, str]:
    return (op.method.upper(), op.path)


def _order(op: Any) -> tuple[int, str, str]:
    """Reads first, then what acts, then what creates; firing last."""
    method, path = _key(op)
    if (method, path) == FIRE:
        rank = 4
    elif (method, path) in CREATES_DESKTOPS:
        rank = 3
    elif method == "GET":
        rank = 0
    elif method == "POST" and path.endswith("/tasks"):
        rank = 2
    else:
        rank = 1
    return (rank, path, method)


def _top_level_ids(c: httpx.Client) -> set[str]:
    r = c.get("/v1/agents")
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json() if a["parent_id"] is None}


@pytest.fixture(scope="module")
def target(api: Api) -> Iterator[Target]:
    with api.client(TENANT_A) as c:
        before = _top_level_ids(c)
        r = c.post("/v1/agents", json=api.spec("fuzz"))
        assert r.status_code == 201, r.text
        agent_id = r.json()["id"]
        r = c.post(f"/v1/agents/{agent_id}/tasks", json={"description": "echo", "script": ECHO})
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]

        def done() -> bool:
            state: str = c.get(f"/v1/tasks/{task_id}").json()["state"]
            return state in ("succeeded", "failed", "cancelled")

        until(done, timeout_s=60, what="the fixture task done")
        schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json", timeout=30)
        t = Target(api=api, schema=schema, agent_id=agent_id, task_id=task_id, before=before)
        try:
            yield t
        finally:
            # Anything the fuzzer created (agents from workflows included) goes.
            for aid in sorted(_top_level_ids(c) - before):
                c.delete(f"/v1/agents/{aid}", timeout=120)


# ---------------------------------------------------------------------- helpers


def _error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error is ``{"error": {"code", "message"}}`` with a message that says something."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.status_code} without a JSON body: {response.text!r}"
        ) from None
    ok = (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"], dict)
        and set(body["error"]) == {"code", "message"}
        and isinstance(body["error"]["message"], str)
        and body["error"]["message"].strip()
    )
    assert ok, f"{response.status_code} not in the error shape: {body!r}"
    return None


def _checks() -> list[Callable[..., Any]]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        response_schema_conformance,
        content_type_conformance,
        _error_shape,
    ]


def _clamp_action(action: Any) -> None:
    if not isinstance(action, dict):
        return
    for name, limit in (("duration_s", MAX_WAIT_S), ("timeout_s", MAX_COMMAND_S)):
        value = action.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > limit:
            action[name] = limit
    if isinstance(action.get("text"), str):
        action["text"] = action["text"][:MAX_TEXT]


def _bound(target: Target, op: Any, positive: bool) -> Callable[[Any], Any]:
    """Keep a generated case cheap: short waits and commands, small desktops, no spare ones."""
    method, path = _key(op)

    def bound(case: Any) -> Any:
        body = case.body
        if not isinstance(body, dict):
            return case
        if (method, path) in CREATES_DESKTOPS:
            if positive:
                body["desktop"] = {"image": target.api.image, "width": 640, "height": 480}
                body["brain"] = {"kind": "scripted"}
            else:
                body["name"] = BAD_NAME
        elif path.endswith("/actions") or path.endswith("/shell"):
            _clamp_action(body)
        elif path.endswith("/tasks"):
            if isinstance(body.get("deadline_s"), int | float) and body["deadline_s"] > 10:
                body["deadline_s"] = 10
            if isinstance(body.get("step_budget"), int) and body["step_budget"] > 5:
                body["step_budget"] = 5
        return case

    return bound


STREAM_READ_S = 3.0
"""How long a stream that is still open is read (its first comment comes at once)."""


def _read_stream(case: Any, url: str, headers: dict[str, str]) -> list[str] | None:
    """An event stream case's lines, read until it ends or for ``STREAM_READ_S`` (then it is
    closed); None when it did not answer 200 (the caller then checks that answer as any
    other). A 200 must be ``text/event-stream`` whose every line is Server-Sent Events: a
    comment, ``id:`` with a seq, ``event:``, ``data:`` with JSON, or blank."""
    kw = case.as_transport_kwargs(base_url=url, headers=headers)
    request = {k: kw[k] for k in ("method", "url", "headers", "params", "cookies") if kw.get(k)}
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=STREAM_READ_S)
    where = f"{case.method} {case.formatted_path}"
    with httpx.Client(timeout=timeout) as c:
        try:
            opened = c.stream(**request)
            r = opened.__enter__()
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
            return None  # a request httpx will not send: schemathesis's client sends it
        try:
            if r.status_code != 200:
                return None
            return _check_stream(r, where)
        finally:
            opened.__exit__(None, None, None)


def _check_stream(r: httpx.Response, where: str) -> list[str]:
    """The lines of a 200 stream, read for at most ``STREAM_READ_S``, checked as SSE."""
    assert r.headers["content-type"].startswith("text/event-stream"), (where, r.headers)
    lines: list[str] = []
    deadline = time.monotonic() + STREAM_READ_S
    try:
        for line in r.iter_lines():
            lines.append(line)
            if time.monotonic() > deadline:
                break
    except httpx.ReadTimeout:
        pass  # open and quiet: as a live stream is
    assert lines and lines[0].startswith(":"), (where, lines[:3])
    for line in lines:
        name, _, value = line.partition(":")
        if name == "data":
            json.loads(value)
        elif name == "id":
            assert value.strip().isdigit(), (where, line)
        else:
            assert line == "" or name in ("", "event"), (where, line)
    return lines


def _fuzz(strategy: Any, examples: int, one: Callable[[Any], None]) -> list[str]:
    """Run ``one`` on ``examples`` generated cases; the distinct failures, not raised."""
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis.errors import Unsatisfiable

    failures: dict[str, str] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=SEED is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
        print_blob=False,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        try:
            one(case)
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - all are reported
            text = str(e).strip() or repr(e)
            first = text.splitlines()[0][:200]
            if len(failures) < MAX_FAILURES:
                failures.setdefault(f"{type(e).__name__}: {first}", text[:3000])

    if SEED is not None:
        run = seed(int(SEED))(run)
    try:
        run()
    except Unsatisfiable:
        pass  # nothing to generate in this mode (e.g. nothing to negate)
    return list(failures.values())


def _id_params(target: Target, op: Any) -> dict[str, str]:
    names = {p.name for p in op.path_parameters}
    known = {"agent_id": target.agent_id, "task_id": target.task_id}
    return {n: known[n] for n in names if n in known}


def _report(failures: dict[str, list[str]]) -> str:
    lines = []
    for label, found in failures.items():
        lines.append(f"=== {label}: {len(found)} distinct failure(s)")
        lines += [f"--- {f}" for f in found]
    return "\n".join(lines)


# ---------------------------------------------------------------------- the spec itself


def test_spec_covers_the_routes_and_public_pages_need_no_key(target: Target) -> None:
    labels = {f"{m} {p}" for m, p in map(_key, target.operations())}
    assert "POST /v1/agents/{agent_id}/actions" in labels and "GET /v1/stats" in labels, labels
    assert len([x for x in labels if " /v1/" in x]) >= 13, labels
    with target.api.client() as c:
        for path in ("/healthz", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path


# ---------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer A", "Basic A", "bearer  "],
    ids=["none", "key-off-by-one", "basic-scheme", "blank"],
)
def test_every_v1_operation_needs_a_valid_key(target: Target, authorization: str | None) -> None:
    from schemathesis import GenerationMode

    if authorization is not None and authorization.endswith(" A"):
        # a real key of tenant A, one character off / under another scheme
        key = target.api.keys[TENANT_A]
        authorization = authorization[:-1] + (key + "x" if "Bearer" in authorization else key)
    headers = {} if authorization is None else {"Authorization": authorization}
    url = target.api.url
    before = time.monotonic()

    def one(case: Any) -> None:
        r = case.call(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S)
        where = f"{case.method} {case.formatted_path}"
        assert r.status_code == 401, f"{where}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("www-authenticate") == ["Bearer"], (where, r.headers)
        _error_shape(None, r, case)
        assert r.json()["error"]["code"] == "unauthorized"
        assert target.api.keys[TENANT_A] not in r.text

    failures: dict[str, list[str]] = {}
    ops = [op for op in target.operations() if op.path not in PUBLIC]
    assert ops and all(op.path.startswith("/v1/") for op in ops), [op.label for op in ops]
    for op in ops:
        found: list[str] = []
        ids = _id_params(target, op)
        strategies = [op.as_strategy(GenerationMode.POSITIVE)]
        if ids:
            strategies.append(op.as_strategy(GenerationMode.POSITIVE, path_parameters=ids))
        strategies.append(op.as_strategy(GenerationMode.NEGATIVE))
        for strategy in strategies:
            found += _fuzz(strategy, AUTH_EXAMPLES, one)
        if found:
            failures[op.label] = found
    assert not failures, _report(failures)
    assert time.monotonic() - before < 120, "the auth fuzz ran too long"


def test_malformed_body_without_a_key_is_401(target: Target) -> None:
    """Authentication comes before the body is even parsed."""
    json_ct = {"Content-Type": "application/json"}
    aid = target.agent_id
    with target.api.client() as c:
        for path in ("/v1/agents", f"/v1/agents/{aid}/actions", f"/v1/agents/{aid}/shell"):
            r = c.post(path, content=b'{"type": ', headers=json_ct)
            assert r.status_code == 401, (path, r.status_code, r.text)


# ---------------------------------------------------------------------- no 5xx, ever


def test_fuzz_every_operation_with_a_valid_key(target: Target) -> None:
    from schemathesis import GenerationMode

    checks = _checks()
    headers = target.headers()
    url = target.api.url
    fire_op = None
    failures: dict[str, list[str]] = {}
    timings: list[tuple[float, str]] = []
    statuses: dict[str, Counter[int]] = defaultdict(Counter)

    def one(case: Any) -> None:
        start = time.monotonic()
        try:
            if case.operation.path.endswith(STREAM_SUFFIX):
                # A stream answers 200 and may stay open for ever (the tenant's stream does,
                # while the key is in force): read it for a bounded time and check what came.
                streamed = _read_stream(case, url, headers)
                if streamed is not None:
                    statuses[case.operation.label][200] += 1
                    return
            r = case.call(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S)
        finally:
            timings.append((time.monotonic() - start, f"{case.method} {case.formatted_path}"))
        statuses[case.operation.label][r.status_code] += 1
        case.validate_response(r, checks=checks, headers=headers)

    for op in target.operations():
        key = _key(op)
        if key == FIRE:
            fire_op = op
        ids = _id_params(target, op)
        creates = key in CREATES_DESKTOPS
        pos, neg = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
        plan: list[tuple[Any, dict[str, str] | None, int]] = []  # mode, fixed ids, examples
        if creates:
            plan.append((pos, ids or None, CREATE_EXAMPLES))
        elif ids and key != FIRE:
            plan.append(
                (pos, ids, STREAM_EXAMPLES if op.path.endswith(STREAM_SUFFIX) else EXAMPLES)
            )
        if not (creates and not ids):  # unknown ids: 404 before anything is created
            plan.append((pos, None, max(3, EXAMPLES // 2) if ids else EXAMPLES))
        plan.append((neg, None, EXAMPLES))
        found: list[str] = []
        for mode, fixed, n in plan:
            strategy = op.as_strategy(mode, path_parameters=fixed)
            found += _fuzz(strategy.map(_bound(target, op, mode == pos)), n, one)
        if found:
            failures[op.label] = found

    # Fire what the run created, through the API, checking those answers too.
    assert fire_op is not None
    with target.api.client(TENANT_A) as c:
        agents = c.get("/v1/agents").json()
    fire_ids = [
        a["id"]
        for a in agents
        if a["parent_id"] is None and a["status"] != "stopped" and a["id"] not in target.before
    ]
    for aid in fire_ids:
        if aid == target.agent_id:
            continue  # the fixture fires it
        case = fire_op.Case(path_parameters={"agent_id": aid})
        try:
            one(case)
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001
            failures.setdefault(fire_op.label, []).append(str(e)[:3000])

    slowest = sorted(timings, reverse=True)[:5]
    print(f"\n{len(timings)} requests; slowest: {[(round(s, 2), w) for s, w in slowest]}")  # noqa: T201
    for label, counts in sorted(statuses.items()):
        print(f"  {label}: {dict(sorted(counts.items()))}")  # noqa: T201
    # the valid ids reached the routes (not only 404s and 422s)
    for label in REACHED:
        assert any(200 <= code < 300 for code in statuses[label]), (label, statuses[label])
    assert not failures, _report(failures)
    assert all(s < REQUEST_TIMEOUT_S for s, _ in timings)
