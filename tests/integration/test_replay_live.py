"""Real model replies, recorded by others (``tests/fixtures/replay``), replayed into real
desktops: each fixture's reply is served by the fake model server of its family to an agent
whose brain is of that family, in the fixture's coordinate space, on a desktop of the
fixture's screen size. The brain parses the reply, the runner carries the actions out on the
desktop, and the cursor after each pointing action must be at the screen pixel the fixture
worked out by hand.

One agent per (family, space, screen size); one task per fixture on it: the triage its
family asks for, the fixture's reply, then the family's way of finishing (not asked for
when the fixture's reply ends the task itself). A reply the brain cannot use is fed back
and the next reply finishes (nothing is done on the screen); a computer call with a pending
safety check waits for a person's approval, which the test gives, then lands.
``tests/unit/test_replay.py`` replays the same fixtures through ``parse_reply`` alone.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator import coords
from orchestrator.actions import parse_action
from orchestrator.brains import _spaces
from orchestrator.domain import Act, AgentSpec, BrainConfig, EventKind, TaskSpec, TaskState
from orchestrator.policy import ApprovalPolicy
from tests.fakes import anthropic_server as ant
from tests.fakes import openai_server as oai
from tests.fakes.replay import Fixture, check, load_fixtures
from tests.integration.test_brains_live import images_in

pytestmark = pytest.mark.timeout(300)

Size = tuple[int, int]
FIXTURES = load_fixtures()


# ---------------------------------------------------------------------- how each family talks


@dataclass(frozen=True)
class Wire:
    """How a family's fake model serves a fixture: which server, the triage before it (if
    the family's brain asks for one), the fixture's reply itself, and the end after it."""

    server: str
    triage: Callable[[], list[Any]]
    reply: Callable[[Any], Any]
    finish: Callable[[], Any]


_TRIAGE = {"decision": "do", "reason": "replaying a recorded reply"}
_replayed = itertools.count(1)


def _whole_response(body: dict[str, Any]) -> dict[str, Any]:
    """A recorded Responses body with the envelope a server always sends filled in where the
    recording kept only the ``output`` (the Azure docs' sample): without an ``id`` the brain
    could not chain its next request to it (``previous_response_id``)."""
    envelope = {
        "id": f"resp_replayed_{next(_replayed)}",
        "object": "response",
        "created_at": 0,
        "status": "completed",
    }
    return {**envelope, **body}


def _qwen_terminate() -> Any:
    call = json.dumps(
        {"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}
    )
    return oai.chat_text(f"<tool_call>\n{call}\n</tool_call>")


WIRES: dict[str, Wire] = {
    "openai-responses": Wire(
        "openai",
        lambda: [oai.responses_reply(oai.message_item(json.dumps(_TRIAGE)))],
        lambda body: oai.Reply(oai.RESPONSES, _whole_response(body)),
        lambda: oai.responses_reply(oai.message_item("replayed")),
    ),
    "chat-tools": Wire(
        "openai",
        lambda: [oai.chat_json(_TRIAGE)],
        lambda body: oai.Reply(oai.CHAT, body),
        lambda: oai.chat_tool_calls(oai.tool_call("done", {"result": "replayed"})),
    ),
    "anthropic": Wire(
        "anthropic",
        lambda: [ant.text_message(json.dumps(_TRIAGE))],
        lambda body: ant.Reply(body),
        lambda: ant.text_message("replayed"),
    ),
    "uitars": Wire(
        "openai",
        lambda: [],
        oai.chat_text,
        lambda: oai.chat_text("Thought: done.\nAction: finished(content='replayed')"),
    ),
    "qwen-vl": Wire("openai", lambda: [], oai.chat_text, _qwen_terminate),
    "opencua": Wire(
        "openai",
        lambda: [],
        oai.chat_text,
        lambda: oai.chat_text("## Code\n```python\ncomputer.terminate(status='success')\n```"),
    ),
}


# ---------------------------------------------------------------------- the groups


def space_for(f: Fixture) -> Any:
    """The coordinate space in which the family's brain answers in the fixture's
    ``model_size`` on its screen: the family's default for the model when it fits, else the
    first of native, grid, Anthropic's rule, 0..1000 that does."""
    candidates = [
        _spaces.default_space(f.family, f.model),
        coords.NativeSpace(),
        coords.GridSpace(),
        coords.FixedSpace(),
        coords.NormSpace(),
    ]
    for space in candidates:
        if coords.model_size(space, f.screen_size) == f.model_size:
            return space
    raise AssertionError(f"{f.name}: no space answers in {f.model_size} on {f.screen_size}")


@dataclass(frozen=True)
class Group:
    family: str
    space: Any
    screen: Size
    fixtures: tuple[Fixture, ...]

    @property
    def id(self) -> str:
        w, h = self.screen
        return f"{self.family}-{self.space.kind}-{w}x{h}"


def groups() -> list[Group]:
    found: dict[tuple[str, str, Size], list[Fixture]] = {}
    spaces: dict[tuple[str, str, Size], Any] = {}
    for f in FIXTURES:
        space = space_for(f)
        key = (f.family, space.model_dump_json(), f.screen_size)
        found.setdefault(key, []).append(f)
        spaces[key] = space
    out = []
    for key, fixtures in found.items():
        out.append(Group(key[0], spaces[key], key[2], tuple(fixtures)))
    return out


GROUPS = groups()


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, Any]]:
    """Both fake model servers (threads on loopback ports), by ``Wire.server``."""
    servers = {
        "openai": oai.FakeOpenAIServer().start(),
        "anthropic": ant.FakeAnthropicServer().start(),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.close()


def test_every_fixture_is_replayed() -> None:
    assert len(FIXTURES) >= 12
    assert sorted(f.name for g in GROUPS for f in g.fixtures) == sorted(f.name for f in FIXTURES)


OUT_OF_STEP = "(the fake's script is out of step: stopping)"


async def run_task(agents: Any, agent_id: str, f: Fixture) -> Any:
    """Run the fixture's task to its end; a fixture whose decision awaits approval (a pending
    safety check) is approved by a person, as the runtime offers."""
    task = await agents.runtime.assign(agent_id, TaskSpec(description=f"replay {f.name}"))
    if f.expect.kind == "await_approval":

        async def waiting() -> bool:
            state = (await agents.runtime.task(task.id)).state
            return bool(state == TaskState.APPROVAL_REQUIRED or state.done)

        await agents.until(waiting, timeout_s=60, what=f"{f.name} awaiting approval")
        if (await agents.runtime.task(task.id)).state == TaskState.APPROVAL_REQUIRED:
            await agents.runtime.approve(task.id)
    done = await agents.runtime.wait(task.id, 60)
    assert done.state.done, f"{f.name}: task {task.id} did not end: {done!r}"
    return done


async def replay(
    agents: Any, agent_id: str, fake: Any, wire: Wire, f: Fixture, image: Size
) -> list[str]:
    """One fixture as one task; what went wrong (empty when nothing did)."""
    kind = f.expect.kind
    ends = kind in ("done", "fail")
    fake.add(*wire.triage(), wire.reply(f.reply), *([] if ends else [wire.finish()]))
    seen = len(fake.requests)
    done = await run_task(agents, agent_id, f)
    want_state = TaskState.FAILED if kind == "fail" else TaskState.SUCCEEDED
    if done.state != want_state:
        return [f"{f.name}: task {done.state.value}: {done.error} {OUT_OF_STEP}"]
    fake.verify()
    problems = []
    sizes = {img.size for r in fake.requests[seen:] for img in images_in(r.body)}
    if sizes != {image}:
        problems.append(f"{f.name}: screenshots of {sizes}, expected {image}")
    events = await agents.events(task_id=done.id)
    steps = [e.data for e in events if e.kind == EventKind.STEP]
    if kind == "await_approval":  # approved: the checks are acknowledged to the model
        pending = [
            c["id"]
            for item in f.reply.get("output", [])
            if item.get("type") == "computer_call"
            for c in item.get("pending_safety_checks", [])
        ]
        acked = [i for r in fake.requests[seen:] for i in _items(r.body, "computer_call_output")]
        ids = (
            [c.get("id") for c in (acked[-1].get("acknowledged_safety_checks") or [])]
            if acked
            else []
        )
        if not pending or ids != pending:
            problems.append(f"{f.name}: approved checks {pending}, acknowledged {ids}")
    if kind in ("done", "fail", "retry"):  # nothing done on the screen
        if steps:
            problems.append(f"{f.name}: a {kind} decision, yet the runner did {steps}")
        return problems
    acted = Act(actions=[parse_action(s["action"]) for s in steps])
    problems += [
        f"{f.name}: {p}" for p in check(acted, f.expect.model_copy(update={"kind": "act"}))
    ]
    for s in steps:
        want = _point_after(s["action"])
        cursor = s["result"].get("cursor")
        if not s["result"]["ok"]:
            problems.append(f"{f.name}: {s['action']} failed: {s['result'].get('error')}")
        elif want is not None and (cursor is None or (cursor["x"], cursor["y"]) != want):
            problems.append(f"{f.name}: {s['action']['type']} at {want}, cursor {cursor}")
    return problems


def _items(body: Any, kind: str) -> list[dict[str, Any]]:
    """The input items of a Responses request of type ``kind``."""
    items = body.get("input")
    return (
        [i for i in items if isinstance(i, dict) and i.get("type") == kind]
        if isinstance(items, list)
        else []
    )


def _point_after(action: dict[str, Any]) -> tuple[int, int] | None:
    """Where the cursor must be after ``action`` (screen pixels), if it points anywhere."""
    if action.get("path"):
        last = action["path"][-1]
        return (last["x"], last["y"])
    if action.get("x") is not None and action.get("y") is not None:
        return (action["x"], action["y"])
    return None


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.id)
async def test_recorded_replies_land_where_expected(
    agents: Any, fakes: dict[str, Any], group: Group
) -> None:
    from orchestrator.desktop import DesktopSpec

    wire = WIRES[group.family]
    fake = fakes[wire.server]
    width, height = group.screen
    brain = BrainConfig(
        kind="anthropic" if group.family == "anthropic" else "openai",
        family=group.family,
        model=group.fixtures[0].model,
        base_url=fake.base_url,
        api_key="sk-test-replay",
        space=group.space,
        max_retries=1,
    )
    image = coords.image_size(group.space, group.screen)
    spec = AgentSpec(
        name="replay",
        role="replayer",
        brain=brain,
        desktop=DesktopSpec(image=agents.session.image, width=width, height=height),
        policy=ApprovalPolicy(safety_checks="ask"),  # a pending safety check asks a person
    )
    info = await agents.runtime.create_agent(agents.tenant, spec)
    agents.created.append(info)

    problems: list[str] = []
    for f in group.fixtures:
        problems += await replay(agents, info.id, fake, wire, f, image)
        if problems and problems[-1].endswith(OUT_OF_STEP):
            break
    assert not problems, "\n".join(problems)
