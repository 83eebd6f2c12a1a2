"""Open-model brains (UI-TARS, Qwen-VL, OpenCUA) per family, through the real ``openai`` client
against the fake server: no tools sent, the family's image size and declared display, its
trained prompt, a click mapped to the screen pixel, and the ends of a task."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.brains import BrainContext, Observation, make_brain
from orchestrator.brains._open import OpenModelBrain
from orchestrator.domain import Act, Ask, BrainConfig, Done, Fail, Family, TokenUsage
from orchestrator.errors import BrainError
from tests.fakes.openai_server import (
    CHAT,
    FakeOpenAIServer,
    chat_refusal,
    chat_text,
    chat_tool_calls,
    tool_call,
)

Size = tuple[int, int]


def qwen_call(arguments: dict[str, Any], thought: str = "Next.") -> str:
    call = json.dumps({"name": "computer_use", "arguments": arguments})
    return f"{thought}\n<tool_call>\n{call}\n</tool_call>"


def opencua_code(code: str, thought: str = "Next.") -> str:
    return f"## Thought:\n{thought}\n\n## Action:\n{thought}\n\n## Code:\n```python\n{code}\n```"


@dataclass(frozen=True)
class Case:
    name: str
    family: Family
    model: str
    images: dict[Size, Size]
    """The screenshot size the model is sent, by screen size."""
    declared: dict[Size, Size] | None
    """The display the prompt declares (Qwen), by screen size."""
    click: Callable[[int, int], str]
    """A reply clicking at a model point."""
    point: dict[Size, tuple[Size, Size]]
    """By screen size: a model point, and the screen pixel it must land on."""
    done: str
    fail: str | None
    system: str
    """Words of the family's trained prompt (its first system or user text)."""
    images_default: int


GRID28 = {(1280, 800): (1288, 812), (1920, 1080): (1932, 1092)}
GRID32 = {(1280, 800): (1280, 800), (1920, 1080): (1920, 1088)}
# pixels of the resized image: its centre pixel is the screen's centre pixel
GRID_POINTS = {(1280, 800): ((644, 406), (640, 400)), (1920, 1080): ((966, 546), (960, 540))}
NORM_POINTS = {(1280, 800): ((250, 750), (320, 600)), (1920, 1080): ((250, 750), (480, 810))}

CASES = [
    Case(
        "uitars-1.5",
        "uitars",
        "UI-TARS-1.5-7B",
        GRID28,
        None,
        lambda x, y: f"Thought: click it.\nAction: click(start_box='({x},{y})')",
        GRID_POINTS,
        "Thought: all done.\nAction: finished(content='the file is made')",
        None,
        "finished(content='xxx')",
        5,
    ),
    Case(
        "uitars-1.0",
        "uitars",
        "UI-TARS-7B-DPO",
        GRID28,
        None,
        lambda x, y: (
            f"Thought: click it.\nAction: click(start_box='<|box_start|>({x},{y})<|box_end|>')"
        ),
        NORM_POINTS,
        "Thought: all done.\nAction: finished(content='the file is made')",
        None,
        "finished()\ncall_user()",
        5,
    ),
    Case(
        "qwen2.5-vl",
        "qwen-vl",
        "Qwen2.5-VL-7B-Instruct",
        GRID28,
        GRID28,
        lambda x, y: qwen_call({"action": "left_click", "coordinate": [x, y]}),
        GRID_POINTS,
        qwen_call({"action": "terminate", "status": "success"}),
        qwen_call({"action": "terminate", "status": "failure"}),
        '"name": "computer_use"',
        5,
    ),
    Case(
        "qwen3-vl",
        "qwen-vl",
        "Qwen3-VL-8B-Instruct",
        GRID32,
        {(1280, 800): (1000, 1000), (1920, 1080): (1000, 1000)},
        lambda x, y: qwen_call({"action": "left_click", "coordinate": [x, y]}),
        NORM_POINTS,
        qwen_call({"action": "terminate", "status": "success"}),
        qwen_call({"action": "terminate", "status": "failure"}),
        "`answer`: Answer a question.",
        5,
    ),
    Case(
        "opencua",
        "opencua",
        "OpenCUA-7B",
        GRID28,
        None,
        lambda x, y: opencua_code(f"pyautogui.click(x={x}, y={y})"),
        GRID_POINTS,
        opencua_code("computer.terminate(status='success')"),
        opencua_code("computer.terminate(status='failure')"),
        "output the action as PyAutoGUI code",
        3,
    ),
]
SCREENS: tuple[Size, ...] = ((1280, 800), (1920, 1080))


def shot(n: int, image: Size, screen: Size) -> Observation:
    return Observation(
        screenshot=f"png-{n}".encode(),
        media_type="image/png",
        width=image[0],
        height=image[1],
        screen_width=screen[0],
        screen_height=screen[1],
    )


def url(n: int) -> str:
    return "data:image/png;base64," + base64.b64encode(f"png-{n}".encode()).decode()


def images(body: dict[str, Any]) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in body["messages"]
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def texts(body: dict[str, Any]) -> str:
    out = []
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [p["text"] for p in content if p.get("type") == "text"]
    return "\n".join(out)


