"""Every code block of README.md, run or checked, so that the README and reality cannot drift.

Each fenced block is cut into units: a python block is one unit, a shell block one unit per
command line. Every unit must match exactly one entry of ``RULES``, which says how it is run
(as written, or with the values a test must change: ports, keys, ``--smoke``) or why it is only
checked; a unit no rule matches fails, so a new README block is covered on purpose.

They run in a work directory that looks like the checkout (its files linked, ``out/`` its
own), against a local cluster of the test's own (``orchestrator up`` on free loopback ports,
in a temporary data directory) where they need one, with a fake OpenAI-compatible model for
the block whose agent has a model brain.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, chat_json, chat_tool_calls, tool_call
from tests.integration.serve_api import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BIN = Path(sys.executable).parent
UP_TIMEOUT_S = 240


@dataclass(frozen=True)
class Unit:
    """One runnable piece of the README: a python block, or one shell command."""

    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}"


def units(text: str) -> list[Unit]:
    """The README's fenced blocks: python whole, shell command by command (comments cut, a
    command continued with ``\\`` joined into one)."""
    out: list[Unit] = []
    fence = re.compile(r"^```(\w*)\s*$")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = fence.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start, body = m.group(1) or "text", i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if lang in ("sh", "bash", "shell", "console"):
            joined: list[str] = []  # the lines of one command (ended by ``\\``, continued)
            for n, raw in enumerate(body):
                joined.append(raw.rstrip()[:-1] if raw.rstrip().endswith("\\") else raw)
                if raw.rstrip().endswith("\\") and n + 1 < len(body):
                    continue
                command = " ".join(_strip_comment(x).strip() for x in joined).strip()
                if command:
                    out.append(Unit(start + n + 2 - len(joined), "sh", command))
                joined = []
        else:
            out.append(Unit(start + 1, lang, "\n".join(body) + "\n"))
    return out


def _strip_comment(line: str) -> str:
    """A shell line without its trailing ``# comment`` (a ``#`` inside quotes stays)."""
    quote = None
    for pos, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (pos == 0 or line[pos - 1].isspace()):
            return line[:pos]
    return line


# ---------------------------------------------------------------------- the environment


