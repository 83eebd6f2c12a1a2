"""The API's answers to bad input and missing keys, on the FastAPI app alone (no Ray, no Serve):
each case here is a bug the schemathesis run (tests/integration/test_serve_fuzz.py) found.

Every request here fails before a route would reach the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from orchestrator.domain import AgentInfo, AgentSpec, BrainConfig
from serve_app import KeyStore, build_app
from serve_app._errors import body_error_message

KEY = "unit-test-key-1234"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json"}
BIG = str(2**63)  # one past SQLite's largest integer


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(build_app(KeyStore.parse(f"t-unit:{KEY}"))) as c:
        yield c


def _error(r: object, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


BODY_ROUTES = ["/v1/agents", "/v1/agents/agent-0000000000/actions", "/v1/agents/x/shell"]


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_body_that_is_not_utf8_is_422_not_400(client: TestClient, path: str) -> None:
    r = client.post(path, content=b'{"name": "\xff\xfe"}', headers={**AUTH, **JSON})
    message = _error(r, 422, "invalid_request")
    assert "not UTF-8" in message and "byte 10" in message, message


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("body", [b'{"type": ', b"\xff\xfe", b"[1,"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key-123", f"Basic {KEY}", "Bearer "])
def test_a_malformed_body_without_a_valid_key_is_401(
    client: TestClient, path: str, body: bytes, auth: str | None
) -> None:
    headers = dict(JSON) if auth is None else {**JSON, "Authorization": auth}
    r = client.post(path, content=body, headers=headers)
    _error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_a_malformed_body_with_a_valid_key_is_422_with_the_reason(client: TestClient) -> None:
    r = client.post("/v1/agents", content=b'{"name": ', headers={**AUTH, **JSON})
    assert "malformed JSON body at character" in _error(r, 422, "invalid_request")


def test_health_needs_no_key_even_with_a_bad_request(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("path", "params", "headers", "field"),
    [
        ("/v1/tasks", {"offset": BIG}, {}, "query field 'offset'"),
        ("/v1/tasks/task-0000000000/events", {"after_seq": BIG}, {}, "query field 'after_seq'"),
        ("/v1/tasks/task-0000000000/events/stream", {"after_seq": BIG}, {}, "'after_seq'"),
        (
            "/v1/tasks/task-0000000000/events/stream",
            {},
            {"Last-Event-ID": BIG},
            "header field 'Last-Event-ID'",
        ),
    ],
)
def test_integers_past_what_the_records_hold_are_422_not_500(
    client: TestClient, path: str, params: dict[str, str], headers: dict[str, str], field: str
) -> None:
    r = client.get(path, params=params, headers={**AUTH, **headers})
    assert field in _error(r, 422, "invalid_request")


def test_body_error_message_names_the_problem() -> None:
    try:
        b"ab\xffcd".decode("utf-8")
    except UnicodeDecodeError as e:
        assert body_error_message(e) == "malformed JSON body: not UTF-8 text (byte 2: b'\\xff')"
    assert body_error_message(None) == "malformed body: it could not be parsed"
    assert body_error_message(ValueError("bad\nmore")) == "malformed body: bad"


def test_the_brain_api_key_never_appears_in_json() -> None:
    """The spec marks the key write-only: API answers (JSON) hold none, not even masked; the
    Python objects that go to the actors keep it."""
    spec = AgentSpec(name="a", brain=BrainConfig(kind="openai", api_key=SecretStr("sk-secret")))
    info = AgentInfo(id="agent-1", path="t/a", tenant="t", parent_id=None, spec=spec)
    dumped = json.loads(info.model_dump_json())
    assert dumped["spec"]["brain"]["api_key"] is None
    assert "sk-secret" not in info.model_dump_json() and "***" not in info.model_dump_json()
    key = info.model_dump()["spec"]["brain"]["api_key"]
    assert isinstance(key, SecretStr) and key.get_secret_value() == "sk-secret"
    # and the spec as sent in a request still takes it
    back = AgentSpec.model_validate({"name": "a", "brain": {"api_key": "sk-2"}})
    assert back.brain.api_key is not None and back.brain.api_key.get_secret_value() == "sk-2"


def test_the_openapi_output_schema_has_no_api_key_value(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    out = schemas["BrainConfig-Output"]["properties"]["api_key"]
    assert out["type"] == "null", out
    assert "password" in json.dumps(schemas["BrainConfig-Input"]["properties"]["api_key"])


def test_a_full_cluster_is_503_with_a_longer_retry_after() -> None:
    from orchestrator.errors import CapacityError
    from serve_app._errors import _runtime_error

    r = _runtime_error(CapacityError("no node had a free desktop for t/a within 60 s"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "10"
    assert json.loads(r.body)["error"]["code"] == "no_capacity"


_BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
agent: {name: a, brain: {script: {k: *c}}}
task: {description: d}
"""


