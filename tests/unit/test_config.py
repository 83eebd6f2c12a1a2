"""One configuration surface: every environment variable is parsed in ``orchestrator.config``
(a bad value is a ``ConfigError`` naming the variable), and nothing else in ``orchestrator``,
``actors`` or ``serve_app`` reads the environment."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import config
from orchestrator.config import ApiSettings, ModelEnv, RayEnv, Settings, env_name
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "actors", "serve_app")
CONFIG = ROOT / "orchestrator" / "config.py"


# ---------------------------------------------------------------------- parsing


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set (or, with None, unset) environment variables for one test."""

    def set_env(**values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize(
    ("read", "name", "value"),
    [
        (config.api_settings, "ORCHESTRATOR_API_MAX_CONCURRENT", "0"),
        (config.api_settings, "ORCHESTRATOR_API_MAX_CONCURRENT", "many"),
        (config.api_settings, "ORCHESTRATOR_API_MAX_STREAMS", "-3"),
        (config.api_settings, "ORCHESTRATOR_API_SSE_KEEPALIVE_S", "soon"),
        (Settings, "ORCHESTRATOR_DESKTOP_MAX_PIDS", "0"),
        (Settings, "ORCHESTRATOR_DESKTOP_READY_TIMEOUT_S", "half a minute"),
        (Settings, "ORCHESTRATOR_EGRESS_ALLOW_CIDRS", "10.0.0.0/33"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    env: Callable[..., None], read: Callable[[], Any], name: str, value: str
) -> None:
    env(**{name: value})
    config.settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match=name) as caught:
            config.settings() if read is Settings else read()
        assert repr(value) in str(caught.value)
    finally:
        config.settings.cache_clear()


def test_api_settings_parse_and_default(env: Callable[..., None]) -> None:
    env(
        ORCHESTRATOR_API_MAX_CONCURRENT="3",
        ORCHESTRATOR_API_MAX_STREAMS="",  # empty: the default
        ORCHESTRATOR_API_SSE_KEEPALIVE_S="0.5",
        ORCHESTRATOR_API_KEYS="a:0123456789abcdef",
        ORCHESTRATOR_API_KEYS_FILE=None,
    )
    api = config.api_settings()
    assert (api.max_concurrent, api.max_streams, api.sse_keepalive_s) == (3, 256, 0.5)
    assert api.keys is not None and api.keys.get_secret_value() == "a:0123456789abcdef"
    assert "0123456789abcdef" not in repr(api)  # a key never shows in a repr or a log
    assert api.keys_file is None
    env(ORCHESTRATOR_API_SSE_KEEPALIVE_S="0")
    assert config.api_settings().sse_keepalive_s == 15.0  # 0 or less: the default


def test_model_and_ray_env_are_read_at_each_use(env: Callable[..., None]) -> None:
    env(OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="sk-x", ORCHESTRATOR_MODEL="m")
    model = config.model_env()
    assert (model.openai_base_url, model.model) == ("http://127.0.0.1:9/v1", "m")
    assert model.openai_api_key is not None and "sk-x" not in repr(model)
    env(ORCHESTRATOR_MODEL="n", RAY_ADDRESS=None, RAY_AUTH_MODE=None)
    assert config.model_env().model == "n"
    ray = config.ray_env()
    assert (ray.address, ray.auth_mode) == (None, "token")
    env(RAY_ADDRESS="127.0.0.1:6379", RAY_AUTH_MODE="disabled")
    assert (config.ray_env().address, config.ray_env().auth_mode) == ("127.0.0.1:6379", "disabled")


def test_env_names() -> None:
    assert env_name(ApiSettings, "sse_keepalive_s") == "ORCHESTRATOR_API_SSE_KEEPALIVE_S"
    assert env_name(ModelEnv, "openai_api_key") == "OPENAI_API_KEY"
    assert env_name(RayEnv, "address") == "RAY_ADDRESS"
    assert env_name(Settings, "desktop_max_memory_mb") == "ORCHESTRATOR_DESKTOP_MAX_MEMORY_MB"


def test_durations_and_sizes_carry_their_unit() -> None:
    """A field holding a duration or a size names its unit (``_s``, ``_mb``, ``_days``)."""
    for cls in (Settings, ApiSettings, ModelEnv, RayEnv):
        for name, info in cls.model_fields.items():
            number = info.annotation in (float, float | None)
            if number and not name.endswith(("_s", "_days", "_cpus")):
                pytest.fail(f"{env_name(cls, name)}: a number without its unit")
            assert info.description or _documented(cls, name), f"{env_name(cls, name)}: no docs"


def _documented(cls: type, field: str) -> bool:
    """Whether the field has a docstring under it in config.py."""
    tree = ast.parse(CONFIG.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            body = node.body
            for i, stmt in enumerate(body[:-1]):
                target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
                if isinstance(target, ast.Name) and target.id == field:
                    nxt = body[i + 1]
                    return isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
    return False


def test_the_api_reads_its_caps_and_keys_through_config(env: Callable[..., None]) -> None:
    from serve_app._auth import KeyStore
    from serve_app._limit import ENV_MAX_STREAMS, env_limit

    env(ORCHESTRATOR_API_MAX_STREAMS="zero")
    with pytest.raises(ConfigError, match="ORCHESTRATOR_API_MAX_STREAMS"):
        env_limit(ENV_MAX_STREAMS, 7)
    env(ORCHESTRATOR_API_MAX_STREAMS="5")
    assert env_limit(ENV_MAX_STREAMS, 7) == 5
    env(ORCHESTRATOR_API_MAX_STREAMS=None)
    assert env_limit(ENV_MAX_STREAMS, 7) == 7
    env(ORCHESTRATOR_API_KEYS="t1:first-key-0123456789", ORCHESTRATOR_API_KEYS_FILE=None)
    assert KeyStore.from_env().tenant_for("first-key-0123456789") == "t1"


# ---------------------------------------------------------------------- nobody else reads


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name)
    return isinstance(node, ast.Name) and node.id == "environ"


def environment_reads(source: str) -> list[tuple[int, str]]:
    """Where ``source`` reads an environment variable: ``os.getenv``, ``os.environ.get`` or
    ``.pop``, ``os.environ[...]``, ``... in os.environ``, click's ``envvar="..."``. Copying
    the whole environment for a child process, and setting variables, are not reads."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "getenv") or (
                isinstance(f, ast.Name) and f.id == "getenv"
            ):
                found.append((node.lineno, "getenv"))
            elif isinstance(f, ast.Attribute) and f.attr in ("get", "pop") and _is_environ(f.value):
                found.append((node.lineno, f"environ.{f.attr}"))
            for kw in node.keywords:
                if kw.arg == "envvar" and isinstance(kw.value, ast.Constant):
                    found.append((node.lineno, f"envvar={kw.value.value!r}"))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_environ(node.value):
                found.append((node.lineno, "environ[...]"))
        elif isinstance(node, ast.Compare):
            if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) and any(
                _is_environ(c) for c in node.comparators
            ):
                found.append((node.lineno, "in environ"))
    return sorted(found)


def test_only_config_reads_the_environment() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == CONFIG:
                continue
            for line, what in environment_reads(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not offenders, "read these in orchestrator/config.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "source",
    [
        "import os\nx = os.environ.get('A')",
        "import os\nx = os.getenv('A', '1')",
        "from os import getenv\nx = getenv('A')",
        "import os\nx = os.environ['A']",
        "import os\nx = 'A' in os.environ",
        "import os\nx = 'A' not in os.environ",
        "from os import environ\nx = environ.pop('A', None)",
        "import click\nopt = click.option('--a', envvar='A')",
    ],
)
def test_the_scan_sees_a_read(source: str) -> None:
    assert environment_reads(source)


@pytest.mark.parametrize(
    "source",
    [
        "import os\nenv = {k: v for k, v in os.environ.items() if k != 'A'}",
        "import os\nenv = {**os.environ, 'LC_ALL': 'C'}",
        "import os\nos.environ.update({'A': '1'})",
        "import os\nos.environ.setdefault('A', '1')",
        "import os\nos.environ['A'] = '1'",
    ],
)
def test_the_scan_lets_writes_and_copies_pass(source: str) -> None:
    assert environment_reads(source) == []
