"""Structured decisions (triage, plan): a JSON reply validated by pydantic, retried when bad.

The model is asked for JSON matching a schema generated from a *reply* model (every field
required, no defaults, ``additionalProperties: false``: what OpenAI's strict mode demands).
The schema is sent as ``response_format`` and also written into the instructions, since some
servers ignore ``response_format`` (Anthropic's OpenAI-compatible endpoint, some gateways):
their replies (JSON in prose, or in a Markdown fence) are read with ``parse_json_reply``, the
one reader of JSON in text (the Anthropic planner uses it too). A server that *rejects*
``response_format`` (HTTP 400 naming it) is asked again without it, and is not sent it again
for the rest of the task (the brain's client is remembered). The reply is then turned into
the domain model (``Triage``, ``Plan``), whose own constraints (id patterns, lengths, a
dependency graph without cycles) are checked too. A reply that fails any of this is answered
with what was wrong and asked again, up to ``max_retries`` times; then ``BrainError`` names
the last problem. A refusal is final.
"""

from __future__ import annotations

import json
import logging
import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..domain import Plan
from ..errors import BrainError
from ._base import Observation
from ._client import ModelClient
from ._parse_responses import reply_texts
from ._parse_text import MAX_REFUSAL_CHARS, cut
from ._tools import describe_validation_error

__all__ = [
    "CUT_SHORT",
    "PlanReply",
    "TriageReply",
    "ask_structured",
    "json_instructions",
    "nudge",
    "parse_json_reply",
    "plan_from",
    "rejects_format",
    "strict_schema",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriageReply(_Reply):
    """The model's triage, as it writes it."""

    decision: Literal["do", "delegate"]
    reason: str


class ReviewReply(_Reply):
    """A reviewer for a subtask, as the model writes it (``Review``)."""

    role: str = Field(description="The reviewer's expertise.")
    rounds: int = Field(description="Most review rounds (1 to 5).")
    instructions: str | None = Field(description="What the reviewer must check.")


class SubtaskReply(_Reply):
    """One subtask, as the model writes it (``outputs`` and ``review`` may be left out of a
    reply; the schema asks for them)."""

    id: str
    role: str
    description: str
    depends_on: list[str]
    outputs: list[str] = Field(
        default_factory=list,
        description="Files the specialist produces (kept, and copied to its reviewer).",
    )
    review: ReviewReply | None = Field(
        default=None,
        description="A reviewer who checks the result and may send it back with feedback.",
    )


class PlanReply(_Reply):
    """The model's plan, as it writes it."""

    subtasks: list[SubtaskReply]
    check: str | None


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without titles, every field required (strict mode's rule;
    a reply that leaves out a field with a default still parses)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: strip(v) for k, v in node.items() if k not in ("title", "default")}
            if isinstance(out.get("properties"), dict):
                out["required"] = list(out["properties"])
            return out
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    schema: dict[str, Any] = strip(model.model_json_schema())
    return schema


def plan_from(reply: PlanReply) -> Plan:
    """The domain ``Plan`` of a reply; raises ``ValueError`` saying what is wrong with it."""
    try:
        plan = Plan.model_validate(reply.model_dump())
    except ValidationError as e:
        raise ValueError(describe_validation_error(e)) from None
    ids = [st.id for st in plan.subtasks]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"subtask ids must be unique; repeated: {repeated}")
    for st in plan.subtasks:
        unknown = [d for d in st.depends_on if d not in ids]
        if unknown:
            raise ValueError(f"subtask {st.id} depends on unknown subtasks {unknown}")
    deps = {st.id: st.depends_on for st in plan.subtasks}
    done: set[str] = set()
    while len(done) < len(deps):
        ready = [i for i, d in deps.items() if i not in done and set(d) <= done]
        if not ready:
            raise ValueError(f"the dependencies form a cycle among {sorted(set(deps) - done)}")
        done.update(ready)
    return plan


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


def _json_candidates(text: str) -> Iterator[Any]:
    """The JSON values in a reply, most likely first: the whole text, each fenced block,
    then each object embedded in prose (decoded from each ``{`` that starts one)."""
    decoder = json.JSONDecoder()
    stripped = text.strip()
    try:
        yield json.loads(stripped)
        return
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(text):
        try:
            yield json.loads(block.strip())
        except json.JSONDecodeError:
            continue
    at = text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        yield value
        at = text.find("{", end)


def parse_json_reply(text: str, reply_model: type[R], convert: Callable[[R], T]) -> T:
    """Read a structured reply from a model's text, validate and convert it; raises
    ``ValueError`` with the problem (fed back to the model).

    The text may be bare JSON, JSON in a Markdown fence, or prose around a JSON object (what
    servers that ignore ``response_format`` send): the first JSON value that validates
    against ``reply_model`` is converted; when none does, the first one's problem is raised.

    Example:
        >>> parse_json_reply(
        ...     'Sure: {"decision": "do", "reason": "small"} - done.', TriageReply, lambda r: r
        ... ).decision
        'do'
    """
    problem: str | None = None
    for data in _json_candidates(text):
        try:
            reply = reply_model.model_validate(data)
        except ValidationError as e:
            problem = problem or (
                f"the reply does not match the schema: {describe_validation_error(e)}"
            )
            continue
        return convert(reply)
    if problem is None:
        try:
            json.loads(text.strip())
        except json.JSONDecodeError as e:
            problem = f"the reply is not valid JSON ({e}) and holds no JSON object"
    raise ValueError(problem)


