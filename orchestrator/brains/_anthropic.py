"""A brain driven by Claude over the Messages API, with its own computer, bash and text-editor
tools (``_anthropic_tools``).

Screenshots are sent in Claude's space (``FixedSpace``: 1280x800 stays, 1920x1080 is shown
as 1366x768, never over ~1.15 megapixels, which the API would shrink silently), and every
point of a reply is mapped back to the screen pixel under it (``_parse_anthropic``).

Each step's request is the whole episode, rebuilt from ``ctx.history``::

    system     who I am and how to work (cached: cache_control)
    user       the task (and the steps taken before, if this brain did not take them)
               + the screen
    assistant  the reply of step 1, its content blocks as the model sent them
    user       one tool_result per tool_use: the screenshot after the step (on the last
               computer action carried out), a zoom's image, the shell output of bash and
               the editor, the person's answer to ``ask_user``; is_error with the error
               for a failed action, "not carried out" for those after it
    ...
    (the last user message's last block carries cache_control)

Only the ``max_images`` (default 3) most recent images are sent; older ones become a line of
text. They are dropped in pairs (at most ``max_images``, at least ``max_images - 1`` kept),
so the request stays a stable prefix of the next one every other step.

A reply that cannot be used (an unknown action, bad input, a point outside the screenshot) is
answered with is_error tool results saying what was wrong and asked again up to
``max_retries`` times; then ``BrainError``. A refusal raises ``BrainError`` at once.

Triage and planning ask for a JSON object in the reply's text (the Messages API has no
``response_format``): ``_planner.AnthropicPlanner`` on this brain's connection.

Example:
    >>> from pydantic import SecretStr
    >>> from orchestrator.domain import BrainConfig
    >>> brain = AnthropicBrain(BrainConfig(kind="anthropic", model="claude-sonnet-4-5",
    ...                                    api_key=SecretStr("k")))
    >>> brain.image_size((1920, 1080)), brain.image_size((1280, 800))
    ((1366, 768), (1280, 800))
"""

from __future__ import annotations

import base64
import copy
import io
import json
from dataclasses import dataclass
from typing import Any

from .. import actions as a
from ..coords import Mapper, image_size, model_size
from ..domain import (
    Act,
    Ask,
    BrainConfig,
    Decision,
    Done,
    Fail,
    Plan,
    PlannerConfig,
    Retry,
    Triage,
)
from ..errors import BrainError
from ._anthropic_client import AnthropicClient
from ._anthropic_tools import tool_versions, tools
from ._base import Brain, BrainContext, Observation, StepRecord, UsageCallback
from ._parse_anthropic import ToolUse, read
from ._planner import AnthropicPlanner, close_after_failure
from ._prompts import check_text, task_text, who
from ._spaces import space_of

__all__ = ["AnthropicBrain"]

DEFAULT_MAX_TOKENS = 4096
DEFAULT_MAX_IMAGES = 3
NOT_CARRIED_OUT = "not carried out: an earlier action of this step failed"
NOT_CARRIED_OUT_INVALID = "not carried out: another call of this reply was invalid"
OMITTED = "(screenshot omitted: only the latest are kept)"
_EPHEMERAL = {"type": "ephemeral"}
_ACT = (
    " The computer tool acts on the screen in pixels of the latest screenshot. The bash tool "
    "runs a command on the desktop as its unprivileged user (each in a fresh shell) and the "
    "text editor views and edits files by absolute path: prefer them for files and checks. "
    "When the task is done and verified, reply without a tool call with a short report "
    "holding the facts the requester needs (paths, versions, URLs); if it cannot be done, "
    "reply with `FAILED:` and the reason. When only the person who gave you the task can "
    "answer something, call `ask_user` with the question, alone."
)
MAX_IMAGE_BYTES = 5 * 2**20
"""The Messages API's limit on one image (as base64): a request with a larger one fails."""
ZOOM_TOO_BIG = (
    "not shown: the zoomed image is over the API's 5 MB limit on an image even as a JPEG; "
    "zoom into a smaller region"
)
FAILED_PREFIX = "FAILED:"
"""A final reply starting with this fails the task with the rest as the reason."""


