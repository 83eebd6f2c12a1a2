"""Routes of agents: create, read, list, tree, hire and fire."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from fastapi import APIRouter, Response

from orchestrator.config import check_model_url, settings
from orchestrator.domain import AgentInfo, AgentSpec, AgentTree
from orchestrator.policy import check_policy

from ._front import Rt, Tenant

__all__ = ["check_brain", "router"]

router = APIRouter(prefix="/v1", tags=["agents"])


def check_brain(spec: AgentSpec) -> None:
    """422 before anything starts when the brain names a model API the cluster refuses, or
    the policy acknowledges safety checks where the operator does not allow it."""
    if spec.brain.base_url is not None:
        check_model_url(spec.brain.base_url)  # ConfigError: 422 naming the field
    check_policy(spec.policy, allow_acknowledge=settings().allow_acknowledge_safety_checks)


@router.post("/agents", status_code=201)
async def create_agent(rt: Rt, tenant: Tenant, spec: AgentSpec) -> AgentInfo:
    """Create a top-level agent with its desktop; answers once it is ready."""
    check_brain(spec)
    return await rt.create_agent(tenant, spec)


@router.get("/agents")
async def list_agents(rt: Rt, tenant: Tenant) -> list[AgentInfo]:
    return await rt.list_agents(tenant)


@router.get("/agents/{agent_id}")
async def get_agent(rt: Rt, tenant: Tenant, agent_id: str) -> AgentInfo:
    return await rt.agent(agent_id, tenant)


@router.get("/agents/{agent_id}/tree")
async def agent_tree(rt: Rt, tenant: Tenant, agent_id: str) -> AgentTree:
    return await (await rt.agent_ref(agent_id, tenant)).tree()


@router.post("/agents/{agent_id}/children", status_code=201)
async def hire(rt: Rt, tenant: Tenant, agent_id: str, spec: AgentSpec) -> AgentInfo:
    """Hire a child of this agent (its own actor and desktop)."""
    check_brain(spec)
    return await (await rt.agent_ref(agent_id, tenant)).hire(spec)


@router.delete("/agents/{agent_id}", status_code=204)
async def fire(rt: Rt, tenant: Tenant, agent_id: str) -> Response:
    """Fire an agent: its subtree and their desktops go too."""
    await rt.fire(agent_id, tenant)
    return Response(status_code=204)