def json_instructions(reply_model: type[BaseModel]) -> str:
    """The schema in words, for the instructions: what a server that ignores (or does not
    take) ``response_format`` needs to know to answer."""
    schema = json.dumps(strict_schema(reply_model), separators=(",", ":"))
    return (
        " Reply with only a JSON object (no prose, no Markdown) that matches this JSON "
        f"schema: {schema}"
    )


def nudge(problem: str) -> str:
    """What a model is told after a reply that could not be used."""
    return (
        f"That reply could not be used: {problem}. Reply again with only a JSON object that "
        "matches the schema."
    )


CUT_SHORT = "the reply was cut off at the token limit: keep the JSON short"


_FORMAT_WORDS = re.compile(r"response_format|json_schema|text\.format|structured output", re.I)


def rejects_format(error: BaseException) -> bool:
    """Whether a failed call is a server refusing ``response_format`` (HTTP 400 naming it),
    rather than anything else."""
    cause = error.__cause__
    status = getattr(cause, "status_code", None)
    text = f"{error} {getattr(cause, 'message', '')} {getattr(cause, 'body', '')}"
    if status is None:
        status = 400 if re.search(r"\banswered 400\b", str(error)) else None
    return status == 400 and _FORMAT_WORDS.search(text) is not None


_NO_FORMAT: weakref.WeakSet[ModelClient] = weakref.WeakSet()
"""Clients whose server rejected ``response_format``: not sent it again (one client per
brain, one brain per task)."""


async def ask_structured(
    client: ModelClient,
    *,
    mode: Literal["chat", "responses"],
    instructions: str,
    text: str,
    obs: Observation,
    name: str,
    reply_model: type[R],
    convert: Callable[[R], T],
    max_retries: int,
) -> T:
    """Ask for a structured decision with the screenshot attached; validate; retry; convert."""
    schema = strict_schema(reply_model)
    instructions += json_instructions(reply_model)
    if mode == "chat":
        return await _ask_chat(
            client, instructions, text, obs, name, schema, reply_model, convert, max_retries
        )
    return await _ask_responses(
        client, instructions, text, obs, name, schema, reply_model, convert, max_retries
    )


async def _ask_chat(
    client: ModelClient,
    instructions: str,
    text: str,
    obs: Observation,
    name: str,
    schema: dict[str, Any],
    reply_model: type[R],
    convert: Callable[[R], T],
    max_retries: int,
) -> T:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": instructions},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": obs.data_url()}},
            ],
        },
    ]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": True},
    }
    problem = "no reply"
    attempts = 0
    while attempts <= max_retries:
        params: dict[str, Any] = {"messages": messages}
        if client not in _NO_FORMAT:
            params["response_format"] = response_format
        try:
            completion = await client.chat(**params)
        except BrainError as e:
            if "response_format" in params and rejects_format(e):
                _no_format(client, e)
                continue  # asked again without it: not an attempt the model spent
            raise
        attempts += 1
        if not completion.choices:
            problem = "the reply had no choices"
            continue
        message = completion.choices[0].message
        if message.refusal:
            refusal = cut(str(message.refusal), MAX_REFUSAL_CHARS)
            raise BrainError(f"the model refused the {name} decision: {refusal}")
        content = message.content or ""
        try:
            return parse_json_reply(content, reply_model, convert)
        except ValueError as e:
            problem = str(e)
        if completion.choices[0].finish_reason == "length":
            problem += f" ({CUT_SHORT})"
        messages += [
            {"role": "assistant", "content": content},
            {"role": "user", "content": nudge(problem)},
        ]
    raise BrainError(f"no usable {name} decision after {max_retries + 1} attempt(s): {problem}")


async def _ask_responses(
    client: ModelClient,
    instructions: str,
    text: str,
    obs: Observation,
    name: str,
    schema: dict[str, Any],
    reply_model: type[R],
    convert: Callable[[R], T],
    max_retries: int,
) -> T:
    items: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": text},
                {"type": "input_image", "image_url": obs.data_url(), "detail": "auto"},
            ],
        }
    ]
    fmt = {"type": "json_schema", "name": name, "schema": schema, "strict": True}
    problem = "no reply"
    attempts = 0
    while attempts <= max_retries:
        params: dict[str, Any] = {"instructions": instructions, "input": items}
        if client not in _NO_FORMAT:
            params["text"] = {"format": fmt}
        try:
            response = await client.respond(**params)
        except BrainError as e:
            if "text" in params and rejects_format(e):
                _no_format(client, e)
                continue
            raise
        attempts += 1
        content, refusal = reply_texts(response)
        if refusal:
            raise BrainError(
                f"the model refused the {name} decision: {cut(refusal, MAX_REFUSAL_CHARS)}"
            )
        try:
            return parse_json_reply(content, reply_model, convert)
        except ValueError as e:
            problem = str(e)
        items += [
            {"role": "assistant", "content": content or "(empty)"},
            {"role": "user", "content": nudge(problem)},
        ]
    raise BrainError(f"no usable {name} decision after {max_retries + 1} attempt(s): {problem}")


def _no_format(client: ModelClient, error: BrainError) -> None:
    log.info(
        "the model API at %s does not take response_format (%s): asking for JSON in the text",
        client.base_url,
        error,
    )
    _NO_FORMAT.add(client)
