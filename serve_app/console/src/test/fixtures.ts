// Agents and tasks as the API answers them, for the component tests.
import type { AgentInfo, TaskInfo } from "../types";

export function agent(id: string, over: Partial<AgentInfo> = {}): AgentInfo {
  const name = over.path?.split("/").pop() ?? id.replace(/^agent-/, "");
  return {
    id,
    path: `t-a/user/${name}`,
    tenant: "t-a",
    parent_id: null,
    spec: { name, role: "generalist" },
    status: "idle",
    created_at: 1_700_000_000,
    ...over,
  };
}

export function task(id: string, agentId: string, over: Partial<TaskInfo> = {}): TaskInfo {
  return {
    id,
    agent_id: agentId,
    spec: { description: `do ${id}` },
    state: "running",
    subtask_ids: [],
    created_at: 1_700_000_000,
    updated_at: 1_700_000_000,
    ...over,
  };
}