@pytest.mark.parametrize(
    ("body", "ctype", "says"),
    [
        (_BOMB, "text/yaml", "aliases"),
        ("a: " + "[" * 5000 + "]" * 5000, "text/yaml", "nested too deeply"),
        ('{"yaml": ' + "[" * 100_000 + "]" * 100_000 + "}", "application/json", "too deeply"),
    ],
    ids=["yaml-aliases", "yaml-deep", "json-deep"],
)
def test_hostile_workflows_are_422_not_500(
    client: TestClient, body: str, ctype: str, says: str
) -> None:
    r = client.post("/v1/workflows", content=body, headers={**AUTH, "Content-Type": ctype})
    assert says in _error(r, 422, "invalid_request")


def test_an_unexpected_error_is_500_in_the_error_shape() -> None:
    from serve_app._errors import _runtime_error

    r = _runtime_error(ZeroDivisionError("boom"))
    assert r.status_code == 500 and json.loads(r.body)["error"]["code"] == "internal"


def test_5xx_messages_keep_host_paths_and_addresses_to_the_log() -> None:
    from orchestrator.errors import DockerUnavailableError, RecordError
    from serve_app._errors import _runtime_error

    for exc in (
        RecordError("cannot write /srv/orchestrator/records.sqlite3: disk I/O error"),
        DockerUnavailableError("no Docker engine at unix:///var/run/docker.sock"),
    ):
        r = _runtime_error(exc)
        body = json.loads(r.body)["error"]
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert "/srv" not in body["message"] and "/var/run" not in body["message"], body


def test_one_key_for_two_tenants_is_refused(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    from pathlib import Path

    from orchestrator.errors import ConfigError

    key = "shared-key-0123456789"
    with pytest.raises(
        ConfigError, match="same API key is configured for tenants 'a' and 'b'"
    ) as e:
        KeyStore.parse(f"a:{key}\nb:{key}")
    assert key not in str(e.value)  # the message names the tenants, never the key
    # Across the environment and the file too, also when one of them holds the digest.
    keys_file = Path(str(tmp_path)) / "keys"
    keys_file.write_text(f"b:sha256:{hashlib.sha256(key.encode()).hexdigest()}\n")
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS", f"a:{key}")
    with pytest.raises(ConfigError, match="same API key"):
        KeyStore.from_env(str(keys_file))
    # The same key twice for one tenant is just the one key.
    assert len(KeyStore.parse(f"a:{key}\na:{key}")) == 1


def test_a_brain_naming_a_refused_model_api_is_422_before_anything_starts(
    client: TestClient, operator_env: Callable[..., None]
) -> None:
    for allowed in ("https://gw.example/v1", None):  # a list, and the default: none
        operator_env(ORCHESTRATOR_MODEL_BASE_URLS=allowed, OPENAI_BASE_URL=None)
        spec = {"name": "a", "brain": {"kind": "openai", "base_url": "http://10.0.0.1/v1"}}
        for path in ("/v1/agents", "/v1/agents/agent-0000000000/children"):
            r = client.post(path, json=spec, headers=AUTH)
            message = _error(r, 422, "invalid_request")
            assert message.startswith("brain.base_url 'http://10.0.0.1/v1' is not one of")
