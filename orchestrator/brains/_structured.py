"""Structured decisions (triage, plan): a JSON reply validated by pydantic, retried when bad.

The model is asked for JSON matching a schema generated from a *reply* model (every field
required, no defaults, ``additionalProperties: false``: what OpenAI's strict mode demands;
servers that ignore ``response_format`` still get the schema and are validated the same
way). The reply is then turned into the domain model (``Triage``, ``Plan``), whose own
constraints (id patterns, lengths, a dependency graph without cycles) are checked too. A
reply that fails any of this is answered with what was wrong and asked again, up to
``max_retries`` times; then ``BrainError`` names the last problem. A refusal is final.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..domain import Plan
from ..errors import BrainError
from ._base import Observation
from ._client import ModelClient
from ._tools import describe_validation_error

__all__ = [
    "PlanReply",
    "TriageReply",
    "ask_structured",
    "plan_from",
    "response_text",
    "strict_schema",
]

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriageReply(_Reply):
    """The model's triage, as it writes it."""

    decision: Literal["do", "delegate"]
    reason: str


class SubtaskReply(_Reply):
    """One subtask, as the model writes it."""

    id: str
    role: str
    description: str
    depends_on: list[str]


class PlanReply(_Reply):
    """The model's plan, as it writes it."""

    subtasks: list[SubtaskReply]
    check: str | None


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without titles (all fields are required by construction)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "title"}
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


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _parse(text: str, reply_model: type[R], convert: Callable[[R], T]) -> T:
    """Parse, validate and convert a reply; raises ``ValueError`` with the problem."""
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the reply is not valid JSON ({e})") from None
    try:
        reply = reply_model.model_validate(data)
    except ValidationError as e:
        raise ValueError(
            f"the reply does not match the schema: {describe_validation_error(e)}"
        ) from None
    return convert(reply)


def _nudge(problem: str) -> str:
    return (
        f"That reply could not be used: {problem}. Reply again with only a JSON object that "
        "matches the schema."
    )


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
    problem = "no reply"
    if mode == "chat":
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
        for _ in range(max_retries + 1):
            completion = await client.chat(messages=messages, response_format=response_format)
            if not completion.choices:
                problem = "the reply had no choices"
                continue
            message = completion.choices[0].message
            if message.refusal:
                raise BrainError(f"the model refused the {name} decision: {message.refusal}")
            content = message.content or ""
            try:
                return _parse(content, reply_model, convert)
            except ValueError as e:
                problem = str(e)
            messages += [
                {"role": "assistant", "content": content},
                {"role": "user", "content": _nudge(problem)},
            ]
    else:
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
        for _ in range(max_retries + 1):
            response = await client.respond(
                instructions=instructions, input=items, text={"format": fmt}
            )
            content, refusal = response_text(response)
            if refusal:
                raise BrainError(f"the model refused the {name} decision: {refusal}")
            try:
                return _parse(content, reply_model, convert)
            except ValueError as e:
                problem = str(e)
            items += [
                {"role": "assistant", "content": content or "(empty)"},
                {"role": "user", "content": _nudge(problem)},
            ]
    raise BrainError(f"no usable {name} decision after {max_retries + 1} attempt(s): {problem}")


def response_text(response: dict[str, Any]) -> tuple[str, str | None]:
    """The text and the refusal (if any) of a Responses API reply's message items."""
    texts: list[str] = []
    refusals: list[str] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "output_text":
                texts.append(str(part.get("text") or ""))
            elif part.get("type") == "refusal":
                refusals.append(str(part.get("refusal") or ""))
    return "".join(texts), ("; ".join(refusals) or None)
