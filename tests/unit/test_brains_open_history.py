"""Open-model brains over several steps: the history each family is shown, its image budget,
results told back, a history from before a restart, and malformed replies retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import actions as a
from orchestrator.actions import ActionResult, Point
from orchestrator.brains import BrainContext, StepRecord
from orchestrator.brains._open import OpenModelBrain
from orchestrator.domain import Act, Ask, AwaitApproval, BrainConfig, Decision, Done, Family
from orchestrator.errors import BrainError
from tests.fakes.openai_server import CHAT, FakeOpenAIServer, chat_text
from tests.unit.test_brains_open import context, images, opencua_code, qwen_call, shot, texts, url

SCREEN = (1280, 800)
IMAGE = (1288, 812)  # smart_resize, factor 28


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


def brain_for(fake: FakeOpenAIServer, family: Family, model: str, **kw: Any) -> OpenModelBrain:
    config = BrainConfig(kind="openai", family=family, model=model, **kw)
    return OpenModelBrain(config, client=fake.client())


def roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"]]


def assistant_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "assistant"]


def uitars(n: int) -> str:
    return f"Thought: step {n}.\nAction: click(start_box='({100 + n},{200 + n})')"


async def run_steps(
    brain: OpenModelBrain, fake: FakeOpenAIServer, replies: list[str]
) -> BrainContext:
    """Each reply is one step; every action succeeded."""
    ctx = context()
    for i, reply in enumerate(replies):
        fake.add(chat_text(reply))
        decision = await brain.step(ctx, shot(i, IMAGE, SCREEN))
        assert isinstance(decision, Act), decision
        ctx.history.append(StepRecord(decision, [ActionResult(ok=True)] * len(decision.actions)))
    return ctx


async def test_uitars_history_keeps_the_last_images_and_every_thought(
    fake: FakeOpenAIServer,
) -> None:
    brain = brain_for(fake, "uitars", "UI-TARS-1.5-7B", max_images=3)
    ctx = await run_steps(brain, fake, [uitars(n) for n in range(4)])
    fake.add(chat_text("Thought: done.\nAction: finished(content='ok')"))
    assert isinstance(await brain.step(ctx, shot(4, IMAGE, SCREEN)), Done)

    body = fake.bodies(CHAT)[-1]
    # the prompt, then one assistant reply per step (the box tokens put back), the images of
    # the last two steps before their replies, and the current screen
    assert roles(body) == [
        "system",
        "user",
        "assistant",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert body["messages"][0]["content"] == "You are a helpful assistant."
    boxed = "Thought: step {n}.\nAction: click(start_box='<|box_start|>({x},{y})<|box_end|>')"
    assert assistant_texts(body) == [boxed.format(n=n, x=100 + n, y=200 + n) for n in range(4)]
    assert images(body) == [url(2), url(3), url(4)]
    # earlier requests: the first had one image, each later one more, up to three
    assert [len(images(b)) for b in fake.bodies(CHAT)] == [1, 2, 3, 3, 3]


async def test_qwen_history_lists_older_steps_and_keeps_the_last_images(
    fake: FakeOpenAIServer,
) -> None:
    brain = brain_for(fake, "qwen-vl", "Qwen2.5-VL-7B-Instruct", max_images=2)
    replies = [
        qwen_call({"action": "left_click", "coordinate": [10 * n, 20]}, f"Action: press {n}")
        for n in range(3)
    ]
    ctx = await run_steps(brain, fake, replies)
    fake.add(chat_text(qwen_call({"action": "terminate", "status": "success"})))
    assert isinstance(await brain.step(ctx, shot(3, IMAGE, SCREEN)), Done)

    body = fake.bodies(CHAT)[-1]
    assert roles(body) == ["system", "user", "assistant", "user"]
    assert "The screen's resolution is 1288x812." in body["messages"][0]["content"]
    assert assistant_texts(body) == [replies[2]]
    assert images(body) == [url(2), url(3)]
    prompt = texts({"messages": [body["messages"][1]]})
    assert "Previous actions:\nStep 1: press 0\nStep 2: press 1" in prompt
    assert "Open the terminal and create a file." in prompt
    # the first request: the screen and the instruction, no previous actions
    first = fake.bodies(CHAT)[0]
    assert roles(first) == ["system", "user"]
    assert "Previous actions:\nNone" in texts(first)


async def test_opencua_history_joins_older_steps_and_keeps_the_last_images(
    fake: FakeOpenAIServer,
) -> None:
    brain = brain_for(fake, "opencua", "OpenCUA-7B")  # 3 images by default
    replies = [opencua_code(f"pyautogui.click(x={n}, y=5)", f"Click number {n}.") for n in range(4)]
    ctx = await run_steps(brain, fake, replies)
    fake.add(chat_text(opencua_code("computer.terminate(status='success')")))
    assert isinstance(await brain.step(ctx, shot(4, IMAGE, SCREEN)), Done)

    body = fake.bodies(CHAT)[-1]
    assert roles(body) == ["system", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert assistant_texts(body) == [
        "# Step 1:\n## Action:\nClick number 0.\n\n# Step 2:\n## Action:\nClick number 1.\n",
        "# Step 3:\n## Action:\nClick number 2.\n",
        "# Step 4:\n## Action:\nClick number 3.\n",
    ]
    assert images(body) == [url(2), url(3), url(4)]
    last = body["messages"][-1]["content"]
    assert last[0]["image_url"]["url"] == url(4)
    assert "# Task Instruction:\nTask (task-9):\nOpen the terminal" in last[1]["text"]


async def test_a_failed_action_and_the_pointer_are_told_in_model_space(
    fake: FakeOpenAIServer,
) -> None:
    brain = brain_for(fake, "uitars", "UI-TARS-7B-DPO")  # 0..1000
    ctx = context()
    fake.add(
        chat_text(
            "Thought: two things.\nAction: click(start_box='(500,500)')\n\nhotkey(key='ctrl q')"
        )
    )
    decision = await brain.step(ctx, shot(0, IMAGE, SCREEN))
    assert isinstance(decision, Act) and len(decision.actions) == 2
    ctx.history.append(
        StepRecord(
            decision,
            [ActionResult(ok=False, error="no window to click", cursor=Point(x=640, y=400))],
        )
    )
    fake.add(chat_text("Thought: ok.\nAction: wait()"))
    await brain.step(ctx, shot(1, IMAGE, SCREEN))

    last = fake.bodies(CHAT)[-1]["messages"][-1]["content"]
    assert last[0]["type"] == "text"
    assert last[0]["text"] == (
        "Action 1 (click) failed: no window to click; the pointer is at (500, 500)\n"
        "Action 2 (keypress) was not carried out."
    )
    assert last[1]["image_url"]["url"] == url(1)


async def test_a_persons_answer_is_told(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, "uitars", "UI-TARS-1.5-7B")
    ctx = context()
    fake.add(chat_text("Thought: What should the file be called?\nAction: call_user()"))
    asked = await brain.step(ctx, shot(0, IMAGE, SCREEN))
    assert isinstance(asked, Ask)
    ctx.history.append(StepRecord(asked, [], answer="notes.txt"))
    fake.add(chat_text("Thought: ok.\nAction: wait()"))
    await brain.step(ctx, shot(1, IMAGE, SCREEN))

    body = fake.bodies(CHAT)[-1]
    assert assistant_texts(body) == [
        "Thought: What should the file be called?\nAction: call_user()"
    ]
    assert body["messages"][-1]["content"][0] == {
        "type": "text",
        "text": "The user answered: notes.txt",
    }


FOREIGN: Decision = Act(
    actions=[
        a.Click(x=640, y=400),
        a.TypeText(text="it's"),
        a.KeyPress(keys=["ctrl+s"]),
    ],
    thought="save it",
)


@pytest.mark.parametrize(
    ("family", "model", "expected"),
    [
        (
            "uitars",
            "UI-TARS-1.5-7B",
            "Thought: save it\nAction: click(start_box='<|box_start|>(644,406)<|box_end|>')"
            "\n\ntype(content='it\\'s')\n\nhotkey(key='ctrl s')",
        ),
        (
            "qwen-vl",
            "Qwen3-VL-8B-Instruct",
            "save it\n<tool_call>\n"
            + json.dumps(
                {
                    "name": "computer_use",
                    "arguments": {"action": "left_click", "coordinate": [500, 500]},
                }
            )
            + "\n</tool_call>\n<tool_call>\n"
            + json.dumps({"name": "computer_use", "arguments": {"action": "type", "text": "it's"}})
            + "\n</tool_call>\n<tool_call>\n"
            + json.dumps(
                {"name": "computer_use", "arguments": {"action": "key", "keys": ["ctrl", "s"]}}
            )
            + "\n</tool_call>",
        ),
        ("opencua", "OpenCUA-7B", "# Step 1:\n## Action:\nsave it\n"),
    ],
)
async def test_a_history_from_before_a_restart_is_rendered_in_the_family_format(
    fake: FakeOpenAIServer, family: Family, model: str, expected: str
) -> None:
    brain = brain_for(fake, family, model)
    ctx = context()
    ctx.history.append(StepRecord(FOREIGN, [ActionResult(ok=True)] * 3))
    fake.add(
        chat_text(
            {
                "uitars": "Thought: x\nAction: wait()",
                "qwen-vl": qwen_call({"action": "wait", "time": 1}),
                "opencua": opencua_code("computer.wait()"),
            }[family]
        )
    )
    image = brain.image_size(SCREEN)
    await brain.step(ctx, shot(1, image, SCREEN))

    body = fake.bodies(CHAT)[-1]
    assert assistant_texts(body) == [expected]
    # no screen is kept for a step this brain did not see: only the current one is sent
    assert images(body) == [url(1)]


@pytest.mark.parametrize(
    ("family", "model", "bad", "wording"),
    [
        (
            "uitars",
            "UI-TARS-1.5-7B",
            "Thought: hmm\nAction: fly(to='moon')",
            "Thought: ...\nAction: ...",
        ),
        ("qwen-vl", "Qwen2.5-VL-7B-Instruct", qwen_call({"action": "fly"}), "<tool_call>"),
        ("opencua", "OpenCUA-7B", opencua_code("pyautogui.fly()"), "PyAutoGUI"),
    ],
)
async def test_a_malformed_reply_is_fed_back_then_fails(
    fake: FakeOpenAIServer, family: Family, model: str, bad: str, wording: str
) -> None:
    brain = brain_for(fake, family, model, max_retries=1)
    image = brain.image_size(SCREEN)
    fake.add(chat_text(bad), chat_text(bad))
    with pytest.raises(BrainError, match="after 2 attempt") as info:
        await brain.step(context(), shot(0, image, SCREEN))
    assert "fly" in str(info.value)

    first, second = fake.bodies(CHAT)
    assert second["messages"][: len(first["messages"])] == first["messages"]
    bad_turn, error = second["messages"][len(first["messages"]) :]
    assert bad_turn == {"role": "assistant", "content": bad}
    assert error["role"] == "user"
    assert error["content"].startswith("Your last reply could not be carried out: ")
    assert "fly" in error["content"] and wording in error["content"]


async def test_a_retried_reply_that_is_good_is_the_decision(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, "uitars", "UI-TARS-1.5-7B", max_retries=2)
    fake.add(
        chat_text("I think I should click."),
        chat_text("Thought: ok\nAction: click(start_box='(644,406)')"),
    )
    decision = await brain.step(context(), shot(0, IMAGE, SCREEN))
    assert isinstance(decision, Act)
    assert decision.actions == [a.Click(x=640, y=400)]
    ctx = context()
    ctx.history.append(StepRecord(decision, [ActionResult(ok=True)]))
    fake.add(chat_text("Thought: ok\nAction: wait()"))
    await brain.step(ctx, shot(1, IMAGE, SCREEN))
    # the history holds the reply that was used, not the malformed one
    assert assistant_texts(fake.bodies(CHAT)[-1]) == [
        "Thought: ok\nAction: click(start_box='<|box_start|>(644,406)<|box_end|>')"
    ]


async def test_an_empty_reply_is_retried(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, "uitars", "UI-TARS-1.5-7B", max_retries=0)
    fake.add(chat_text(""))
    with pytest.raises(BrainError, match="the reply was empty"):
        await brain.step(context(), shot(0, IMAGE, SCREEN))


async def test_check_acts_on_the_check_text(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, "uitars", "UI-TARS-1.5-7B")
    fake.add(chat_text("Thought: verified.\nAction: finished(content='all good')"))
    done = await brain.check(context(), shot(0, IMAGE, SCREEN), {"a": "made the file"})
    assert done == Done(result="all good", thought="verified.")
    words = texts(fake.bodies(CHAT)[0])
    assert "the specialists reported:\n- a: made the file" in words


async def test_a_refused_approval_is_told(fake: FakeOpenAIServer) -> None:
    brain = brain_for(fake, "uitars", "UI-TARS-1.5-7B")
    ctx = context()
    pending = AwaitApproval(actions=[a.KeyPress(keys=["ctrl+q"])], reason="quits the app")
    ctx.history.append(StepRecord(pending, [], answer="refused: keep it open"))
    fake.add(chat_text("Thought: ok.\nAction: wait()"))
    await brain.step(ctx, shot(1, IMAGE, SCREEN))

    body = fake.bodies(CHAT)[-1]
    assert assistant_texts(body) == ["Thought: quits the app\nAction: hotkey(key='ctrl q')"]
    assert body["messages"][-1]["content"][0]["text"] == (
        "Action 1 (keypress) was not carried out.\n"
        "The user's verdict on these actions: refused: keep it open"
    )
