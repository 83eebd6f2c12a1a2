"""The chat-tools brain in a coordinate space other than the screen's: screenshots of the
space's size, clicks mapped to screen pixels, cursors and history shown back in the model's
space (real ``openai`` client, fake server)."""

from __future__ import annotations

import doctest
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.actions import ActionResult
from orchestrator.brains import BrainContext, Observation, OpenAIBrain, StepRecord, _chat
from orchestrator.coords import FixedSpace, GridSpace, NormSpace
from orchestrator.domain import Act, BrainConfig
from orchestrator.errors import ConfigError
from tests.fakes.openai_server import CHAT, FakeOpenAIServer, chat_tool_calls, tool_call

SCREEN = (1920, 1080)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def brain(fake: FakeOpenAIServer, **config: Any) -> OpenAIBrain:
    return OpenAIBrain(BrainConfig(kind="openai", model="m", **config), client=fake.client())


def shot(size: tuple[int, int], n: int = 1) -> Observation:
    return Observation(
        screenshot=f"png-{n}".encode(),
        media_type="image/png",
        width=size[0],
        height=size[1],
        screen_width=SCREEN[0],
        screen_height=SCREEN[1],
    )


def context() -> BrainContext:
    return BrainContext(task_id="task-5", description="Open a terminal.", role="desktop user")


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


async def test_a_grid_space_maps_clicks_to_the_screen_and_the_cursor_back(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        chat_tool_calls(tool_call("click", {"x": 966, "y": 546}, id="c1")),
        chat_tool_calls(tool_call("done", {"result": "ok"})),
    )
    b = brain(fake, space=GridSpace())
    image = b.image_size(SCREEN)
    assert image == (1932, 1092)
    ctx = context()
    decision = await b.step(ctx, shot(image))
    assert decision == Act(actions=[a.Click(x=960, y=540, keys=[])])

    result = ActionResult(ok=True, cursor=a.Point(x=960, y=540))
    ctx.history.append(StepRecord(decision, [result]))
    await b.step(ctx, shot(image, 2))

    body = fake.bodies(CHAT)[1]
    assert "1932x1092" in body["messages"][0]["content"]
    (answer,) = tool_messages(body)
    assert json.loads(answer["content"])["cursor"] == {"x": 966, "y": 546}
    # the model's own call is sent back as it made it
    calls = [m for m in body["messages"] if m.get("tool_calls")]
    assert json.loads(calls[0]["tool_calls"][0]["function"]["arguments"]) == {"x": 966, "y": 546}


async def test_a_fixed_space_maps_every_point(fake: FakeOpenAIServer) -> None:
    fake.add(
        chat_tool_calls(
            tool_call("double_click", {"x": 683, "y": 384}),
            tool_call("drag", {"path": [{"x": 0, "y": 0}, {"x": 1366, "y": 768}]}),
            tool_call("mouse_down", {"x": 683, "y": 384}),
            tool_call("mouse_up", {}),
            tool_call("keypress", {"keys": ["ctrl", "alt", "t"]}),
        )
    )
    b = brain(fake, space=FixedSpace())
    image = b.image_size(SCREEN)
    assert image == (1366, 768)
    decision = await b.step(context(), shot(image))
    assert isinstance(decision, Act)
    assert decision.actions == [
        a.DoubleClick(x=960, y=540, keys=[]),
        a.Drag(path=[a.Point(x=0, y=0), a.Point(x=1919, y=1079)], keys=[]),
        a.MouseDown(x=960, y=540),
        a.MouseUp(),
        a.KeyPress(keys=["ctrl", "alt", "t"]),
    ]


async def test_a_history_it_did_not_write_is_shown_in_the_models_space(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(chat_tool_calls(tool_call("wait", {})))
    b = brain(fake, space=NormSpace(scale=1000, image=GridSpace()))
    ctx = context()
    earlier = Act(actions=[a.Click(x=960, y=540, keys=[])])  # screen pixels, from a restart
    ctx.history.append(StepRecord(earlier, [ActionResult(ok=True)]))
    await b.step(ctx, shot(b.image_size(SCREEN)))

    (body,) = fake.bodies(CHAT)
    calls = [m for m in body["messages"] if m.get("tool_calls")]
    args = json.loads(calls[0]["tool_calls"][0]["function"]["arguments"])
    assert (args["x"], args["y"]) == (500, 500)


async def test_a_point_outside_the_space_is_answered_and_asked_again(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        chat_tool_calls(tool_call("click", {"x": 1001, "y": 5}, id="bad"), content="there"),
        chat_tool_calls(tool_call("click", {"x": 1000, "y": 5}, id="good")),
    )
    b = brain(fake, space=NormSpace(scale=1000, image=GridSpace()))
    decision = await b.step(context(), shot(b.image_size(SCREEN)))

    assert decision.actions == [a.Click(x=1919, y=5, keys=[])]
    (answer,) = tool_messages(fake.bodies(CHAT)[1])
    assert answer["tool_call_id"] == "bad"
    assert "outside the 1000x1000 space" in answer["content"]


async def test_the_native_space_leaves_screen_pixels_alone(fake: FakeOpenAIServer) -> None:
    fake.add(chat_tool_calls(tool_call("click", {"x": 1919, "y": 0})))
    b = brain(fake)
    assert b.image_size(SCREEN) == SCREEN
    decision = await b.step(context(), shot(SCREEN))
    assert decision.actions == [a.Click(x=1919, y=0, keys=[])]


async def test_max_images_of_the_config_bounds_the_screenshots(fake: FakeOpenAIServer) -> None:
    fake.add(*[chat_tool_calls(tool_call("wait", {})) for _ in range(3)])
    b = brain(fake, max_images=1)
    ctx = context()
    for n in range(3):
        decision = await b.step(ctx, shot(SCREEN, n))
        ctx.history.append(StepRecord(decision, [ActionResult(ok=True)]))
    last = fake.bodies(CHAT)[-1]
    images = [
        p
        for m in last["messages"]
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    ]
    assert len(images) == 1


def test_docstring_examples_run() -> None:
    failed, _ = doctest.testmod(_chat)
    assert failed == 0


async def test_a_0_to_1000_space_is_told_to_the_model(fake: FakeOpenAIServer) -> None:
    fake.add(chat_tool_calls(tool_call("wait", {})))
    b = brain(fake, space=NormSpace(scale=1000, image=GridSpace()))
    await b.step(context(), shot(b.image_size(SCREEN)))
    (body,) = fake.bodies(CHAT)
    assert "scaled to 0..1000" in body["messages"][0]["content"]


def test_a_0_to_1_space_is_refused() -> None:
    with pytest.raises(ConfigError, match="0..1 coordinate space"):
        OpenAIBrain(
            BrainConfig(
                kind="openai",
                model="m",
                base_url="http://127.0.0.1:9/v1",
                space=NormSpace(scale=1, image=GridSpace()),
            )
        )