@dataclass
class _Turn:
    decision: Act | Ask
    content: list[Any]
    """The reply's content blocks, as the model sent them."""
    uses: list[ToolUse]
    obs: Observation | None
    """The screen the decision was made on; dropped once too old to be sent again."""


def _image(media_type: str, data: bytes) -> dict[str, Any]:
    return {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": media_type,
            "data": base64.b64encode(data).decode(),
        },
    }


def _base64_size(n: int) -> int:
    return -(-n // 3) * 4


def zoom_image(png: bytes, limit: int = MAX_IMAGE_BYTES) -> dict[str, Any] | None:
    """A zoom's image block: the PNG, or a JPEG of it when the PNG's base64 is over ``limit``
    (the API refuses the whole request for one such image); None when even the JPEG is."""
    if _base64_size(len(png)) <= limit:
        return _image("image/png", png)
    try:
        from PIL import Image  # only for a zoom too big as a PNG

        with Image.open(io.BytesIO(png)) as image:
            rgb = image.convert("RGB")
        for quality in (85, 60, 40):
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=quality)
            if _base64_size(out.tell()) <= limit:
                return _image("image/jpeg", out.getvalue())
    except (ImportError, OSError, ValueError):
        return None
    return None


def _screen(obs: Observation | None) -> dict[str, Any]:
    if obs is None:
        return {"type": "text", "text": OMITTED}
    return _image(obs.media_type, obs.screenshot)


