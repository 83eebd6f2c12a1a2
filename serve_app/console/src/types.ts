// Types mirroring the API's pydantic models (orchestrator/domain.py, orchestrator/usage.py,
// serve_app/_models.py, serve_app/_session.py, serve_app/_live.py). Only the fields the
// console reads are spelled out; the rest pass through as `unknown`.

export type AgentStatus = "starting" | "idle" | "busy" | "stopped" | "failed";

export type TaskState =
  | "pending"
  | "running"
  | "waiting"
  | "input_required"
  | "approval_required"
  | "paused"
  | "succeeded"
  | "failed"
  | "cancelled";

/** Ended states: a task in one never changes again (`TaskState.done`). */
export const ENDED_STATES: readonly TaskState[] = ["succeeded", "failed", "cancelled"];
/** The states in which a task waits for a person's answer or approval (the inbox). */
export const INBOX_STATES: readonly TaskState[] = ["input_required", "approval_required"];

export function isEnded(state: TaskState): boolean {
  return ENDED_STATES.includes(state);
}

/** What a task, subtree or agent spent (`orchestrator.usage.Usage`). */
export interface Usage {
  model_calls: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
  unpriced_calls: number;
  steps: number;
  wall_s: number;
}

export interface BrainConfig {
  kind: "scripted" | "openai" | "anthropic";
  model?: string | null;
  [field: string]: unknown;
}

/** What to hire (`AgentSpec`). */
export interface AgentSpec {
  name: string;
  role?: string;
  brain?: BrainConfig;
  desktop?: Record<string, unknown>;
  policy?: Record<string, unknown>;
}

/** An agent as stored and shown (`AgentInfo`). */
export interface AgentInfo {
  id: string;
  path: string;
  tenant: string;
  parent_id: string | null;
  actor?: string | null;
  actor_id?: string | null;
  spec: AgentSpec;
  status: AgentStatus;
  error?: string | null;
  created_at: number;
  usage?: Usage | null;
  subtree_usage?: Usage | null;
}

/** A task given to an agent (`TaskSpec`); only `description` is required. */
export interface TaskSpec {
  description: string;
  step_budget?: number;
  deadline_s?: number;
  max_attempts?: number;
  inputs?: Record<string, string>;
  script?: Record<string, unknown> | null;
  outputs?: string[];
  budget?: Record<string, unknown> | null;
}

/** One action awaiting approval: `type` and its own fields (`orchestrator.actions`). */
export interface Action {
  type: string;
  [field: string]: unknown;
}

/** What a task waiting for a person needs (`Waiting`). */
export interface Waiting {
  question?: string | null;
  actions: Action[];
  reason?: string | null;
  screenshot?: string | null;
}

/** A task as stored and shown (`TaskInfo`). */
export interface TaskInfo {
  id: string;
  agent_id: string;
  parent_task_id?: string | null;
  spec: TaskSpec;
  state: TaskState;
  result?: string | null;
  error?: string | null;
  subtask_ids: string[];
  waiting?: Waiting | null;
  created_at: number;
  updated_at: number;
  usage?: Usage | null;
  subtree_usage?: Usage | null;
}

export type EventKind = "agent" | "task" | "step" | "message" | "model" | "log" | "file";

/** One entry on the timeline (`Event`); `seq` is its position in the records. */
export interface OrchEvent {
  id: string;
  seq: number | null;
  kind: EventKind;
  agent_id: string | null;
  task_id: string | null;
  at: number;
  data: Record<string, unknown>;
  blobs: string[];
}

/** A page of events (`EventPage`). */
export interface EventPage {
  events: OrchEvent[];
  next_after_seq: number;
  has_more: boolean;
}

/** The tenant's agents by status and tasks by state (`Stats`). */
export interface Stats {
  agents: Partial<Record<AgentStatus, number>>;
  tasks: Partial<Record<TaskState, number>>;
}

/** One node's desktops (`GET /v1/capacity`). */
export interface CapacityNode {
  node_id: string;
  address: string;
  desktops_total: number;
  desktops_used: number;
  desktops_free: number;
  desktops_starting: number;
  alive: boolean;
}

export interface Capacity {
  nodes: CapacityNode[];
  /** Agents waiting for a desktop that no node has room for yet (an autoscaler's demand). */
  starting_unplaced?: number;
}

/** The signed-in console session (`GET /v1/session`). */
export interface SessionInfo {
  tenant: string;
  /** When the console session ends by itself; null for a bearer key. */
  expires_at: number | null;
  /** The caller's name as a lease holder. */
  holder?: string;
}

/** A workflow's top-level agent and its task (`WorkflowStarted`). */
export interface WorkflowStarted {
  agent: AgentInfo;
  task: TaskInfo;
}
