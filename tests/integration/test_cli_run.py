"""`orchestrator run "<words>"` through the CLI (a subprocess of the installed command), on
the real thing: the run starts a Ray of its own (the test session's cluster is not touched),
hires an agent with a real desktop, and its brain talks to a fake OpenAI-compatible server
named by the environment, as a person's would (OPENAI_BASE_URL / OPENAI_API_KEY /
ORCHESTRATOR_MODEL). ``--family`` and ``--model`` pick another family's brain.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import (
    CHAT,
    FakeOpenAIServer,
    chat_json,
    chat_text,
    chat_tool_calls,
    tool_call,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CLI = str(Path(sys.executable).parent / "orchestrator")
RUN_TIMEOUT_S = 180
"""A run with a Ray of its own: the head starts (about 10-20 s on 2 cores), one desktop."""
KEY = "sk-cli-run-test"


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        await server.close()


def run_cli(
    tmp_path: Path, image: str, model: FakeOpenAIServer, *args: str, name: str
) -> subprocess.CompletedProcess[str]:
    """``orchestrator run ARGS`` with the environment pointing at the fake model, a data
    directory of its own (so no local cluster of `orchestrator up` is found) and no
    RAY_ADDRESS (so the run starts its own Ray)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "ORCHESTRATOR_API_URL", "ORCHESTRATOR_API_KEY")
    }
    env.update(
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"),
        ORCHESTRATOR_DESKTOP_IMAGE=image,
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY=KEY,
        ORCHESTRATOR_MODEL=name,
    )
    return subprocess.run(
        [CLI, "run", *args, "--out", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=tmp_path,
    )


async def test_run_words_with_the_default_family(
    tmp_path: Path, desktop_image: str, model: FakeOpenAIServer
) -> None:
    model.add(
        chat_json({"decision": "do", "reason": "a shell command is enough"}),
        chat_tool_calls(
            tool_call("shell", {"command": "echo made-by-cli > ~/cli.txt && cat ~/cli.txt"})
        ),
        chat_tool_calls(tool_call("done", {"result": "wrote ~/cli.txt: made-by-cli"})),
    )
    done = run_cli(tmp_path, desktop_image, model, "write a file with the shell", name="gpt-x")

    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    model.verify()
    out = done.stdout
    assert "SUCCEEDED" in out and "wrote ~/cli.txt: made-by-cli" in out, out
    assert "shell echo made-by-cli" in out and "-> ok" in out, out  # the step, as it happened
    bodies = model.bodies(CHAT)
    assert [b["model"] for b in bodies] == ["gpt-x"] * 3
    assert {r.headers["authorization"] for r in model.requests} == {f"Bearer {KEY}"}
    # the model was told the task in the person's words, and its shell step really ran
    assert "write a file with the shell" in str(bodies[0]["messages"])
    tool_answers = [m for m in bodies[2]["messages"] if m["role"] == "tool"]
    assert "made-by-cli" in tool_answers[0]["content"]
    assert list((tmp_path / "out").glob("*.png")), "no screenshot saved"


async def test_run_words_with_another_family(
    tmp_path: Path, desktop_image: str, model: FakeOpenAIServer
) -> None:
    """``--family uitars --model UI-TARS-1.5-7B``: the text protocol, no tools sent."""
    model.add(
        chat_text("Thought: open a terminal.\nAction: hotkey(key='ctrl alt t')"),
        chat_text("Thought: it is open.\nAction: finished(content='a terminal is open')"),
    )
    done = run_cli(
        tmp_path,
        desktop_image,
        model,
        "open a terminal",
        "--family",
        "uitars",
        "--model",
        "UI-TARS-1.5-7B",
        name="not-this-one",
    )

    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    model.verify()
    assert "SUCCEEDED" in done.stdout and "a terminal is open" in done.stdout, done.stdout
    bodies = model.bodies(CHAT)
    assert bodies and all(b["model"] == "UI-TARS-1.5-7B" for b in bodies)
    assert all("tools" not in b for b in bodies)


def test_family_and_model_are_for_words_only(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("agent: {name: a}\ntask: {description: x}\n")
    bad = [
        ([str(plan), "--family", "uitars"], "--family and --model are for a task in words"),
        (["do something", "--family", "gemini"], "--family 'gemini': not one of chat-tools"),
    ]
    for args, message in bad:
        done = subprocess.run(
            [CLI, "run", *args],
            env={**os.environ, "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert message in done.stderr, done.stderr