def _tool_result(use_id: str, content: list[dict[str, Any]], *, error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": use_id, "content": content}
    if error:
        block["is_error"] = True
    return block


def _text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def _command_text(result: a.ActionResult) -> str:
    cmd = result.command
    if cmd is None:
        return result.error or ("ok" if result.ok else "failed")
    parts = [cmd.stdout.rstrip("\n")] if cmd.stdout.strip() else []
    if cmd.stderr.strip():
        parts.append(f"[stderr]\n{cmd.stderr.rstrip()}")
    if not cmd.ok:
        parts.append(result.error or f"exit status {cmd.exit_code}")
    text = "\n".join(parts) or "(no output)"
    if len(text) > 8000:
        text = f"{text[:4000]}\n[... {len(text) - 8000} characters cut ...]\n{text[-4000:]}"
    return text


def _rejected(use: ToolUse) -> dict[str, Any]:
    """The answer to a call of a reply that could not be used: nothing was carried out."""
    why = f"not carried out: {use.error}" if use.error else NOT_CARRIED_OUT_INVALID
    return _tool_result(use.id, [_text(why)], error=True)


def _add_user(messages: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    if messages and messages[-1]["role"] == "user":
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": "user", "content": blocks})


def _is_image(block: Any) -> bool:
    """An image block, or the note standing for one already dropped (both count)."""
    return bool(block.get("type") == "image" or block.get("text") == OMITTED)


def _images(messages: list[dict[str, Any]]) -> list[tuple[list[Any], int]]:
    """Where every image (or its note) is: ``(the list holding it, its index)``, oldest first."""
    found: list[tuple[list[Any], int]] = []
    for message in messages:
        content = message["content"]
        if message["role"] != "user" or not isinstance(content, list):
            continue
        for i, block in enumerate(content):
            if _is_image(block):
                found.append((content, i))
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                inner = block["content"]
                found += [(inner, j) for j, b in enumerate(inner) if _is_image(b)]
    return found


def trim_images(messages: list[dict[str, Any]], keep: int) -> None:
    """Replace all but the latest images with a note: at most ``keep`` stay, dropped in
    chunks of ``keep - 1`` so the prefix holds still between drops."""
    found = _images(messages)
    excess = len(found) - keep
    if excess <= 0:
        return
    chunk = max(1, keep - 1)
    drop = -(-excess // chunk) * chunk
    for holder, i in found[:drop]:
        holder[i] = _text(OMITTED)


def _cache(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy with cache breakpoints on the last block of the two latest user messages."""
    out = copy.copy(messages)
    users = [i for i, m in enumerate(out) if m["role"] == "user"][-2:]
    for i in users:
        content = list(out[i]["content"])
        content[-1] = {**content[-1], "cache_control": _EPHEMERAL}
        out[i] = {**out[i], "content": content}
    return out


class AnthropicBrain(Brain):
    """Decides with Claude over the Messages API; one brain per task."""

    def __init__(
        self,
        config: BrainConfig,
        *,
        on_usage: UsageCallback | None = None,
        client: Any = None,
    ) -> None:
        """``client`` (an ``anthropic.AsyncAnthropic``) replaces the one built from the
        config (then it is not closed here)."""
        super().__init__(on_usage=on_usage)
        self.config = config
        self._client = AnthropicClient(config, on_usage=self._record_usage, client=client)
        try:
            self._setup(config)
        except BaseException:  # the client made above is this brain's to close
            close_after_failure(self._client.close)
            raise

    def _setup(self, config: BrainConfig) -> None:
        self._space = space_of(config)
        self.tools = tool_versions(self._client.model)
        """The tool versions this model is given."""
        self._max_images = config.max_images or DEFAULT_MAX_IMAGES
        self._max_tokens = config.max_tokens or DEFAULT_MAX_TOKENS
        self._turns: list[_Turn] = []
        self._check: str | None = None
        # triage and plan: JSON in the text, on the same connection
        self._planner = AnthropicPlanner(
            PlannerConfig(api="anthropic", model=self._client.model),
            client=self._client.sdk,
            on_usage=self._record_usage,
            max_retries=config.max_retries,
            max_tokens=self._max_tokens,
        )

    @property
    def model(self) -> str:
        """The model asked on every call."""
        return self._client.model

    def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
        return image_size(self._space, screen)

    # ------------------------------------------------------------------ triage and plan

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        return await self._planner.triage(ctx, obs)

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        plan = await self._planner.plan(ctx, obs)
        self._check = plan.check
        return plan

    # ------------------------------------------------------------------ acting

    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        return await self._decide(ctx, obs, task_text(ctx))

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        return await self._decide(ctx, obs, check_text(ctx, results, self._check))

    async def _decide(self, ctx: BrainContext, obs: Observation, task: str) -> Decision:
        """The next step: ``Act``, ``Done`` or ``Fail``."""
        system = who(ctx, obs) + _ACT
        system_blocks = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
        mapper = Mapper(model_size(self._space, obs.screen_size), obs.screen_size)
        messages = self._messages(ctx, obs, task, mapper)
        declared = tools(self.tools, obs.size)
        cursor = _cursor(ctx.history)
        problem = "no reply"
        for _ in range(self.config.max_retries + 1):
            request = copy.deepcopy(messages)
            trim_images(request, self._max_images)
            reply = await self._client.create(
                betas=[self.tools.beta],
                system=system_blocks,
                tools=declared,
                messages=_cache(request),
                max_tokens=self._max_tokens,
            )
            parsed = read(reply, mapper, cursor=cursor)
            decision = parsed.decision
            if isinstance(decision, Fail):
                raise BrainError(f"the model refused to act: {parsed.text or 'no reason given'}")
            if isinstance(decision, Act | Ask):
                self._turns.append(_Turn(decision, list(reply["content"]), parsed.uses, obs))
                for old in self._turns[: -(self._max_images + 1)]:
                    old.obs = None
                return decision
            if isinstance(decision, Done):
                if decision.result.startswith(FAILED_PREFIX):
                    reason = decision.result.removeprefix(FAILED_PREFIX).strip()
                    return Fail(reason=reason or "the model gave up")
                return decision
            if not isinstance(decision, Retry):  # pragma: no cover - parse returns no other
                raise BrainError(f"unexpected decision {decision.kind!r}")
            problem = decision.error
            if reply["content"]:
                messages.append({"role": "assistant", "content": reply["content"]})
            _add_user(messages, [_rejected(u) for u in parsed.uses])
            _add_user(messages, [_text(f"Nothing was done: {problem}. Send a corrected reply.")])
        raise BrainError(
            f"no usable step decision after {self.config.max_retries + 1} attempt(s): {problem}"
        )

    def _turn(self, record: StepRecord) -> _Turn | None:
        for turn in reversed(self._turns):
            if turn.decision is record.decision:
                return turn
        return None

    def _messages(
        self, ctx: BrainContext, obs: Observation, task: str, mapper: Mapper
    ) -> list[dict[str, Any]]:
        history = ctx.history
        turns = [self._turn(r) for r in history]
        # the steps before the last one this brain did not take are told in words
        start = max((i + 1 for i, t in enumerate(turns) if t is None), default=0)
        own = turns[start:]
        screens = [t.obs if t else None for t in own] + [obs]
        first = _text(task + _summary(history[:start]) + "\n\nThe screen now:")
        messages: list[dict[str, Any]] = [{"role": "user", "content": [first, _screen(screens[0])]}]
        for k, (record, turn) in enumerate(zip(history[start:], own, strict=True)):
            if turn is None:  # pragma: no cover - start skips every foreign record
                continue
            messages.append({"role": "assistant", "content": copy.deepcopy(turn.content)})
            _add_user(messages, self._results(record, turn, screens[k + 1], mapper))
        return messages

    def _results(
        self, record: StepRecord, turn: _Turn, after: Observation | None, mapper: Mapper
    ) -> list[dict[str, Any]]:
        """The tool results of one step, and the screen after it."""
        results = record.results
        shown = [
            u
            for u in turn.uses
            if u.kind == "computer"
            and u.action is not None
            and u.action < len(results)
            and results[u.action].ok
            and not isinstance(record.actions[u.action], a.Zoom)
        ]
        carrier = shown[-1].id if shown else None
        blocks: list[dict[str, Any]] = []
        for use in turn.uses:
            if use.note is not None:
                blocks.append(_tool_result(use.id, [_text(use.note)], error=False))
                continue
            if use.question is not None:
                answer = f"The person answered: {record.answer or '(no answer)'}"
                blocks.append(_tool_result(use.id, [_text(answer)], error=False))
                continue
            if use.action is None or use.action >= len(results):
                blocks.append(_tool_result(use.id, [_text(NOT_CARRIED_OUT)], error=True))
                continue
            result = results[use.action]
            if use.kind != "computer":
                blocks.append(
                    _tool_result(use.id, [_text(_command_text(result))], error=not result.ok)
                )
            elif not result.ok:
                blocks.append(_tool_result(use.id, [_text(result.error or "failed")], error=True))
            else:
                content = [_text(_computer_text(result, mapper))]
                too_big = False
                if result.image is not None:  # a zoom's
                    zoomed = zoom_image(result.image)
                    too_big = zoomed is None
                    content = [_text(ZOOM_TOO_BIG)] if zoomed is None else [*content, zoomed]
                if use.id == carrier:
                    content.append(_screen(after))
                blocks.append(_tool_result(use.id, content, error=too_big))
        if carrier is None:
            blocks += [_text("The screen after this step:"), _screen(after)]
        if record.answer is not None and not isinstance(record.decision, Ask):
            blocks.append(_text(f"A person answered: {record.answer}"))
        return blocks

    async def close(self) -> None:
        await self._client.close()


def _computer_text(result: a.ActionResult, mapper: Mapper) -> str:
    if result.cursor is None:
        return "done"
    x, y = mapper.to_model(result.cursor.x, result.cursor.y)
    return f"done; the pointer is at ({x}, {y})"


def _cursor(history: list[StepRecord]) -> tuple[int, int] | None:
    """Where the pointer was after the last action that told (screen pixels)."""
    for record in reversed(history):
        for result in reversed(record.results):
            if result.cursor is not None:
                return (result.cursor.x, result.cursor.y)
    return None


def _summary(history: list[StepRecord]) -> str:
    """Steps taken before this conversation began (a history this brain did not write)."""
    if not history:
        return ""
    lines = []
    for i, record in enumerate(history, 1):
        done = ", ".join(
            f"{json.dumps(x.model_dump(mode='json'))}: {'ok' if r.ok else f'failed: {r.error}'}"
            for x, r in zip(record.actions, record.results, strict=False)
        )
        answer = f" (a person answered: {record.answer})" if record.answer is not None else ""
        lines.append(f"{i}. {done or 'nothing carried out'}{answer}")
    return "\n\nSteps already taken on this task (screen pixels):\n" + "\n".join(lines)
