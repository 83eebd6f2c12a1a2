"""The light SDK: ``pip install .`` without extras, in a fresh virtualenv, installs none of
the runtime (Ray, Docker, SSH, X11, mss, the model client), and the SDK works there against
a real API.

This one file runs twice:

- in the project's virtualenv, as part of the suite: the ``api`` fixture serves the HTTP API
  on a free loopback port of the session's Ray cluster, the SDK tests below run against it,
  and ``test_in_a_fresh_virtualenv`` builds a fresh virtualenv, installs the project there
  without extras (plus pytest), checks what is (not) installed, and runs a copy of this file
  with that virtualenv's pytest against the same API;
- in the fresh virtualenv (that copy, alone: no conftest, no pyproject): the ``api`` fixture
  takes the URL and key from ``SDK_LIGHT_API_URL`` and ``SDK_LIGHT_API_KEY``, and imports
  nothing but the SDK, pytest and the standard library.

So the module imports only what a light install has; the runtime is imported inside the
fixture, on the project's side only.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator import errors
from orchestrator.domain import AgentStatus, EventKind, TaskState
from orchestrator.sdk import (
    Agent,
    ApiError,
    AsyncClient,
    AuthError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
)

pytestmark = pytest.mark.integration

URL_ENV = "SDK_LIGHT_API_URL"
KEY_ENV = "SDK_LIGHT_API_KEY"
TENANT = "t-sdk-light"
ECHO = {"steps": [{"type": "shell", "command": "echo hello-from-light"}]}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUNTIME = {  # distribution: the module it installs
    "ray": "ray",
    "docker": "docker",
    "asyncssh": "asyncssh",
    "python-xlib": "Xlib",
    "mss": "mss",
    "openai": "openai",
    "anthropic": "anthropic",
    "pillow": "PIL",
}
"""What ``pip install .`` without extras must not install."""
IN_FRESH_VENV = URL_ENV in os.environ


@dataclass
class Api:
    url: str
    key: str

    def client(self, key: str | None = None) -> Client:
        return Client(self.url, key or self.key, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API to test against: the one the environment names (in the fresh virtualenv), else
    one served here on a free loopback port of the session's Ray cluster, with one key."""
    if IN_FRESH_VENV:
        yield Api(url=os.environ[URL_ENV], key=os.environ[KEY_ENV])
        return
    request.getfixturevalue("ray_session")  # tests/integration/conftest_ray.py
    from ray import serve

    from serve_app import deploy

    key = secrets.token_urlsafe(24)
    keys_file = tmp_path_factory.mktemp("sdk-light") / "api-keys"
    keys_file.write_text(f"{TENANT}:{key}\n")
    url = deploy(port=_free_port(), keys_file=str(keys_file))
    try:
        _until_healthy(Api(url=url, key=key))
        yield Api(url=url, key=key)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]


