"""A brain of each model family completes a small task on a real desktop, at 1280x800 and at
1920x1080: real Ray actors, real Docker desktops, the family's real brain and SDK client;
only the model is a fake (a local HTTP server serving scripted replies in the family's wire
format and recording every request).

The task, "open the terminal and create a file", in four replies:

1. the hotkey Ctrl+Alt+T (openbox opens xterm, desktop_image/openbox/keys.xml);
2. a click inside the xterm window, at a point written in the model's own coordinate space;
3. typing ``touch ~/made-by-<family>`` and Enter, as the family writes it;
4. the end (``done``, a final message, ``finished()``, ``terminate``).

Where the click lands is deterministic: openbox places a new window under the mouse, which
is at the middle of a fresh desktop, so xterm's 484x316 window sits around the centre (its
client area starts at (399, 254) at 1280x800 and (719, 394) at 1920x1080). The click target
is the screen pixel ``TARGET`` inside it; ``CLICKS`` holds, worked out by hand from the
coordinate rules (an integer model point names the screen pixel under its centre,
``floor((2m + 1) * S / (2M))``), the model's point for each space and the screen pixel it
must land on. The tests assert the task succeeded, the file exists on the desktop, every
screenshot the fake received has the family's image size (and a Qwen prompt declares the
size it answers in), and the cursor after the click is at the expected pixel, inside xterm.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image

from orchestrator import coords
from orchestrator.brains import _spaces
from orchestrator.domain import AgentSpec, BrainConfig, EventKind, TaskSpec, TaskState
from tests.fakes import anthropic_server as ant
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import (
    FakeOpenAIServer,
    Reply,
    chat_json,
    chat_text,
    chat_tool_calls,
    computer_call_item,
    message_item,
    responses_reply,
    tool_call,
)

pytestmark = pytest.mark.timeout(240)

Size = tuple[int, int]
SIZES: tuple[Size, ...] = ((1280, 800), (1920, 1080))

TARGET: dict[Size, Size] = {(1280, 800): (519, 354), (1920, 1080): (839, 494)}
"""The screen pixel to click at each size: inside xterm's client area, away from the centre
(where the cursor starts), so a click that is not mapped, or mapped wrong, lands elsewhere."""

CLICKS: dict[tuple[str, Size], tuple[Size, Size]] = {
    # (space, screen): (the model's point, the screen pixel it lands on), worked by hand.
    # native: model pixels are screen pixels
    ("native", (1280, 800)): ((519, 354), (519, 354)),
    ("native", (1920, 1080)): ((839, 494), (839, 494)),
    # Anthropic's rule: 1280x800 is WXGA itself (sent as is); 1920x1080 is shown as FWXGA
    # 1366x768: x = (2*597+1)*1920 // (2*1366) = 2294400 // 2732 = 839,
    #           y = (2*351+1)*1080 // (2*768) = 759240 // 1536 = 494
    ("fixed", (1280, 800)): ((519, 354), (519, 354)),
    ("fixed", (1920, 1080)): ((597, 351), (839, 494)),
    # smart_resize, factor 28: 1280x800 -> 1288x812, 1920x1080 -> 1932x1092
    #   x = 1045*1280 // 2576 = 519, y = 719*800 // 1624 = 354
    #   x = 1689*1920 // 3864 = 839, y = 999*1080 // 2184 = 494
    ("grid", (1280, 800)): ((522, 359), (519, 354)),
    ("grid", (1920, 1080)): ((844, 499), (839, 494)),
    # 0..1000: x = 811*1280 // 2000 = 519, y = 885*800 // 2000 = 354;
    #          x = 875*1920 // 2000 = 840 (a 1000-step grid is coarser), y = 915*1080 // 2000 = 494
    ("norm", (1280, 800)): ((405, 442), (519, 354)),
    ("norm", (1920, 1080)): ((437, 457), (840, 494)),
}

IMAGE_SIZES: dict[tuple[str, Size], Size] = {
    # (space of the family's model, screen): the screenshot the model must be sent
    ("native", (1280, 800)): (1280, 800),
    ("native", (1920, 1080)): (1920, 1080),
    ("fixed", (1280, 800)): (1280, 800),
    ("fixed", (1920, 1080)): (1366, 768),
    ("grid28", (1280, 800)): (1288, 812),
    ("grid28", (1920, 1080)): (1932, 1092),
    # Qwen3-VL: 0..1000 replies about an image resized on a 32-pixel grid
    ("grid32", (1280, 800)): (1280, 800),
    ("grid32", (1920, 1080)): (1920, 1088),
}


# ---------------------------------------------------------------------- the families


@dataclass(frozen=True)
class Case:
    """One family (and version) as the table of these tests has it: how to configure its
    brain, the replies that do the task in its wire format, and its spaces."""

    name: str
    """Test id; the file the task creates is ``~/made-by-<name>``."""
    family: str
    model: str
    space: str
    """Key of ``CLICKS``: ``native``, ``fixed``, ``grid`` or ``norm``."""
    image: str
    """Key of ``IMAGE_SIZES``."""
    replies: Callable[[Size, str], list[Any]]
    """The scripted replies, from the click's model point and the file's name."""
    server: str = "openai"
    """Which fake answers: ``openai`` or ``anthropic``."""
    extra: dict[str, Any] = field(default_factory=dict)


def chat_tools_replies(point: Size, name: str) -> list[Reply]:
    x, y = point
    return [
        chat_json({"decision": "do", "reason": "one terminal"}),
        chat_tool_calls(tool_call("keypress", {"keys": ["ctrl", "alt", "t"]})),
        chat_tool_calls(tool_call("click", {"x": x, "y": y})),
        chat_tool_calls(
            tool_call("type", {"text": f"touch ~/{name}"}),
            tool_call("keypress", {"keys": ["Return"]}),
        ),
        chat_tool_calls(tool_call("done", {"result": f"created ~/{name}"})),
    ]


def responses_replies(point: Size, name: str) -> list[Reply]:
    x, y = point
    return [
        responses_reply(message_item(json.dumps({"decision": "do", "reason": "one terminal"}))),
        responses_reply(computer_call_item({"type": "keypress", "keys": ["CTRL", "ALT", "T"]})),
        responses_reply(computer_call_item({"type": "click", "button": "left", "x": x, "y": y})),
        responses_reply(
            computer_call_item(
                [
                    {"type": "type", "text": f"touch ~/{name}"},
                    {"type": "keypress", "keys": ["ENTER"]},
                ]
            )
        ),
        responses_reply(message_item(f"created ~/{name}")),
    ]


def anthropic_replies(point: Size, name: str) -> list[Reply]:
    x, y = point
    return [
        ant.text_message(json.dumps({"decision": "do", "reason": "one terminal"})),
        ant.message(ant.computer("key", text="ctrl+alt+t")),
        ant.message(ant.computer("left_click", coordinate=[x, y])),
        ant.message(
            ant.computer("type", text=f"touch ~/{name}"), ant.computer("key", text="Return")
        ),
        ant.text_message(f"created ~/{name}"),
    ]


def uitars_replies(point: Size, name: str) -> list[Reply]:
    x, y = point
    return [
        chat_text("Thought: open a terminal first.\nAction: hotkey(key='ctrl alt t')"),
        chat_text(f"Thought: focus the terminal.\nAction: click(start_box='({x},{y})')"),
        chat_text(f"Thought: make the file.\nAction: type(content='touch ~/{name}\\n')"),
        chat_text(f"Thought: the file is there.\nAction: finished(content='created ~/{name}')"),
    ]


def _qwen_call(arguments: dict[str, Any]) -> str:
    call = json.dumps({"name": "computer_use", "arguments": arguments})
    return f"<tool_call>\n{call}\n</tool_call>"


def qwen_replies(point: Size, name: str) -> list[Reply]:
    x, y = point
    calls = [
        ("Open a terminal.", {"action": "key", "keys": ["ctrl", "alt", "t"]}),
        ("Focus it.", {"action": "left_click", "coordinate": [x, y]}),
        ("Type the command.", {"action": "type", "text": f"touch ~/{name}"}),
        ("Run it.", {"action": "key", "keys": ["enter"]}),
        ("Done.", {"action": "terminate", "status": "success"}),
    ]
    return [chat_text(f"{thought}\n{_qwen_call(args)}") for thought, args in calls]


def opencua_replies(point: Size, name: str) -> list[Reply]:
    x, y = point

    def code(thought: str, body: str) -> Reply:
        return chat_text(f"## Thought\n{thought}\n\n## Code\n```python\n{body}\n```")

    return [
        code("Open a terminal.", "pyautogui.hotkey('ctrl', 'alt', 't')"),
        code("Focus it.", f"pyautogui.click(x={x}, y={y})"),
        code("Make the file.", f"pyautogui.write('touch ~/{name}')\npyautogui.press('enter')"),
        code("Done.", "computer.terminate(status='success')"),
    ]


CASES: list[Case] = [
    Case("chat-tools", "chat-tools", "fake-computer-user", "native", "native", chat_tools_replies),
    Case(
        "openai-responses",
        "openai-responses",
        "computer-use-preview",
        "native",
        "native",
        responses_replies,
        extra={"mode": "responses"},
    ),
    Case(
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "fixed",
        "fixed",
        anthropic_replies,
        server="anthropic",
    ),
    Case("uitars-1.5", "uitars", "UI-TARS-1.5-7B", "grid", "grid28", uitars_replies),
    Case("uitars-1.0", "uitars", "UI-TARS-7B-DPO", "norm", "grid28", uitars_replies),
    Case("qwen2.5-vl", "qwen-vl", "Qwen2.5-VL-7B-Instruct", "grid", "grid28", qwen_replies),
    Case("qwen3-vl", "qwen-vl", "Qwen3-VL-8B-Instruct", "norm", "grid32", qwen_replies),
    Case("opencua", "opencua", "OpenCUA-7B", "grid", "grid28", opencua_replies),
]


# ---------------------------------------------------------------------- helpers


def images_in(body: Any) -> list[Image.Image]:
    """Every image a request carried, wherever it sits: ``data:`` URLs (OpenAI's APIs) and
    base64 sources (Anthropic's)."""
    found: list[Image.Image] = []

    def decode(data: str) -> None:
        img = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        img.load()
        found.append(img)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            source = node.get("source")
            if node.get("type") == "image" and isinstance(source, dict):
                if source.get("type") == "base64":
                    decode(source["data"])
                return
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and node.startswith("data:image/"):
            decode(node.partition(",")[2])

    walk(body)
    return found


def texts_in(body: Any) -> str:
    """Every string of a request but images, joined (to look for what a prompt declares)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and not node.startswith("data:image/") and len(node) < 100_000:
            out.append(node)

    walk(body)
    return "\n".join(out)


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, Any]]:
    """Both fake model servers (threads on loopback ports), by the ``Case.server`` name."""
    servers = {"openai": FakeOpenAIServer().start(), "anthropic": FakeAnthropicServer().start()}
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.close()


def brain_of(case: Case, base_url: str) -> BrainConfig:
    kind = "anthropic" if case.family == "anthropic" else "openai"
    return BrainConfig(
        kind=kind,
        family=case.family,
        model=case.model,
        base_url=base_url,
        api_key="sk-test-live",
        max_retries=1,
        **case.extra,
    )


async def xterm_client_area(actor: Any) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` of the (only) xterm window on the agent's desktop."""
    res = await actor.shell.remote(
        "xdotool search --onlyvisible --class xterm getwindowgeometry --shell %@"
    )
    assert res.exit_code == 0, res
    values = dict(re.findall(r"^(\w+)=(\d+)$", res.stdout, re.M))
    return tuple(int(values[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))  # type: ignore[return-value]


# ---------------------------------------------------------------------- the test


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_brain_opens_a_terminal_and_creates_a_file(
    agents: Any, fakes: dict[str, Any], case: Case, size: Size
) -> None:
    fake = fakes[case.server]
    name = f"made-by-{case.name}"
    (model_point, expected) = CLICKS[(case.space, size)]
    brain = brain_of(case, fake.base_url)
    image = IMAGE_SIZES[(case.image, size)]
    # the tables agree with the family's declared space (its image size is worked by hand)
    assert coords.image_size(_spaces.space_of(brain), size) == image

    fake.add(*case.replies(model_point, name))
    from orchestrator.desktop import DesktopSpec

    width, height = size
    spec = AgentSpec(
        name="live",
        role="sysadmin",
        brain=brain,
        desktop=DesktopSpec(image=agents.session.image, width=width, height=height),
    )
    info = await agents.runtime.create_agent(agents.tenant, spec)
    agents.created.append(info)
    task = TaskSpec(description="open the terminal and create a file")
    done = await agents.run(info.id, task, 90)

    assert done.state == TaskState.SUCCEEDED, done.error
    fake.verify()
    actor = agents.actor(info.path)
    made = await actor.shell.remote(f"test -e ~/{name} && echo yes")
    assert made.stdout.strip() == "yes", f"~/{name} is not on the desktop: {made!r}"

    # every screenshot the model was sent is in its family's image size
    seen = [img.size for r in fake.requests for img in images_in(r.body)]
    assert len(seen) >= 3 and set(seen) == {image}, seen
    if case.family == "qwen-vl":  # the tool's declared display is the space it answers in
        w, h = coords.model_size(_spaces.space_of(brain), size)
        for r in fake.requests:
            prompt = texts_in(r.body)
            assert f"The screen's resolution is {w}x{h}." in prompt, prompt[:3000]

    # the click landed on the pixel worked out by hand, inside the terminal
    events = await agents.events(task_id=done.id)
    steps = [e.data for e in events if e.kind == EventKind.STEP]
    clicks = [s for s in steps if s["action"]["type"] == "click"]
    assert len(clicks) == 1, [s["action"] for s in steps]
    (click,) = clicks
    assert (click["action"]["x"], click["action"]["y"]) == expected
    assert click["result"]["ok"] and click["result"]["cursor"] == {
        "x": expected[0],
        "y": expected[1],
    }
    x, y, w, h = await xterm_client_area(actor)
    assert x <= expected[0] < x + w and y <= expected[1] < y + h, ((x, y, w, h), expected)