def context() -> BrainContext:
    return BrainContext(
        task_id="task-9", description="Open the terminal and create a file.", role="tester"
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def brain_for(fake: FakeOpenAIServer, case: Case, **kw: Any) -> OpenModelBrain:
    config = BrainConfig(kind="openai", family=case.family, model=case.model, **kw)
    return OpenModelBrain(config, client=fake.client())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("screen", SCREENS, ids=["1280x800", "1920x1080"])
async def test_a_click_in_the_family_space_lands_on_the_screen_pixel(
    fake: FakeOpenAIServer, case: Case, screen: Size
) -> None:
    brain = brain_for(fake, case)
    image = brain.image_size(screen)
    assert image == case.images[screen]
    (mx, my), expected = case.point[screen]
    fake.add(chat_text(case.click(mx, my)))

    decision = await brain.step(context(), shot(0, image, screen))

    assert isinstance(decision, Act)
    assert [(x.type, x.x, x.y) for x in decision.actions if isinstance(x, a.Click)] == [
        ("click", *expected)
    ]
    (body,) = fake.bodies(CHAT)
    # a server without tool-calling flags (vLLM) or Ollama's qwen2.5vl rejects these
    assert not {"tools", "tool_choice", "response_format", "functions"} & body.keys()
    assert body["model"] == case.model
    assert body["temperature"] == 0.0
    assert images(body) == [url(0)]
    words = texts(body)
    assert case.system in words
    assert "Open the terminal and create a file." in words
    if case.declared is not None:
        w, h = case.declared[screen]
        assert f"The screen's resolution is {w}x{h}." in body["messages"][0]["content"]
    else:
        assert "resolution" not in words
    await brain.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_the_end_of_a_task(fake: FakeOpenAIServer, case: Case) -> None:
    brain = brain_for(fake, case)
    obs = shot(0, case.images[(1280, 800)], (1280, 800))
    fake.add(chat_text(case.done))
    assert isinstance(await brain.step(context(), obs), Done)
    if case.fail is not None:
        fake.add(chat_text(case.fail))
        assert isinstance(await brain.step(context(), obs), Fail)
    await brain.close()


async def test_uitars_call_user_asks_a_person(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, CASES[0])
    fake.add(chat_text("Thought: Which file name do you want?\nAction: call_user()"))
    decision = await brain.step(context(), shot(0, (1288, 812), (1280, 800)))
    assert isinstance(decision, Ask)
    assert "file name" in decision.question
    await brain.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_family_defaults(case: Case) -> None:
    config = BrainConfig(
        kind="openai", family=case.family, model=case.model, base_url="http://127.0.0.1:9/v1"
    )
    made = make_brain(config)
    assert isinstance(made, OpenModelBrain)
    assert made.max_images == case.images_default
    assert made.image_size((1920, 1080)) == case.images[(1920, 1080)]
    capped = OpenModelBrain(config.model_copy(update={"max_images": 2}))
    assert capped.max_images == 2


async def test_a_configured_temperature_and_max_tokens_are_sent(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, CASES[0], temperature=0.7, max_tokens=500)
    fake.add(chat_text("Thought: ok\nAction: wait()"))
    await brain.step(context(), shot(0, (1288, 812), (1280, 800)))
    (body,) = fake.bodies(CHAT)
    assert body["temperature"] == 0.7 and body["max_tokens"] == 500
    await brain.close()


async def test_a_refusal_fails_at_once(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, CASES[2], max_retries=3)
    fake.add(chat_refusal("I cannot help with that."))
    with pytest.raises(BrainError, match="refused to act: I cannot help with that"):
        await brain.step(context(), shot(0, (1288, 812), (1280, 800)))
    assert len(fake.requests) == 1
    await brain.close()


async def test_triage_does_it_and_plan_names_the_planner(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, CASES[4])
    obs = shot(0, (1288, 812), (1280, 800))
    assert (await brain.triage(context(), obs)).decision == "do"
    with pytest.raises(BrainError, match="cannot plan: set the brain's `planner`"):
        await brain.plan(context(), obs)
    assert fake.requests == []
    await brain.close()


async def test_usage_is_recorded(fake: FakeOpenAIServer) -> None:
    seen: list[TokenUsage] = []
    config = BrainConfig(kind="openai", family="uitars", model="UI-TARS-1.5-7B")
    brain = OpenModelBrain(config, client=fake.client(), on_usage=seen.append)
    fake.add(chat_text("Thought: ok\nAction: wait()", input_tokens=1234, output_tokens=56))
    await brain.step(context(), shot(0, (1288, 812), (1280, 800)))
    assert brain.usage == seen
    assert [(u.input_tokens, u.output_tokens) for u in seen] == [(1234, 56)]
    await brain.close()


async def test_a_call_the_server_extracted_is_read_as_the_model_wrote_it(
    fake: FakeOpenAIServer,
) -> None:
    brain = brain_for(fake, CASES[3])  # Qwen3-VL, 0..1000
    fake.add(
        chat_tool_calls(
            tool_call("computer_use", {"action": "left_click", "coordinate": [500, 500]})
        )
    )
    decision = await brain.step(context(), shot(0, (1280, 800), (1280, 800)))
    assert isinstance(decision, Act)
    assert decision.actions == [a.Click(x=640, y=400)]
    assert "tools" not in fake.bodies(CHAT)[0]
    await brain.close()
