"""OpenAI computer use, complete (issue 11, item 3): reasoning summaries as thoughts, the
preview and GA tool shapes by model name, batched actions, and coordinate spaces, through
the real ``openai`` client against the fake server."""

from __future__ import annotations

import doctest
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.actions import ActionResult
from orchestrator.brains import (
    BrainContext,
    Observation,
    OpenAIBrain,
    StepRecord,
    _responses,
    make_brain,
)
from orchestrator.coords import FixedSpace, GridSpace, NormSpace
from orchestrator.domain import Act, BrainConfig, Done
from tests.fakes.openai_server import (
    RESPONSES,
    FakeOpenAIServer,
    computer_call_item,
    message_item,
    reasoning_item,
    responses_reply,
)

PREVIEW = "computer-use-preview"
GA = "gpt-5.4"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def brain(fake: FakeOpenAIServer, model: str = PREVIEW, **config: Any) -> OpenAIBrain:
    config.setdefault("mode", "responses")
    return OpenAIBrain(BrainConfig(kind="openai", model=model, **config), client=fake.client())


def shot(size: tuple[int, int], screen: tuple[int, int] | None = None, n: int = 1) -> Observation:
    sw, sh = screen or size
    return Observation(
        screenshot=f"png-{n}".encode(),
        media_type="image/png",
        width=size[0],
        height=size[1],
        screen_width=sw,
        screen_height=sh,
    )


def context() -> BrainContext:
    return BrainContext(task_id="task-3", description="Open a terminal.", role="desktop user")


def click(x: int, y: int) -> dict[str, Any]:
    return {"type": "click", "button": "left", "x": x, "y": y}


# ---------------------------------------------------------------------- reasoning


async def test_reasoning_summaries_are_asked_for_and_become_the_thought(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        responses_reply(
            reasoning_item("The panel is at the bottom."),
            reasoning_item("The terminal icon is its second."),
            computer_call_item(click(60, 790), call_id="c1"),
            id="r1",
        ),
        responses_reply(reasoning_item("A prompt is showing."), message_item("It is open.")),
    )
    b = brain(fake)
    ctx = context()
    first = await b.step(ctx, shot((1280, 800)))
    ctx.history.append(StepRecord(first, [ActionResult(ok=True)]))
    final = await b.step(ctx, shot((1280, 800), n=2))

    assert first == Act(
        actions=[a.Click(x=60, y=790, keys=[])],
        thought="The panel is at the bottom.\nThe terminal icon is its second.",
    )
    assert final == Done(result="It is open.", thought="A prompt is showing.")
    for body in fake.bodies(RESPONSES):
        assert body["reasoning"] == {"summary": "concise"}
        assert body["truncation"] == "auto"


# ---------------------------------------------------------------------- tool shapes


@pytest.mark.parametrize(
    ("model", "preview"),
    [
        ("computer-use-preview", True),
        ("computer-use-preview-2025-03-11", True),
        ("Computer-Use-Preview", True),
        ("gpt-5.4", False),
        ("gpt-5.4-mini", False),
        ("my-computer-use-preview", False),
    ],
)
def test_the_tool_shape_follows_the_model_name(model: str, preview: bool) -> None:
    assert _responses.is_preview(model) is preview
    tool = _responses.computer_tool(shot((1024, 768)), model)
    if preview:
        assert tool == {
            "type": "computer_use_preview",
            "display_width": 1024,
            "display_height": 768,
            "environment": "linux",
        }
    else:
        assert tool == {"type": "computer"}


async def test_a_ga_model_is_sent_the_ga_computer_tool(fake: FakeOpenAIServer) -> None:
    fake.add(responses_reply(computer_call_item(click(100, 200), call_id="c1")))
    decision = await brain(fake, GA).step(context(), shot((1280, 800)))

    assert decision.actions == [a.Click(x=100, y=200, keys=[])]
    (body,) = fake.bodies(RESPONSES)
    assert body["model"] == GA
    computer, *functions = body["tools"]
    assert computer == {"type": "computer"}
    assert sorted(f["name"] for f in functions) == ["ask_user", "fail", "shell"]
    assert body["reasoning"] == {"summary": "concise"}


