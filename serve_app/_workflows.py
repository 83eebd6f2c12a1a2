"""The route that starts a workflow: its top-level agent, given its task."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError

from orchestrator.errors import ConfigError
from orchestrator.workflow import load_workflow

from ._agents import check_brain
from ._errors import validation_message
from ._front import Rt, Tenant
from ._models import WorkflowRequest, WorkflowStarted

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["workflows"])

_YAML_TYPES = ("text/yaml", "application/yaml", "application/x-yaml", "text/x-yaml", "text/plain")

_WORKFLOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": WorkflowRequest.model_json_schema()},
        },
    }
}


async def _workflow_text(request: Request) -> str:
    """The YAML text of a workflow request: a ``text/yaml`` body or JSON ``{"yaml": ...}``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype == "application/json":
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise HTTPException(422, f"malformed JSON body: {e}") from None
        except RecursionError:
            raise HTTPException(422, "malformed JSON body: nested too deeply") from None
        try:
            return WorkflowRequest.model_validate(data).yaml
        except ValidationError as e:
            errors = [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
            raise HTTPException(422, validation_message(errors)) from None
    if ctype in _YAML_TYPES:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(422, "the workflow is not UTF-8 text") from None
    raise HTTPException(
        415, 'send the workflow as Content-Type: text/yaml, or as JSON {"yaml": "..."}'
    )


@router.post("/workflows", status_code=202, openapi_extra=_WORKFLOW_BODY)
async def start_workflow(rt: Rt, tenant: Tenant, request: Request) -> WorkflowStarted:
    """Create a workflow's top-level agent in the caller's tenant (the file's ``tenant``
    is ignored) and give it the workflow's task."""
    text = await _workflow_text(request)
    try:  # in a thread: a large file must not stall the replica's other requests
        wf = await asyncio.to_thread(load_workflow, text)
    except ConfigError as e:
        raise HTTPException(422, str(e)) from None
    check_brain(wf.agent)
    agent = await rt.create_agent(tenant, wf.agent)
    try:
        task = await rt.assign(agent.id, wf.task, tenant)
    except Exception:
        try:  # leave no agent behind that nobody asked for
            await rt.fire(agent.id, tenant)
        except Exception:  # noqa: BLE001 - the assign error is the one to report
            log.exception("could not fire %s after a failed workflow start", agent.id)
        raise
    return WorkflowStarted(agent=await rt.agent(agent.id, tenant), task=task)
