// What the console knows of the tenant: agents, tasks and the latest events, kept current
// by the live stream's events (a pure reducer: the fetching lives in useConsole.ts).
import type { AgentInfo, AgentStatus, OrchEvent, TaskInfo, TaskState } from "./types";

/** The most events the page keeps (the swimlanes draw them; the event log shows the newest). */
export const MAX_EVENTS = 1000;

export interface ConsoleData {
  agents: Record<string, AgentInfo>;
  tasks: Record<string, TaskInfo>;
  /** The latest events, oldest first, at most MAX_EVENTS. */
  events: OrchEvent[];
  /** Each agent's current step, in words (from its latest step or decision). */
  current: Record<string, string>;
}

export type ConsoleAction =
  | { type: "agents"; agents: AgentInfo[] }
  | { type: "agent"; agent: AgentInfo }
  | { type: "agent-gone"; agentId: string }
  | { type: "tasks"; tasks: TaskInfo[] }
  | { type: "events"; events: OrchEvent[] };

export const EMPTY: ConsoleData = { agents: {}, tasks: {}, events: [], current: {} };

const STATUSES: readonly string[] = ["starting", "idle", "busy", "stopped", "failed"];
const STATES: readonly string[] = [
  "pending",
  "running",
  "waiting",
  "input_required",
  "approval_required",
  "paused",
  "succeeded",
  "failed",
  "cancelled",
];

function short(text: string, n = 90): string {
  const t = text.split(/\s+/).join(" ").trim();
  return t.length <= n ? t : `${t.slice(0, n - 3)}...`;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v);
}

/** One event in words (the CLI's `run` timeline says the same: actors/_run.py). */
export function describeEvent(e: OrchEvent): string {
  const d = e.data;
  switch (e.kind) {
    case "task": {
      let extra = str(d.error || d.description || d.question || "");
      if (d.person) extra = `a person: ${str(d.person)}`;
      return `task ${str(d.state)}${extra ? `: ${short(extra)}` : ""}`;
    }
    case "step": {
      const action = (d.action ?? {}) as Record<string, unknown>;
      const result = (d.result ?? {}) as Record<string, unknown>;
      const what = str(action.command || action.text || action.keys || "");
      const ok = result.ok ? "ok" : `FAILED ${short(str(result.error || ""))}`;
      return `${str(action.type)} ${short(what, 60)} -> ${ok}`.replace(/\s+/g, " ");
    }
    case "model": {
      if (d.call === "triage") return `decides to ${str(d.decision)}`;
      if (d.call === "plan") {
        const subs = Array.isArray(d.subtasks) ? (d.subtasks as Record<string, unknown>[]) : [];
        return `plans ${subs.map((s) => `${str(s.id)} (${str(s.role)})`).join(", ")}`;
      }
      if (d.call === "failed") return `model call failed: ${short(str(d.error))}`;
      const thought = d.thought ? `: ${short(str(d.thought), 60)}` : "";
      return `decides ${str(d.kind || d.call)}${thought}`;
    }
    case "agent": {
      if (d.status) return `agent ${str(d.status)}${d.error ? `: ${short(str(d.error))}` : ""}`;
      if (d.desktop) return `desktop ${str(d.desktop)}`;
      // anything else an agent reports (its node, ...): "key: value" in words
      const said = Object.entries(d).filter(([, v]) => v !== null && v !== undefined);
      return short(said.map(([k, v]) => `${k}: ${str(v)}`).join(", ") || "agent");
    }
    case "message":
      return `${str(d.from)} -> ${str(d.to)}: ${short(str(d.text))}`;
    case "file":
      return `kept ${str(d.path)} (${str(d.size)} bytes)`;
    default:
      return short(str(d.msg || d));
  }
}

function byId<T extends { id: string }>(items: readonly T[]): Record<string, T> {
  return Object.fromEntries(items.map((i) => [i.id, i]));
}

/** The state after `action`. */
export function reduce(data: ConsoleData, action: ConsoleAction): ConsoleData {
  switch (action.type) {
    case "agents":
      return { ...data, agents: { ...data.agents, ...byId(action.agents) } };
    case "agent":
      return { ...data, agents: { ...data.agents, [action.agent.id]: action.agent } };
    case "agent-gone": {
      const agents = { ...data.agents };
      delete agents[action.agentId];
      return { ...data, agents };
    }
    case "tasks":
      return { ...data, tasks: { ...data.tasks, ...byId(action.tasks) } };
    case "events":
      return applyEvents(data, action.events);
  }
}

function applyEvents(data: ConsoleData, events: readonly OrchEvent[]): ConsoleData {
  if (events.length === 0) return data;
  let agents = data.agents;
  let tasks = data.tasks;
  let current = data.current;
  const seen = new Set(data.events.map((e) => e.id));
  const fresh = events.filter((e) => !seen.has(e.id));
  for (const e of fresh) {
    const d = e.data;
    if (e.kind === "agent" && e.agent_id && typeof d.status === "string") {
      const agent = agents[e.agent_id];
      if (agent && STATUSES.includes(d.status)) {
        const error = typeof d.error === "string" ? d.error : agent.error;
        agents = {
          ...agents,
          [agent.id]: { ...agent, status: d.status as AgentStatus, error },
        };
      }
    }
    if (e.kind === "task" && e.task_id && typeof d.state === "string") {
      const task = tasks[e.task_id];
      if (task && STATES.includes(d.state) && e.at >= task.updated_at) {
        const patch: Partial<TaskInfo> = { state: d.state as TaskState, updated_at: e.at };
        if (typeof d.result === "string") patch.result = d.result;
        if (typeof d.error === "string") patch.error = d.error;
        tasks = { ...tasks, [task.id]: { ...task, ...patch } };
      }
    }
    if (e.agent_id && (e.kind === "step" || (e.kind === "model" && d.call !== "failed"))) {
      current = { ...current, [e.agent_id]: describeEvent(e) };
    }
    if (e.agent_id && e.kind === "task" && typeof d.state === "string") {
      current = { ...current, [e.agent_id]: describeEvent(e) };
    }
  }
  const all = [...data.events, ...fresh].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  return { agents, tasks, current, events: all.slice(-MAX_EVENTS) };
}

/** The agents as a forest: each agent's children, top-level agents under `null`. */
export function childrenOf(agents: Record<string, AgentInfo>): Map<string | null, AgentInfo[]> {
  const out = new Map<string | null, AgentInfo[]>();
  for (const a of Object.values(agents)) {
    const parent = a.parent_id && agents[a.parent_id] ? a.parent_id : null;
    const list = out.get(parent) ?? [];
    list.push(a);
    out.set(parent, list);
  }
  for (const list of out.values()) list.sort((x, y) => x.created_at - y.created_at);
  return out;
}