def _until_healthy(api: Api, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    with Client(api.url, api.key, timeout=5) as c:
        while True:
            try:
                if c.healthy():
                    return
            except (httpx.TransportError, ApiError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)  # polling interval of a deadline-bound wait


@pytest.fixture(scope="module")
def agent(api: Api) -> Iterator[Agent]:
    """One agent with a real desktop, created through the SDK; fired at the end."""
    where = "venv" if IN_FRESH_VENV else "main"  # both runs share the API and the tenant
    with api.client() as c:
        made = c.create_agent(f"light-{where}", role="tester")
        try:
            yield made
        finally:
            try:
                c.agent(made.id).fire()
            except ApiError:
                pass


# ---------------------------------------------------------------------- the SDK's tests


def test_create_agent_and_find_it(api: Api, agent: Agent) -> None:
    assert agent.info.status == AgentStatus.IDLE and agent.path.startswith(f"{TENANT}/light-")
    with api.client() as c:
        assert c.healthy()
        assert agent.id in [a.id for a in c.agents()]
        again = c.agent(agent.id)
        assert again.path == agent.path and again.info.spec.role == "tester"
        with pytest.raises(ConflictError) as err:  # the same name again
            c.create_agent(agent.info.spec.name)
        assert err.value.status == 409 and isinstance(err.value, errors.AgentError)


def test_scripted_task_waits_to_its_result_and_pages_events(api: Api, agent: Agent) -> None:
    task = agent.assign("echo", script=ECHO)
    assert task.wait(timeout=60) is task  # with a progress bar (tqdm is installed)
    assert task.state == TaskState.SUCCEEDED and task.result == "hello-from-light"
    with api.client() as c:
        assert c.task(task.id).result == "hello-from-light"
    small = list(task.events(page_size=2))
    assert [e.seq for e in small] == [e.seq for e in task.events(page_size=1000)]
    states = [e.data["state"] for e in small if e.kind == EventKind.TASK]
    assert states[0] == "pending" and states[-1] == "succeeded", states
    assert any(e.kind == EventKind.STEP for e in small)


def test_screenshot_and_shell(agent: Agent) -> None:
    shot = agent.screenshot()
    assert shot[:8] == PNG_MAGIC and shot._repr_png_() == bytes(shot)
    assert agent.act({"type": "move", "x": 10, "y": 20}).ok
    res = agent.shell("echo out; exit 3")
    assert (res.exit_code, res.stdout) == (3, "out\n") and not res.ok


def test_errors_are_typed(api: Api, agent: Agent) -> None:
    with api.client() as c:
        with pytest.raises(NotFoundError) as nf:
            c.agent("agent-0000000000")
        assert (nf.value.status, nf.value.code) == (404, "not_found")
        assert isinstance(nf.value, errors.NotFoundError)
        with pytest.raises(errors.NotFoundError):
            c.task("task-0000000000")
        with pytest.raises(InvalidRequestError) as bad:
            agent.shell("true", timeout_s=-1)
        assert bad.value.status == 422 and "timeout_s" in bad.value.message
    with api.client("not-a-key") as c, pytest.raises(AuthError) as auth:
        c.agents()
    assert (auth.value.status, auth.value.code) == (401, "unauthorized")


def test_async_client(api: Api, agent: Agent) -> None:
    async def run() -> None:
        async with AsyncClient(api.url, api.key, timeout=60) as c:
            same = await c.agent(agent.id)
            task = await same.assign("echo", script=ECHO)
            await task.wait(timeout=60, progress=False)
            assert task.state == TaskState.SUCCEEDED and task.result == "hello-from-light"
            assert (await same.screenshot())[:8] == PNG_MAGIC

    asyncio.run(run())


def test_the_command_line_reads_the_api(api: Api, agent: Agent) -> None:
    """The ``orchestrator`` command of this environment (the light one in the fresh
    virtualenv) lists the tenant's agents."""
    command = Path(sys.executable).parent / "orchestrator"
    env = {**os.environ, "ORCHESTRATOR_API_URL": api.url, "ORCHESTRATOR_API_KEY": api.key}
    done = subprocess.run(
        [str(command), "agents"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and agent.id in done.stdout, done.stdout + done.stderr


def test_fire(api: Api, agent: Agent) -> None:
    agent.fire()
    assert agent.refresh().info.status == AgentStatus.STOPPED
    with pytest.raises(NotFoundError):
        agent.screenshot()


# ---------------------------------------------------------------------- the fresh virtualenv


_NOT_INSTALLED = """
import importlib.metadata, importlib.util, json, sys
runtime = json.loads(sys.argv[1])
found = {}
for dist, module in runtime.items():
    try:
        found[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    if importlib.util.find_spec(module) is not None:
        found[module] = "importable"
import orchestrator.sdk
print(json.dumps({"found": found, "orchestrator": orchestrator.__file__}))
"""

_START_LOCAL = """
from orchestrator.sdk import start_local
try:
    start_local()
except ModuleNotFoundError as e:
    print(e)
"""


def _copy_project(dst: Path) -> Path:
    """What ``pip install .`` reads (setuptools' packages and metadata), without caches."""
    root = Path(__file__).resolve().parents[2]
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, dst / name)
    for package in ("orchestrator", "actors", "serve_app"):
        shutil.copytree(root / package, dst / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _run(
    cmd: list[str], *, timeout_s: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to its end; fail with its output unless it succeeds."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=cwd)
    assert done.returncode == 0, f"{cmd[:4]} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


@pytest.mark.skipif(IN_FRESH_VENV, reason="the fresh virtualenv's own run")
def test_in_a_fresh_virtualenv(api: Api, tmp_path: Path) -> None:
    source = _copy_project(tmp_path / "src")
    venv = tmp_path / "venv"
    # The base interpreter, not this virtualenv's packages (no --system-site-packages).
    _run([sys.executable, "-m", "venv", str(venv)], timeout_s=60)
    python = str(venv / "bin" / "python")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # pip may reach PyPI; its cache keeps this to seconds on a machine that installed before.
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, str(source), "pytest"], timeout_s=240, env=clean, cwd=tmp_path)

    # -I: no current directory on the path (a /tmp/ray left by Ray would import as a package).
    done = _run([python, "-I", "-c", _NOT_INSTALLED, json.dumps(RUNTIME)], timeout_s=60, env=clean)
    report = json.loads(done.stdout)
    assert report["found"] == {}, f"the light install brought the runtime: {report['found']}"
    assert report["orchestrator"].startswith(str(venv)), report  # the installed copy

    done = _run([python, "-I", "-c", _START_LOCAL], timeout_s=60, env=clean)
    assert "pip install 'orchestrator[runtime]'" in done.stdout, done.stdout

    # This file's SDK tests, alone in a directory of their own, with the fresh pytest.
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy2(__file__, tests / "test_sdk_light.py")
    (tests / "pytest.ini").write_text("[pytest]\nmarkers =\n    integration: needs the real API\n")
    env = {**clean, URL_ENV: api.url, KEY_ENV: api.key}
    done = _run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "test_sdk_light.py"],
        timeout_s=240,
        env=env,
        cwd=tests,
    )
    assert "7 passed, 1 skipped" in done.stdout, done.stdout
