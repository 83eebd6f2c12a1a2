"""The Anthropic brain through the real ``anthropic`` client against the fake Messages API:
tools and betas sent, screenshots in Claude's space, tool results, history, caching, retries
of bad replies, refusals, triage and plan."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

from orchestrator import actions as a
from orchestrator.brains import BrainContext, Observation, StepRecord, make_brain
from orchestrator.brains._anthropic import OMITTED, AnthropicBrain
from orchestrator.brains._anthropic_tools import ASK_USER_TOOL
from orchestrator.domain import Act, BrainConfig, Done, Fail, Plan, Triage
from orchestrator.errors import BrainError
from tests.fakes.anthropic_server import (
    FakeAnthropicServer,
    bash,
    computer,
    editor,
    message,
    raw_reply,
    refusal,
    text,
    text_message,
)


def new_ctx() -> BrainContext:
    return BrainContext(task_id="task-1", description="open a terminal", role="generalist")


def png(size: tuple[int, int], color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def observe(brain: AnthropicBrain, screen: tuple[int, int], color: str = "navy") -> Observation:
    """A screenshot as the runner takes it: in the brain's image size."""
    w, h = brain.image_size(screen)
    return Observation(
        screenshot=png((w, h), color),
        media_type="image/png",
        width=w,
        height=h,
        screen_width=screen[0],
        screen_height=screen[1],
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server


def new_brain(
    fake: FakeAnthropicServer, model: str = "claude-sonnet-4-5", **kw: Any
) -> AnthropicBrain:
    brain = make_brain(
        BrainConfig(
            kind="anthropic", model=model, base_url=fake.base_url, api_key=SecretStr("own"), **kw
        )
    )
    assert isinstance(brain, AnthropicBrain)
    return brain


def images(content: Any) -> list[dict[str, Any]]:
    """Every image block in a message content (inside tool results too), in order."""
    found: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else []:
        if block.get("type") == "image":
            found.append(block)
        elif block.get("type") == "tool_result":
            found += images(block.get("content"))
    return found


def all_images(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for m in body["messages"] if m["role"] == "user" for i in images(m["content"])]


def data(obs: Observation) -> str:
    return base64.b64encode(obs.screenshot).decode()


@pytest.mark.parametrize(
    ("model", "tool", "beta"),
    [
        ("claude-sonnet-4-5", "computer_20250124", "computer-use-2025-01-24"),
        ("claude-opus-4-6", "computer_20251124", "computer-use-2025-11-24"),
    ],
)
@pytest.mark.parametrize(
    ("screen", "image"),
    [((1280, 800), (1280, 800)), ((1920, 1080), (1366, 768)), ((1024, 768), (1024, 768))],
)
async def test_the_request_declares_the_tools_for_the_image_sent_with_the_beta(
    fake: FakeAnthropicServer,
    model: str,
    tool: str,
    beta: str,
    screen: tuple[int, int],
    image: tuple[int, int],
) -> None:
    brain = new_brain(fake, model)
    assert brain.image_size(screen) == image
    fake.add(message(computer("left_click", coordinate=[image[0] - 1, image[1] - 1])))
    obs = observe(brain, screen)
    try:
        decision = await brain.step(new_ctx(), obs)
    finally:
        await brain.close()
    # the far corner of the image is the far corner of the screen
    assert decision == Act(actions=[a.Click(x=screen[0] - 1, y=screen[1] - 1)])
    (request,) = fake.requests
    assert request.path == "/v1/messages" and request.betas == [beta]
    assert request.api_key == "own"
    body = request.body
    assert body["model"] == model and body["max_tokens"] == 4096
    computer_tool = {
        "type": tool,
        "name": "computer",
        "display_width_px": image[0],
        "display_height_px": image[1],
    }
    if tool == "computer_20251124":
        computer_tool["enable_zoom"] = True
    assert body["tools"] == [
        computer_tool,
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        ASK_USER_TOOL,
    ]
    assert f"{image[0]}x{image[1]} pixels" in body["system"][0]["text"]
    (shot,) = all_images(body)
    assert shot["source"] == {"type": "base64", "media_type": "image/png", "data": data(obs)}
    with Image.open(io.BytesIO(base64.b64decode(shot["source"]["data"]))) as sent:
        assert sent.size == image


async def test_tool_results_carry_the_screen_after_the_step_the_outputs_and_failures(
    fake: FakeAnthropicServer,
) -> None:
    brain = new_brain(fake)
    screen = (1920, 1080)
    fake.add(
        message(
            text("Click, then list."),
            computer("left_click", coordinate=[683, 384], id="c1"),
            bash("ls /", id="b1"),
            editor("view", "/etc/hostname", id="e1"),
            bash(restart=True, id="b2"),
        ),
        message(
            computer("key", text="ctrl+alt+t", id="c2"),
            computer("type", text="hello", id="c3"),
        ),
        text_message("All done."),
    )
    ctx = new_ctx()
    obs1, obs2, obs3 = (observe(brain, screen, c) for c in ("navy", "teal", "olive"))
    try:
        first = await brain.step(ctx, obs1)
        assert isinstance(first, Act) and first.thought == "Click, then list."
        assert first.actions[:2] == [a.Click(x=960, y=540), a.Shell(command="ls /")]
        assert isinstance(first.actions[2], a.Shell) and len(first.actions) == 3
        ran = a.CommandResult(exit_code=0, stdout="bin\netc\n", stderr="")
        view = a.CommandResult(exit_code=1, stdout="", stderr="The path does not exist.")
        ctx.history.append(
            StepRecord(
                first,
                [
                    a.ActionResult(ok=True, cursor=a.Point(x=960, y=540)),
                    a.ActionResult(ok=True, command=ran),
                    a.ActionResult(ok=False, error="command exited with status 1", command=view),
                ],
            )
        )
        second = await brain.step(ctx, obs2)
        assert second == Act(actions=[a.KeyPress(keys=["ctrl+alt+t"]), a.TypeText(text="hello")])
        ctx.history.append(StepRecord(second, [a.ActionResult(ok=False, error="no such key")]))
        assert await brain.step(ctx, obs3) == Done(result="All done.")
    finally:
        await brain.close()
    bodies = fake.bodies()
    # the first step's reply goes back as sent, answered per tool_use id
    messages = bodies[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == fake_content(bodies, 0)
    results = {b["tool_use_id"]: b for b in messages[2]["content"] if b["type"] == "tool_result"}
    assert list(results) == ["c1", "b1", "e1", "b2"]
    click = results["c1"]
    assert "is_error" not in click and click["content"][0]["text"].endswith("(683, 384)")
    assert click["content"][1]["source"]["data"] == data(obs2)  # the screen after the step
    assert results["b1"]["content"] == [{"type": "text", "text": "bin\netc"}]
    assert results["e1"]["is_error"] is True
    assert "The path does not exist." in results["e1"]["content"][0]["text"]
    assert "restarted" in results["b2"]["content"][0]["text"]
    # a failed action is an error; the one after it was not carried out; the screen follows
    last = bodies[2]["messages"][-1]["content"]
    assert last[0]["tool_use_id"] == "c2" and last[0]["is_error"] is True
    assert last[0]["content"][0]["text"] == "no such key"
    assert last[1]["tool_use_id"] == "c3" and last[1]["is_error"] is True
    assert "not carried out" in last[1]["content"][0]["text"]
    assert last[2]["type"] == "text" and last[3]["source"]["data"] == data(obs3)
    # earlier requests are prefixes of later ones (but for cache breakpoints)
    assert strip_cache(bodies[1]["messages"][:2]) == strip_cache(bodies[2]["messages"][:2])


def fake_content(bodies: list[dict[str, Any]], i: int) -> Any:
    return bodies[i + 1]["messages"][2 * i + 1]["content"]


def strip_cache(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_cache(v) for k, v in node.items() if k != "cache_control"}
    if isinstance(node, list):
        return [strip_cache(v) for v in node]
    return node


async def test_history_keeps_the_latest_screenshots_and_places_cache_breakpoints(
    fake: FakeAnthropicServer,
) -> None:
    brain = new_brain(fake, max_images=3)
    ctx = new_ctx()
    shots = [
        observe(brain, (1024, 768), c) for c in ("red", "green", "blue", "white", "gray", "pink")
    ]
    try:
        for i, obs in enumerate(shots):
            fake.add(message(computer("mouse_move", coordinate=[i, i])))
            decision = await brain.step(ctx, obs)
            assert isinstance(decision, Act)
            ctx.history.append(StepRecord(decision, [a.ActionResult(ok=True)]))
    finally:
        await brain.close()
    for n, body in enumerate(fake.bodies(), 1):
        sent = [i["source"]["data"] for i in all_images(body)]
        assert 2 <= len(sent) <= 3 or len(sent) == n
        assert sent == [data(s) for s in shots[n - len(sent) : n]]  # the latest, in order
        notes = [
            b
            for m in body["messages"]
            if m["role"] == "user"
            for b in flatten(m["content"])
            if b.get("text") == OMITTED
        ]
        assert len(notes) == n - len(sent)
        # cache breakpoints: the system prompt and the last block of the two latest user turns
        marks = [p for p in paths(body) if p.endswith("cache_control")]
        users = [i for i, m in enumerate(body["messages"]) if m["role"] == "user"][-2:]
        last_blocks = {
            f"messages.{i}.content.{len(body['messages'][i]['content']) - 1}" for i in users
        }
        assert set(marks) == {"system.0.cache_control"} | {
            f"{b}.cache_control" for b in last_blocks
        }
        assert len(marks) <= 4
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    # dropped two at a time: the prefix stays still between drops
    counts = [len(all_images(b)) for b in fake.bodies()]
    assert counts == [1, 2, 3, 2, 3, 2]


def flatten(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in content:
        out.append(block)
        if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            out += block["content"]
    return out


def paths(node: Any, prefix: str = "") -> list[str]:
    """The dotted path of every value in a JSON document (``system.0.cache_control``)."""
    out: list[str] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        out += [path, *paths(value, path)]
    return out


async def test_a_malformed_action_is_fed_back_and_asked_again(fake: FakeAnthropicServer) -> None:
    brain = new_brain(fake)
    fake.add(
        message(text("Hmm."), computer("fly", id="bad"), computer("key", text="a", id="ok")),
        message(computer("left_click", coordinate=[10, 10], id="good")),
    )
    obs = observe(brain, (1280, 800))
    try:
        decision = await brain.step(new_ctx(), obs)
    finally:
        await brain.close()
    assert decision == Act(actions=[a.Click(x=10, y=10)])
    retry = fake.bodies()[1]["messages"]
    assert retry[1]["role"] == "assistant" and retry[1]["content"][1]["id"] == "bad"
    answers = retry[2]["content"]
    assert answers[0]["tool_use_id"] == "bad" and answers[0]["is_error"] is True
    assert "unknown Anthropic computer action 'fly'" in answers[0]["content"][0]["text"]
    assert answers[1]["tool_use_id"] == "ok" and "another call" in answers[1]["content"][0]["text"]
    assert answers[2]["type"] == "text" and answers[2]["text"].startswith("Nothing was done")


async def test_replies_that_stay_unusable_fail_with_the_reason(fake: FakeAnthropicServer) -> None:
    brain = new_brain(fake, max_retries=1)
    fake.add(message(computer("fly")), message(stop_reason="end_turn"))
    try:
        with pytest.raises(BrainError, match=r"after 2 attempt\(s\): the reply had neither"):
            await brain.step(new_ctx(), observe(brain, (1280, 800)))
    finally:
        await brain.close()


async def test_a_refusal_is_a_brain_error(fake: FakeAnthropicServer) -> None:
    brain = new_brain(fake)
    fake.add(refusal("I won't do that."), refusal("No plan."))
    obs = observe(brain, (1280, 800))
    try:
        with pytest.raises(BrainError, match="the model refused to act: I won't do that."):
            await brain.step(new_ctx(), obs)
        with pytest.raises(BrainError, match="the model refused the triage decision"):
            await brain.triage(new_ctx(), obs)
    finally:
        await brain.close()


async def test_a_final_reply_is_done_or_failed(fake: FakeAnthropicServer) -> None:
    brain = new_brain(fake)
    fake.add(text_message("FAILED: no network here"))
    try:
        decision = await brain.step(new_ctx(), observe(brain, (1280, 800)))
    finally:
        await brain.close()
    assert decision == Fail(reason="no network here")


async def test_triage_and_plan_are_json_in_text_with_a_nudge(fake: FakeAnthropicServer) -> None:
    brain = new_brain(fake)
    plan = {
        "subtasks": [
            {"id": "a", "role": "dba", "description": "make a db", "depends_on": []},
            {"id": "b", "role": "web", "description": "make a site", "depends_on": ["a"]},
        ],
        "check": "the site answers",
    }
    fake.add(
        text_message("I think I'll do it."),
        text_message('```json\n{"decision": "delegate", "reason": "two skills"}\n```'),
        text_message('{"subtasks": [], "check": null}'),
        text_message(__import__("json").dumps(plan)),
    )
    obs = observe(brain, (1280, 800))
    ctx = new_ctx()
    try:
        assert await brain.triage(ctx, obs) == Triage(decision="delegate", reason="two skills")
        got = await brain.plan(ctx, obs)
    finally:
        await brain.close()
    assert isinstance(got, Plan) and [s.id for s in got.subtasks] == ["a", "b"]
    bodies = fake.bodies()
    assert "JSON schema" in bodies[0]["system"] and "tools" not in bodies[0]
    assert bodies[0]["model"] == "claude-sonnet-4-5" and all_images(bodies[0])
    nudge = bodies[1]["messages"][-1]["content"]
    assert nudge.startswith("That reply could not be used:") and "JSON" in nudge
    assert "subtasks" in bodies[3]["messages"][-1]["content"]


async def test_a_history_this_brain_did_not_write_is_told_in_words(
    fake: FakeAnthropicServer,
) -> None:
    brain = new_brain(fake)
    before = Act(actions=[a.Click(x=5, y=6), a.Shell(command="ls")])
    ctx = new_ctx()
    ctx.history.append(StepRecord(before, [a.ActionResult(ok=True), a.ActionResult.failure("x")]))
    fake.add(text_message("Done."))
    try:
        assert await brain.step(ctx, observe(brain, (1280, 800))) == Done(result="Done.")
    finally:
        await brain.close()
    (body,) = fake.bodies()
    assert len(body["messages"]) == 1
    first = body["messages"][0]["content"][0]["text"]
    assert "Steps already taken on this task" in first and '"x": 5' in first
    assert "failed: x" in first


async def test_usage_counts_cache_tokens_and_replies_that_are_not_messages_fail(
    fake: FakeAnthropicServer,
) -> None:
    seen: list[Any] = []
    brain = AnthropicBrain(
        BrainConfig(kind="anthropic", model="claude-sonnet-4-5", base_url=fake.base_url),
        on_usage=seen.append,
    )
    fake.add(
        message(text("ok"), input_tokens=10, cache_creation=200, cache_read=3000, output_tokens=7),
        raw_reply(b"<html>502 Bad Gateway</html>"),
        raw_reply(b'{"type": "completion"}', "application/json"),
    )
    obs = observe(brain, (1280, 800))
    try:
        await brain.step(new_ctx(), obs)
        with pytest.raises(BrainError, match=r"not JSON \(text/html\).*502 Bad Gateway"):
            await brain.step(new_ctx(), obs)
        with pytest.raises(BrainError, match="not a message"):
            await brain.step(new_ctx(), obs)
    finally:
        await brain.close()
    assert [(u.input_tokens, u.output_tokens, u.model) for u in seen] == [
        (3210, 7, "claude-sonnet-4-5")
    ]
    assert brain.usage == seen


async def test_zoom_shows_the_region_at_full_resolution_in_its_tool_result(
    fake: FakeAnthropicServer,
) -> None:
    """Zoom on the stand-in desktop: the region of the screen under the model's region,
    magnified to the image size, comes back in the zoom's tool result."""
    from tests.fakes.task_desktop import StandInDesktop

    desktop = StandInDesktop((1920, 1080))
    desktop.screen.paste((255, 0, 0), (960, 540, 1920, 1080))  # the bottom-right quarter red
    brain = new_brain(fake, "claude-opus-4-6")
    fake.add(
        message(computer("zoom", region=[683, 384, 1366, 768], id="z1")), text_message("Seen.")
    )
    ctx = new_ctx()
    obs = observe(brain, desktop.size)
    try:
        decision = await brain.step(ctx, obs)
        assert decision == Act(
            actions=[a.Zoom(x0=960, y0=540, x1=1920, y1=1080, width=1365, height=768)]
        )
        result = await desktop.act(decision.actions[0])
        assert result.ok and result.image is not None
        assert "image" not in result.model_dump(mode="json")
        ctx.history.append(StepRecord(decision, [result]))
        assert await brain.step(ctx, observe(brain, desktop.size)) == Done(result="Seen.")
    finally:
        await brain.close()
        desktop.close()
    answer = fake.bodies()[1]["messages"][-1]["content"]
    assert answer[0]["tool_use_id"] == "z1" and "is_error" not in answer[0]
    (zoomed,) = images(answer[0]["content"])
    with Image.open(io.BytesIO(base64.b64decode(zoomed["source"]["data"]))) as image:
        assert image.size == (1365, 768)
        assert image.convert("RGB").getpixel((10, 10)) == (255, 0, 0)
    assert answer[1]["type"] == "text" and answer[2]["type"] == "image"  # the screen after


def test_the_desktop_encodes_a_zoomed_region() -> None:
    from orchestrator.desktop._screen import Frame, encode

    # 4x2 BGRA: the right half red
    red, blue = bytes([0, 0, 255, 0]), bytes([255, 0, 0, 0])
    frame = Frame(4, 2, (blue * 2 + red * 2) * 2, 0.0)
    data = encode(frame, "png", box=(2, 0, 4, 2), size=(20, 20))
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (20, 20)
        assert {image.convert("RGB").getpixel((x, y)) for x in range(20) for y in range(20)} == {
            (255, 0, 0)
        }


async def test_a_click_without_a_coordinate_acts_where_the_pointer_was_left(
    fake: FakeAnthropicServer,
) -> None:
    brain = new_brain(fake, max_tokens=1000, temperature=0.2)
    fake.add(
        message(computer("mouse_move", coordinate=[683, 384])),
        message(computer("left_click"), computer("cursor_position", id="where")),
        text_message("ok"),
    )
    ctx = new_ctx()
    try:
        moved = await brain.step(ctx, observe(brain, (1920, 1080)))
        assert moved == Act(actions=[a.Move(x=960, y=540)])
        ctx.history.append(
            StepRecord(moved, [a.ActionResult(ok=True, cursor=a.Point(x=960, y=540))])
        )
        clicked = await brain.step(ctx, observe(brain, (1920, 1080)))
        assert clicked == Act(actions=[a.Click(x=960, y=540), a.CursorPosition()])
        ctx.history.append(
            StepRecord(
                clicked,
                [
                    a.ActionResult(ok=True, cursor=a.Point(x=960, y=540)),
                    a.ActionResult(ok=True, cursor=a.Point(x=1919, y=1079)),
                ],
            )
        )
        await brain.step(ctx, observe(brain, (1920, 1080)))
    finally:
        await brain.close()
    body = fake.bodies()[2]
    assert body["max_tokens"] == 1000 and "temperature" not in body  # the SDK takes none
    where = next(b for b in body["messages"][-1]["content"] if b.get("tool_use_id") == "where")
    # the pointer is shown back in the model's space
    assert where["content"][0]["text"] == "done; the pointer is at (1365, 767)"