async def test_the_family_picks_the_responses_loop_whatever_the_mode(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(responses_reply(message_item("nothing to do")))
    b = make_brain(
        BrainConfig(kind="openai", family="openai-responses", model=GA, base_url=fake.base_url)
    )
    assert isinstance(b, OpenAIBrain)
    assert await b.step(context(), shot((1280, 800))) == Done(result="nothing to do")
    await b.close()
    assert [r.path for r in fake.requests] == [RESPONSES]


# ---------------------------------------------------------------------- batched actions


async def test_a_batch_is_one_act_answered_by_one_output_telling_what_failed(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        responses_reply(
            computer_call_item(
                [
                    {"type": "keypress", "keys": ["ctrl", "alt", "t"]},
                    {"type": "wait"},
                    {"type": "type", "text": "touch /tmp/a\n"},
                    click(5, 5),
                ],
                call_id="batch",
            ),
            id="r1",
        ),
        responses_reply(message_item("done"), id="r2"),
    )
    b = brain(fake, GA)
    ctx = context()
    decision = await b.step(ctx, shot((1280, 800)))
    assert isinstance(decision, Act)
    assert decision.actions == [
        a.KeyPress(keys=["ctrl", "alt", "t"]),
        a.Wait(),
        a.TypeText(text="touch /tmp/a\n"),
        a.Click(x=5, y=5, keys=[]),
    ]
    # the runner stopped at the third action: the fourth was not carried out
    results = [ActionResult(ok=True), ActionResult(ok=True), ActionResult.failure("X died")]
    ctx.history.append(StepRecord(decision, results))
    await b.step(ctx, shot((1280, 800), n=2))

    output, note = fake.bodies(RESPONSES)[1]["input"]
    assert output["type"] == "computer_call_output" and output["call_id"] == "batch"
    assert "the action failed: X died" in note["content"]
    assert "not carried out" in note["content"]


# ---------------------------------------------------------------------- coordinate spaces


async def test_a_fixed_space_sends_its_image_size_and_maps_clicks_to_the_screen(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        responses_reply(
            computer_call_item(
                [
                    click(683, 384),
                    {"type": "drag", "path": [{"x": 0, "y": 0}, {"x": 1366, "y": 768}]},
                ],
                call_id="c1",
            )
        )
    )
    b = brain(fake, space=FixedSpace())
    image = b.image_size((1920, 1080))
    assert image == (1366, 768)
    decision = await b.step(context(), shot(image, (1920, 1080)))

    assert decision.actions == [
        a.Click(x=960, y=540, keys=[]),
        a.Drag(path=[a.Point(x=0, y=0), a.Point(x=1919, y=1079)], keys=[]),
    ]
    tool = fake.bodies(RESPONSES)[0]["tools"][0]
    assert (tool["display_width"], tool["display_height"]) == (1366, 768)


async def test_a_grid_space_on_a_ga_model_maps_clicks_to_the_screen(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(responses_reply(computer_call_item(click(966, 546))))
    b = brain(fake, GA, space=GridSpace())
    image = b.image_size((1920, 1080))
    assert image == (1932, 1092)
    decision = await b.step(context(), shot(image, (1920, 1080)))
    assert decision.actions == [a.Click(x=960, y=540, keys=[])]


async def test_a_norm_space_maps_0_to_1000(fake: FakeOpenAIServer) -> None:
    fake.add(responses_reply(computer_call_item(click(500, 500))))
    b = brain(fake, GA, space=NormSpace(scale=1000, image=GridSpace()))
    decision = await b.step(context(), shot(b.image_size((1280, 800)), (1280, 800)))
    assert decision.actions == [a.Click(x=640, y=400, keys=[])]


async def test_a_point_outside_the_space_is_answered_and_asked_again(
    fake: FakeOpenAIServer,
) -> None:
    fake.add(
        responses_reply(computer_call_item(click(1400, 10), call_id="c1"), id="r1"),
        responses_reply(computer_call_item(click(1365, 10), call_id="c2"), id="r2"),
    )
    b = brain(fake, space=FixedSpace())
    decision = await b.step(context(), shot((1366, 768), (1920, 1080)))

    assert decision.actions == [a.Click(x=1919, y=14, keys=[])]
    retry = fake.bodies(RESPONSES)[1]
    assert retry["previous_response_id"] == "r1"
    answer, note = retry["input"]
    assert answer["type"] == "computer_call_output" and answer["call_id"] == "c1"
    assert "outside the 1366x768 space" in note["content"]


def test_the_default_space_is_the_screen() -> None:
    b = OpenAIBrain(
        BrainConfig(kind="openai", model=GA, mode="responses", base_url="http://127.0.0.1:9/v1")
    )
    assert b.image_size((1920, 1080)) == (1920, 1080)


def test_docstring_examples_run() -> None:
    failed, _ = doctest.testmod(_responses)
    assert failed == 0
