// The console's typed client of the API: same origin, the session cookie rides along
// (`credentials: "same-origin"`), every error an `HttpError` with the API's code and message.
import { HttpError, describeError, requestJson } from "./components/http";
import type {
  AgentInfo,
  AgentSpec,
  Capacity,
  EventPage,
  OrchEvent,
  SessionInfo,
  Stats,
  TaskInfo,
  TaskSpec,
  TaskState,
  WorkflowStarted,
} from "./types";

export { HttpError, describeError };

const enc = encodeURIComponent;

/** True for the error of a request made without a valid session (signed out, revoked). */
export function isSignedOut(e: unknown): boolean {
  return e instanceof HttpError && e.status === 401;
}

export const api = {
  // ---- the session (serve_app/_session.py)
  signIn: (key: string) => requestJson<SessionInfo>("POST", "/v1/session", { key }),
  session: () => requestJson<SessionInfo>("GET", "/v1/session"),
  signOut: () => requestJson<void>("DELETE", "/v1/session"),

  // ---- agents (serve_app/_agents.py)
  agents: () => requestJson<AgentInfo[]>("GET", "/v1/agents"),
  agent: (id: string) => requestJson<AgentInfo>("GET", `/v1/agents/${enc(id)}`),
  hireTopLevel: (spec: AgentSpec) => requestJson<AgentInfo>("POST", "/v1/agents", spec),
  hireChild: (parentId: string, spec: AgentSpec) =>
    requestJson<AgentInfo>("POST", `/v1/agents/${enc(parentId)}/children`, spec),
  fire: (id: string) => requestJson<void>("DELETE", `/v1/agents/${enc(id)}`),

  // ---- tasks (serve_app/_tasks.py, _person.py, _workflows.py)
  tasks: (opts: { state?: TaskState; agentId?: string; limit?: number } = {}) => {
    const q = new URLSearchParams({ limit: String(opts.limit ?? 200) });
    if (opts.state) q.set("state", opts.state);
    if (opts.agentId) q.set("agent_id", opts.agentId);
    return requestJson<TaskInfo[]>("GET", `/v1/tasks?${q}`);
  },
  task: (id: string) => requestJson<TaskInfo>("GET", `/v1/tasks/${enc(id)}`),
  taskEvents: (id: string, afterSeq = 0, limit = 1000) =>
    requestJson<EventPage>(
      "GET",
      `/v1/tasks/${enc(id)}/events?after_seq=${afterSeq}&limit=${limit}`,
    ),
  assign: (agentId: string, spec: TaskSpec) =>
    requestJson<TaskInfo>("POST", `/v1/agents/${enc(agentId)}/tasks`, spec),
  cancel: (id: string) => requestJson<TaskInfo>("POST", `/v1/tasks/${enc(id)}/cancel`),
  pause: (id: string) => requestJson<TaskInfo>("POST", `/v1/tasks/${enc(id)}/pause`, {}),
  resume: (id: string) => requestJson<TaskInfo>("POST", `/v1/tasks/${enc(id)}/resume`, {}),
  answer: (id: string, text: string) =>
    requestJson<TaskInfo>("POST", `/v1/tasks/${enc(id)}/answer`, { text }),
  approve: (id: string) => requestJson<TaskInfo>("POST", `/v1/tasks/${enc(id)}/approve`, {}),
  reject: (id: string, reason: string) =>
    requestJson<TaskInfo>("POST", `/v1/tasks/${enc(id)}/reject`, { reason }),
  startWorkflow: (yaml: string) =>
    requestJson<WorkflowStarted>("POST", "/v1/workflows", { yaml }),

  // ---- the tenant's whole picture (serve_app/_stats.py, _live.py)
  stats: () => requestJson<Stats>("GET", "/v1/stats"),
  capacity: () => requestJson<Capacity>("GET", "/v1/capacity"),
  /** The latest events of the tenant before `beforeAt` (unix seconds), oldest first. */
  recentEvents: (beforeAt: number, limit = 200) =>
    requestJson<EventPage | OrchEvent[]>(
      "GET",
      `/v1/events?before_at=${beforeAt}&limit=${limit}`,
    ),
};

/** Where a task's artifacts (a zip) download from. */
export function artifactsUrl(taskId: string): string {
  return `/v1/tasks/${enc(taskId)}/artifacts`;
}

/** Where the screen a waiting task asked about is. */
export function waitingScreenshotUrl(taskId: string): string {
  return `/v1/tasks/${enc(taskId)}/waiting/screenshot`;
}