class Env:
    """The work directory, the environment every unit runs with, and the local cluster."""

    def __init__(self, root: Path, desktop_image: str) -> None:
        self.work = root / "work"
        self.work.mkdir()
        for entry in REPO.iterdir():
            if entry.name not in ("out", ".git"):
                (self.work / entry.name).symlink_to(entry)
        self.data_dir = root / "data"
        self.vars = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "ORCHESTRATOR_API_URL", "ORCHESTRATOR_API_KEY")
        }
        self.vars["ORCHESTRATOR_DATA_DIR"] = str(self.data_dir)
        self.vars["ORCHESTRATOR_DESKTOP_IMAGE"] = desktop_image
        self.api_port = self.dashboard_port = 0
        self.api_key = ""
        self.agent_id = ""
        self.model: FakeOpenAIServer | None = None

    def run(
        self, args: list[str] | str, timeout_s: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args,
            shell=isinstance(args, str),
            cwd=self.work,
            env={**self.vars, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        return done

    def python(
        self, code: str, timeout_s: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        path = self.work / "out" / f"block-{abs(hash(code))}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(code)
        return self.run([sys.executable, str(path)], timeout_s, env)

    def up(self) -> None:
        self.model = FakeOpenAIServer().start()
        self.vars.update(
            OPENAI_BASE_URL=self.model.base_url,
            OPENAI_API_KEY="sk-readme-test",
            ORCHESTRATOR_MODEL="fake-model",
        )
        self.api_port, self.dashboard_port = free_port(), free_port()
        self.run(
            [
                str(BIN / "orchestrator"),
                "up",
                "--port",
                str(self.api_port),
                "--dashboard-port",
                str(self.dashboard_port),
                "--desktops",
                "6",
            ],
            UP_TIMEOUT_S,
        )
        self.api_key = (self.data_dir / "api-key").read_text().strip()

    def down(self) -> None:
        try:
            subprocess.run(
                [str(BIN / "orchestrator"), "down"],
                env=self.vars,
                capture_output=True,
                timeout=180,
            )
        finally:
            if self.model is not None:
                asyncio.run(self.model.close())

    def cluster_env(self) -> dict[str, str]:
        """What a driver of the local cluster needs (``orchestrator.local.driver_env``)."""
        from orchestrator import local

        state = json.loads((self.data_dir / local.STATE_FILE).read_text())
        return {**local.driver_env(), "RAY_ADDRESS": state["ray_address"]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, desktop_image: str) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("readme"), desktop_image)
    yield e
    if e.api_port:
        e.down()


@pytest.fixture(scope="module")
def cluster(env: Env) -> Env:
    env.up()
    return env


# ---------------------------------------------------------------------- how each unit runs

Runner = Callable[[pytest.FixtureRequest, Unit], None]


def _env(request: pytest.FixtureRequest) -> Env:
    e: Env = request.getfixturevalue("env")
    return e


def _cluster(request: pytest.FixtureRequest) -> Env:
    e: Env = request.getfixturevalue("cluster")
    return e


def run_setup_and_main_job(request: pytest.FixtureRequest, unit: Unit) -> None:
    """``scripts/setup.sh`` (idempotent: seconds once set up) and the main job, which runs on
    the local cluster when one is up, as the README says."""
    e = _cluster(request)
    done = e.run(unit.text, 600)
    assert "SUCCEEDED" in done.stdout, done.stdout[-3000:]
    assert list((e.work / "out" / "web_server").glob("*.png")), done.stdout[-3000:]


def check_test_script(request: pytest.FixtureRequest, unit: Unit) -> None:
    """``scripts/test.sh`` runs this suite, so it cannot run inside it: it exists, is
    executable, runs ruff, mypy and pytest, and is what CI calls."""
    script = REPO / "scripts" / "test.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "ruff" in text and "mypy" in text and "pytest" in text
    assert re.search(r"^exec scripts/test\.sh\b", (REPO / ".ci" / "run").read_text(), re.M)


def run_bench_smoke(request: pytest.FixtureRequest, unit: Unit) -> None:
    """A benchmark in its smoke mode (a few samples: it works, its figures mean nothing)."""
    e = _env(request)
    done = e.run(f"{unit.text} --smoke", 300)
    out = re.search(r"--json (\S+)", unit.text)
    assert out is not None
    metrics = json.loads((e.work / out.group(1)).read_text())["metrics"]
    assert metrics, done.stdout


def run_ray_list_actors(request: pytest.FixtureRequest, unit: Unit) -> None:
    """Ray's CLI on the local cluster: the dashboard's port is the test cluster's."""
    e = _cluster(request)
    assert "127.0.0.1:8265" in unit.text
    command = unit.text.replace("127.0.0.1:8265", f"127.0.0.1:{e.dashboard_port}")
    done = e.run(command, 60)
    assert "_system/recorder" in done.stdout, done.stdout


def run_gc_dry(request: pytest.FixtureRequest, unit: Unit) -> None:
    """``orchestrator gc`` on the local cluster's records (its data directory)."""
    e = _cluster(request)
    done = e.run(unit.text, 60)
    assert "would remove" in done.stdout and "reclaimed" in done.stdout, done.stdout


def run_desktop_block(request: pytest.FixtureRequest, unit: Unit) -> None:
    """Self-contained: run as written (it starts and stops its own desktop)."""
    e = _env(request)
    done = e.python(unit.text, 120)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("0 "), done.stdout  # the exit code of `ls -la ~`
    assert lines[-1].startswith("http://127.0.0.1:"), done.stdout  # the live view
    assert (e.work / "shot.jpg").read_bytes()[:2] == b"\xff\xd8"


def run_runtime_block(request: pytest.FixtureRequest, unit: Unit) -> None:
    """Top-level ``await``, as in a notebook or ``python -m asyncio``: run so, on the local
    cluster ("or an existing cluster's address": RAY_ADDRESS), its OpenAI brain answered by a
    fake model (the cluster's processes have OPENAI_BASE_URL)."""
    e = _cluster(request)
    assert e.model is not None
    e.model.add(
        chat_json({"decision": "do", "reason": "one step"}),
        chat_tool_calls(tool_call("done", {"result": "nginx serves the page"})),
    )
    runner = textwrap.dedent(
        f"""
        import ast, asyncio
        source = {unit.text!r}
        code = compile(source, "README", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

        async def main():
            result = eval(code, {{"__name__": "__main__"}})
            if result is not None:
                await result

        asyncio.run(main())
        """
    )
    done = e.python(runner, 180, e.cluster_env())
    assert done.stdout.strip().splitlines()[-1] == "nginx serves the page", done.stdout
    e.model.verify()


def check_notebook_block(request: pytest.FixtureRequest, unit: Unit) -> None:
    """The main job from a notebook: the README's cell is ``examples/notebook.py`` (without
    its comment line), which tests/integration/test_notebook.py runs as written."""
    cell = (REPO / "examples" / "notebook.py").read_text().splitlines()
    code = [x for x in cell if not x.startswith("#")]
    assert unit.text.strip().splitlines() == code


def run_sdk_block(request: pytest.FixtureRequest, unit: Unit) -> None:
    """The SDK on the local cluster's API: its URL and key replace the placeholders (and the
    agent is fired after, so that the block can run again)."""
    e = _cluster(request)
    code = unit.text.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{e.api_port}")
    code = code.replace('api_key="KEY"', f"api_key={e.api_key!r}")
    assert code != unit.text
    done = e.python(code + "agent.fire()\n", 180)
    assert re.search(r"^\d+ step .*hi", done.stdout, re.M), done.stdout
    assert (e.work / "notes.txt").read_text() == "hello"


def check_brain_configs_block(request: pytest.FixtureRequest, unit: Unit) -> None:
    """The *Models* examples: each line builds a valid ``BrainConfig`` of the family it shows
    (nothing is called: the models are not reachable here)."""
    from orchestrator.brains._spaces import space_of
    from orchestrator.domain import BrainConfig

    made: list[BrainConfig] = []

    def build(**fields: Any) -> BrainConfig:
        made.append(BrainConfig(**fields))
        return made[-1]

    vllm = "http://127.0.0.1:8001/v1"
    exec(compile(unit.text, "README", "exec"), {"BrainConfig": build, "VLLM": vllm})
    assert [(c.resolved_family, space_of(c).kind) for c in made] == [
        ("uitars", "grid"),
        ("anthropic", "fixed"),
        ("openai-responses", "native"),
        ("uitars", "grid"),
    ]
    assert made[0].base_url == vllm
    assert made[3].planner is not None and made[3].planner.model == "gpt-4.1"


def _agent_id(e: Env) -> str:
    """An idle agent of the test cluster for the blocks that name ``AGENT_ID`` (made once)."""
    if not e.agent_id:
        from orchestrator.sdk import Client

        with Client(f"http://127.0.0.1:{e.api_port}", api_key=e.api_key) as api:
            e.agent_id = api.create_agent("readme-console", role="tester").id
    return e.agent_id


def run_console_session(request: pytest.FixtureRequest, unit: Unit) -> None:
    """The console's sign-in with ``curl``, for real, on the test cluster: ``$API`` is its URL,
    ``$ORCHESTRATOR_API_KEY`` its key, ``AGENT_ID`` an agent of it; ``cookies.txt`` is kept in
    the work directory from one command to the next, as in a shell."""
    e = _cluster(request)
    if unit.text.startswith("API="):
        assert unit.text == "API=http://127.0.0.1:8000"
        return
    api = f"http://127.0.0.1:{e.api_port}"
    command = unit.text.replace("AGENT_ID", _agent_id(e))
    if " -X POST $API/v1/session " in command:  # the sign-in first, when run alone
        (e.work / "cookies.txt").unlink(missing_ok=True)
    elif not (e.work / "cookies.txt").exists():
        sign_in = 'curl -s -X POST $API/v1/session -d "{\\"key\\": \\"$ORCHESTRATOR_API_KEY\\"}"'
        e.run(
            f"{sign_in} -H 'Content-Type: application/json' -c cookies.txt",
            30,
            {"API": api, "ORCHESTRATOR_API_KEY": e.api_key},
        )
    out = e.run(command, 30, {"API": api, "ORCHESTRATOR_API_KEY": e.api_key}).stdout
    if " -X POST $API/v1/session " in unit.text:
        assert out.startswith("HTTP/1.1 200") and '"tenant":"default"' in out, out
        assert "orch_session=" in out and "HttpOnly" in out and "SameSite=strict" in out, out
    elif unit.text.startswith("curl -s $API/v1/session "):
        assert json.loads(out)["tenant"] == "default" and json.loads(out)["holder"], out
    elif "$API/v1/agents " in unit.text:
        assert any(a["id"] == e.agent_id for a in json.loads(out)), out
    elif "/tickets " in unit.text:
        ticket = json.loads(out)
        assert ticket["mode"] == "view" and ticket["ticket"], out
        assert ticket["relay_path"].startswith(f"/v1/agents/{e.agent_id}/vnc?ticket="), out
    else:
        assert "DELETE" in unit.text and out.startswith("HTTP/1.1 204"), out
        (e.work / "cookies.txt").unlink()


def run_lease_block(request: pytest.FixtureRequest, unit: Unit) -> None:
    """Take over and hand back from the SDK, for real, on an idle agent of the test cluster
    (the URL, key and agent id replace the placeholders; the lease is checked after)."""
    e = _cluster(request)
    code = unit.text.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{e.api_port}")
    code = code.replace('api_key="KEY"', f"api_key={e.api_key!r}")
    code = code.replace('"AGENT_ID"', repr(_agent_id(e)))
    assert code.count(e.api_key) == 1 and code.count(e.agent_id) == 1, code
    check = "assert lease.expires_at and agent.lease() is None\nprint('handed back')\n"
    done = e.python(code + check, 120)
    assert done.stdout.strip().endswith("handed back"), done.stdout


def run_takeover_cli(request: pytest.FixtureRequest, unit: Unit) -> None:
    """``takeover`` / ``handback`` for real on an idle agent of the test cluster (the local
    cluster's URL and key are the CLI's defaults); ``handback`` takes the lease first, so it
    also runs alone."""
    e = _cluster(request)
    agent = _agent_id(e)
    command = unit.text.replace("AGENT_ID", agent)
    if " handback " in command:
        e.run([str(BIN / "orchestrator"), "takeover", agent, "--ttl", "60"], 60)
    done = e.run(command, 60)
    said = "handed back" if " handback " in command else "taken over by"
    assert f"agent {agent}: {said}" in done.stdout, done.stdout


def run_console_script(request: pytest.FixtureRequest, unit: Unit) -> None:
    """``scripts/console.sh``, for real (the build is skipped when the sources did not change)."""
    e = _env(request)
    done = e.run(unit.text, 600)
    if unit.text.endswith(" size"):
        assert 10 < float(done.stdout.strip()) < 400, done.stdout


def check_browser_tests(request: pytest.FixtureRequest, unit: Unit) -> None:
    """The browser tests are part of the suite that runs this test, so they are not run from
    it: the marker is registered and every test module of ``tests/browser`` carries it."""
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^\s*"browser: ', pyproject, re.M)
    modules = sorted((REPO / "tests" / "browser").glob("test_*.py"))
    assert modules
    for module in modules:
        assert "pytest.mark.browser" in module.read_text(), module


def _cli_parses(args: list[str]) -> None:
    """``orchestrator ARGS`` parses with the CLI as it is (options, types, ranges): nothing runs."""
    import click

    from orchestrator.cli import main

    cmd: click.Command = main
    rest = list(args)
    while isinstance(cmd, click.Group):
        name = rest.pop(0)
        sub = cmd.get_command(click.Context(cmd), name)
        assert sub is not None, (args, name)
        cmd = sub
    cmd.make_context(cmd.name or "", rest)


def check_autoscale_up(request: pytest.FixtureRequest, unit: Unit) -> None:
    """A second local cluster beside the test's is not started here (``up`` would show the
    running one); tests/integration/test_autoscale.py runs ``up --autoscale`` for real. Here:
    the command parses with the CLI, every option named."""
    words = unit.text.split()
    assert words[:3] == [".venv/bin/orchestrator", "up", "--autoscale"], words
    _cli_parses(words[1:])
    assert (REPO / "tests" / "integration" / "test_autoscale.py").exists()


def check_autoscale_block(request: pytest.FixtureRequest, unit: Unit) -> None:
    """Needs a cluster of ``up --autoscale`` (tests/integration/test_autoscale.py hires a team
    beyond the head's desktops on one, for real): compiled, and what it calls exists."""
    from orchestrator.sdk import Agent, Client, start_local

    compile(unit.text, "README", "exec")
    assert callable(start_local) and hasattr(Client, "create_agent")
    assert all(hasattr(Agent, name) for name in ("hire", "shell", "fire"))


def check_offsite(request: pytest.FixtureRequest, unit: Unit) -> None:
    """Needs what this machine does not have (a cloud account, Kubernetes, a registry), so
    not run: every file of the repository it names exists, every ``orchestrator`` command in
    it parses with the CLI, and the registry ``sed`` replaces is the manifest's."""
    for path in re.findall(r"(?<![\w/~])((?:examples|scripts)/[\w./-]*\w)", unit.text):
        assert (REPO / path).exists(), path
    for found in re.findall(r"\.venv/bin/orchestrator ([^)'\"]+)", unit.text):
        _cli_parses(found.split())
    sed = re.match(r'^sed -i "s#([^#]+)#\$REG#" (\S+)$', unit.text)
    if sed:
        assert sed.group(1) in (REPO / sed.group(2)).read_text()
    if unit.text.startswith("helm install "):
        version = unit.text.split("--version ")[1]
        assert f"v{version}" in (REPO / "tests" / "fixtures" / "kuberay" / "SOURCE.md").read_text()


RULES: list[tuple[str, str, Runner]] = [
    # (lang, a regex the unit's text must match, how it runs)
    (
        "sh",
        r"^scripts/setup\.sh && \.venv/bin/orchestrator run examples/web_server\.yaml$",
        run_setup_and_main_job,
    ),
    ("sh", r"^scripts/test\.sh$", check_test_script),
    ("sh", r"^\.venv/bin/python bench/\w+\.py --json out/[\w.-]+\.json$", run_bench_smoke),
    (
        "sh",
        r"^RAY_ADDRESS=http://127\.0\.0\.1:8265 RAY_AUTH_MODE=token \.venv/bin/ray list actors$",
        run_ray_list_actors,
    ),
    ("sh", r"^\.venv/bin/orchestrator gc --older-than \w+ --dry-run$", run_gc_dry),
    ("python", r"async with await Desktop\.start\(", run_desktop_block),
    ("python", r"rt = Runtime\.connect\(\)", run_runtime_block),
    ("python", r'api\.start_workflow\("examples/web_server\.yaml"\)', check_notebook_block),
    (
        "python",
        r'api = Client\("http://127\.0\.0\.1:8000", api_key="KEY"\)\nagent = api\.create_agent',
        run_sdk_block,
    ),
    ("python", r"agent\.take_over\(", run_lease_block),
    ("python", r"lead\.hire\(", check_autoscale_block),
    ("sh", r"^(API=http|curl -si? (-X \w+ )?\$API/v1/)", run_console_session),
    ("sh", r"^\.venv/bin/orchestrator (takeover|handback) AGENT_ID ", run_takeover_cli),
    ("sh", r"^scripts/console\.sh (build|test|size)$", run_console_script),
    ("sh", r'^\.venv/bin/pytest (tests/browser|-m "not browser") -q$', check_browser_tests),
    ("sh", r"^\.venv/bin/orchestrator up --autoscale ", check_autoscale_up),
    (
        "sh",
        r"^(ray (get-auth-token|up|exec|attach) |scripts/setup\.sh$|REG=|KEY=|docker (tag|push) "
        r"|DOCKER_BUILDKIT=1 docker build |sed -i |helm |kubectl |ORCHESTRATOR_API_URL=)",
        check_offsite,
    ),
    ("python", r'^BrainConfig\(kind="openai", family="uitars"', check_brain_configs_block),
]


def _rule(unit: Unit) -> Runner:
    found = [
        run
        for lang, pattern, run in RULES
        if lang == unit.lang and re.search(pattern, unit.text, re.M)
    ]
    if len(found) != 1:
        raise AssertionError(
            f"README.md line {unit.line}: {len(found)} rules match this {unit.lang} block "
            f"(want exactly one): add it to RULES in {Path(__file__).name}, with how it runs "
            f"or why it cannot run here:\n{unit.text}"
        )
    return found[0]


UNITS = units(README.read_text())


def test_the_readme_has_blocks_and_every_one_is_covered() -> None:
    assert len(UNITS) >= 8
    for unit in UNITS:
        _rule(unit)


@pytest.mark.parametrize("unit", UNITS, ids=[u.id for u in UNITS])
def test_readme_block(unit: Unit, request: pytest.FixtureRequest) -> None:
    _rule(unit)(request, unit)


def test_units_cut_shell_blocks_into_commands() -> None:
    text = (
        "x\n```sh\na --b  # c\n\n'#x' d # e\nf \\\n  -g \\\n  h  # i\n```\n"
        "```python\nprint(1)  # k\n```\n"
    )
    assert units(text) == [
        Unit(3, "sh", "a --b"),
        Unit(5, "sh", "'#x' d"),
        Unit(6, "sh", "f -g h"),
        Unit(11, "python", "print(1)  # k\n"),
    ]
