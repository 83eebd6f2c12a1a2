// Swimlanes: the team's work on one clock, as an SVG Gantt picture. A lane per agent; bars
// for each task's spans in a state (running, waiting on subtasks, paused, waiting for a
// person), built from the `task` events that announce every state change; `step` and
// `model` events as ticks; arrows for who waited for whom (the `message` events a parent
// records when it hands a subtask to a child, data.task_id = the child's task, and when the
// child's answer comes back, data.state = how it ended). Hover anything for its title.
import { useEffect, useId, useMemo, useState } from "react";
import { usePageVisible } from "./http";
import "./desktop.css";

/** What the lanes need of an event (the API's Event has the same fields). */
export interface LaneEvent {
  seq?: number | null;
  kind: string;
  agent_id?: string | null;
  task_id?: string | null;
  at: number;
  data?: Record<string, unknown>;
}

/** What the lanes need of an agent. */
export interface LaneAgent {
  id: string;
  path: string;
}

export interface Lane {
  agentId: string;
  label: string;
  depth: number;
}

export interface Bar {
  agentId: string;
  taskId: string;
  state: string;
  start: number;
  end: number;
  /** Still in this state now (the bar runs to the right edge). */
  open: boolean;
  title: string;
}

export interface Tick {
  agentId: string;
  at: number;
  kind: "step" | "model";
  title: string;
}

/** A task's end (succeeded, failed, cancelled). */
export interface EndMark {
  agentId: string;
  taskId: string;
  at: number;
  state: string;
  title: string;
}

/** A parent handing a subtask to a child ("send") or the child's answer coming back ("reply"). */
export interface WaitLink {
  from: string;
  to: string;
  at: number;
  kind: "send" | "reply";
  parentTaskId: string | null;
  childTaskId: string;
  title: string;
}

export interface LanesModel {
  lanes: Lane[];
  bars: Bar[];
  ticks: Tick[];
  ends: EndMark[];
  links: WaitLink[];
  start: number;
  end: number;
}

const ENDED = new Set(["succeeded", "failed", "cancelled"]);

export const STATE_COLORS: Record<string, string> = {
  pending: "#6b7280",
  running: "#22c55e",
  waiting: "#60a5fa",
  paused: "#f59e0b",
  input_required: "#e879f9",
  approval_required: "#f472b6",
  succeeded: "#16a34a",
  failed: "#ef4444",
  cancelled: "#9ca3af",
};

const str = (v: unknown): string | undefined => (typeof v === "string" && v ? v : undefined);

function short(text: string, n = 80): string {
  const t = text.split(/\s+/).join(" ").trim();
  return t.length <= n ? t : `${t.slice(0, n - 1)}…`;
}

export function clock(at: number): string {
  const d = new Date(at * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

function duration(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** One line about an event, for titles and the replay's event list. */
export function summarize(e: LaneEvent): string {
  const d = e.data ?? {};
  switch (e.kind) {
    case "task": {
      const extra = str(d.person)
        ? `a person: ${str(d.person)}`
        : (str(d.error) ?? str(d.question) ?? str(d.description));
      return `task ${str(d.state) ?? "?"}${extra ? `: ${short(extra)}` : ""}`;
    }
    case "step": {
      const action = (d.action ?? {}) as Record<string, unknown>;
      const result = (d.result ?? {}) as Record<string, unknown>;
      const what = str(action.command) ?? str(action.text) ?? str(action.keys as string) ?? "";
      const ok = result.ok ? "ok" : `failed ${short(str(result.error) ?? "", 40)}`;
      return `${str(action.type) ?? "step"} ${short(what, 40)} -> ${ok}`;
    }
    case "model": {
      const call = str(d.call) ?? "model call";
      const decision = str(d.decision) ?? str(d.kind) ?? "";
      return `${call}${decision ? `: ${short(decision, 60)}` : ""}`;
    }
    case "message":
      return `${str(d.from) ?? "?"} -> ${str(d.to) ?? "?"}: ${short(str(d.text) ?? "")}`;
    case "log":
      return short(str(d.msg) ?? JSON.stringify(d));
    case "file":
      return `file ${str(d.path) ?? ""}`;
    default:
      return e.kind;
  }
}

function ordered(events: readonly LaneEvent[]): LaneEvent[] {
  return [...events].sort((a, b) => a.at - b.at || (a.seq ?? 0) - (b.seq ?? 0));
}

/** The picture's content from the events (pure: the component only draws it). */
export function buildLanes(
  events: readonly LaneEvent[],
  agents: readonly LaneAgent[],
  now?: number,
): LanesModel {
  const evs = ordered(events);
  const pathOf = new Map(agents.map((a) => [a.id, a.path]));
  const idOfPath = new Map(agents.map((a) => [a.path, a.id]));
  const label = (id: string) => pathOf.get(id) ?? id;

  const start = evs.length ? evs[0].at : (now ?? 0);
  const last = evs.length ? evs[evs.length - 1].at : start;
  const end = Math.max(last, now ?? last, start + 1);

  // Lanes: every agent given, and any agent an event names, in tree (path) order.
  const ids = new Set(agents.map((a) => a.id));
  for (const e of evs) if (e.agent_id) ids.add(e.agent_id);
  const lanes = [...ids]
    .map((id) => {
      const p = label(id);
      return { agentId: id, label: p, depth: Math.max(0, p.split("/").length - 2) };
    })
    .sort((a, b) => a.label.localeCompare(b.label));

  // Task spans from the state changes.
  const taskAgent = new Map<string, string>();
  const byTask = new Map<string, LaneEvent[]>();
  for (const e of evs) {
    if (e.kind !== "task" || !e.task_id || !e.agent_id) continue;
    taskAgent.set(e.task_id, e.agent_id);
    const list = byTask.get(e.task_id) ?? [];
    list.push(e);
    byTask.set(e.task_id, list);
  }

  // Who each task waited for (its subtasks' agents), from the parent's messages.
  const links: WaitLink[] = [];
  const waitedFor = new Map<string, Set<string>>();
  for (const e of evs) {
    const d = e.data ?? {};
    const child = str(d.task_id);
    if (e.kind !== "message" || !child || !e.agent_id) continue;
    const childAgent =
      taskAgent.get(child) ?? idOfPath.get(str(d.to) ?? "") ?? idOfPath.get(str(d.from) ?? "");
    if (!childAgent || childAgent === e.agent_id) continue;
    const reply = str(d.state) !== undefined;
    const names = waitedFor.get(e.task_id ?? "") ?? new Set<string>();
    names.add(label(childAgent));
    waitedFor.set(e.task_id ?? "", names);
    const sub = str(d.subtask) ? ` (${str(d.subtask)})` : "";
    links.push({
      from: reply ? childAgent : e.agent_id,
      to: reply ? e.agent_id : childAgent,
      at: e.at,
      kind: reply ? "reply" : "send",
      parentTaskId: e.task_id ?? null,
      childTaskId: child,
      title: reply
        ? `${label(e.agent_id)} stops waiting for ${label(childAgent)}${sub}: ${str(d.state)} at ${clock(e.at)}`
        : `${label(e.agent_id)} waits for ${label(childAgent)}${sub} from ${clock(e.at)}: ${short(str(d.text) ?? "")}`,
    });
  }

  const bars: Bar[] = [];
  const ends: EndMark[] = [];
  for (const [taskId, changes] of byTask) {
    const agentId = taskAgent.get(taskId) as string;
    const what = changes.map((c) => str(c.data?.description)).find(Boolean);
    changes.forEach((c, i) => {
      const state = str(c.data?.state) ?? "?";
      const name = `${label(agentId)} · ${what ? short(what, 60) : taskId}`;
      if (ENDED.has(state)) {
        const why = str(c.data?.error) ?? str(c.data?.result);
        ends.push({
          agentId,
          taskId,
          at: c.at,
          state,
          title: `${name}: ${state} at ${clock(c.at)}${why ? `: ${short(why)}` : ""}`,
        });
        return;
      }
      const next = changes[i + 1];
      const stop = next ? next.at : end;
      const person = str(c.data?.person);
      const waits = state === "waiting" ? waitedFor.get(taskId) : undefined;
      const detail = [
        person ? `a person: ${person}` : undefined,
        waits?.size ? `waiting for ${[...waits].join(", ")}` : undefined,
        str(c.data?.question),
      ].filter(Boolean);
      bars.push({
        agentId,
        taskId,
        state,
        start: c.at,
        end: stop,
        open: !next,
        title: `${name}: ${state} ${clock(c.at)}–${next ? clock(stop) : "now"} (${duration(stop - c.at)})${detail.length ? `; ${detail.join("; ")}` : ""}`,
      });
    });
  }

  const ticks: Tick[] = evs
    .filter((e) => (e.kind === "step" || e.kind === "model") && e.agent_id)
    .map((e) => ({
      agentId: e.agent_id as string,
      at: e.at,
      kind: e.kind as "step" | "model",
      title: `${label(e.agent_id as string)} ${clock(e.at)}: ${summarize(e)}`,
    }));

  return { lanes, bars, ticks, ends, links, start, end };
}

export interface SwimlanesProps {
  events: readonly LaneEvent[];
  agents: readonly LaneAgent[];
  /** The right edge (unix seconds); open spans run to it. Defaults to now (kept current). */
  now?: number;
}

/** How often open spans grow to the current time while the page is visible. */
export const CLOCK_MS = 2000;

const LABEL_W = 200;
const WIDTH = 1000;
const LANE_H = 28;
const BAR_H = 14;
const AXIS_H = 22;

/** The team's swimlanes (`data-testid="swimlanes"`, a `lane-<agent_id>` group per agent). */
export function Swimlanes({ events, agents, now }: SwimlanesProps) {
  const arrow = `swim-arrow-${useId().replace(/[^a-zA-Z0-9_-]/g, "")}`;
  const visible = usePageVisible();
  const [clockNow, setClockNow] = useState(() => Date.now() / 1000);
  const model = useMemo(
    () => buildLanes(events, agents, now ?? clockNow),
    [events, agents, now, clockNow],
  );
  const growing = now === undefined && visible && model.bars.some((b) => b.open);
  useEffect(() => {
    if (!growing) return;
    const timer = setInterval(() => setClockNow(Date.now() / 1000), CLOCK_MS);
    return () => clearInterval(timer);
  }, [growing]);
  const { lanes, bars, ticks, ends, links, start, end } = model;
  const span = Math.max(end - start, 1e-3);
  const x = (t: number) => LABEL_W + ((t - start) / span) * (WIDTH - LABEL_W - 8);
  const row = new Map(lanes.map((l, i) => [l.agentId, i]));
  const top = (id: string) => AXIS_H + (row.get(id) ?? 0) * LANE_H;
  const mid = (id: string) => top(id) + LANE_H / 2;
  const height = AXIS_H + Math.max(lanes.length, 1) * LANE_H + 4;
  const axis = Array.from({ length: 5 }, (_, i) => start + (span * i) / 4);

  if (lanes.length === 0) {
    return (
      <div className="swimlanes" data-testid="swimlanes">
        <p className="empty">No work recorded yet.</p>
      </div>
    );
  }
  return (
    <div className="swimlanes" data-testid="swimlanes">
      <svg
        viewBox={`0 0 ${WIDTH} ${height}`}
        width="100%"
        role="img"
        aria-label="Swimlanes of the team's work"
      >
        <defs>
          <marker
            id={arrow}
            viewBox="0 0 10 10"
            refX="9"
            refY="5"
            markerWidth="7"
            markerHeight="7"
            orient="auto-start-reverse"
          >
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#cbd5e1" />
          </marker>
        </defs>
        <g className="swim-axis">
          {axis.map((t) => (
            <g key={t}>
              <line
                x1={x(t)}
                x2={x(t)}
                y1={AXIS_H - 4}
                y2={height}
                stroke="#334155"
                strokeDasharray="2 4"
              />
              <text x={x(t)} y={AXIS_H - 8} fontSize="10" fill="#94a3b8" textAnchor="middle">
                {clock(t)}
              </text>
            </g>
          ))}
        </g>
        {lanes.map((l) => (
          <g
            key={l.agentId}
            className="swim-lane"
            data-testid={`lane-${l.agentId}`}
            data-agent-id={l.agentId}
          >
            <title>{l.label}</title>
            <rect
              x={0}
              y={top(l.agentId)}
              width={WIDTH}
              height={LANE_H}
              fill={row.get(l.agentId)! % 2 ? "#0f172a" : "#111827"}
            />
            <text x={6 + l.depth * 10} y={mid(l.agentId) + 4} fontSize="11" fill="#e2e8f0">
              {short(l.label.split("/").slice(-1)[0] || l.label, 26)}
            </text>
            {bars
              .filter((b) => b.agentId === l.agentId)
              .map((b) => (
                <rect
                  key={`${b.taskId}-${b.start}`}
                  className={`swim-bar swim-bar-${b.state}`}
                  data-state={b.state}
                  data-task-id={b.taskId}
                  x={x(b.start)}
                  y={mid(l.agentId) - BAR_H / 2}
                  width={Math.max(x(b.end) - x(b.start), 1.5)}
                  height={BAR_H}
                  rx={2}
                  fill={STATE_COLORS[b.state] ?? "#64748b"}
                  opacity={b.state === "pending" ? 0.5 : 0.9}
                >
                  <title>{b.title}</title>
                </rect>
              ))}
            {ticks
              .filter((t) => t.agentId === l.agentId)
              .map((t, i) => (
                <line
                  key={`${t.at}-${i}`}
                  className={`swim-tick swim-tick-${t.kind}`}
                  x1={x(t.at)}
                  x2={x(t.at)}
                  y1={mid(l.agentId) - (t.kind === "model" ? 11 : 8)}
                  y2={mid(l.agentId) + (t.kind === "model" ? -5 : 8)}
                  stroke={t.kind === "model" ? "#c4b5fd" : "#f8fafc"}
                  strokeWidth={t.kind === "model" ? 2 : 1}
                >
                  <title>{t.title}</title>
                </line>
              ))}
            {ends
              .filter((m) => m.agentId === l.agentId)
              .map((m) => (
                <circle
                  key={m.taskId}
                  className={`swim-end swim-end-${m.state}`}
                  cx={x(m.at)}
                  cy={mid(l.agentId)}
                  r={4}
                  fill={STATE_COLORS[m.state] ?? "#64748b"}
                >
                  <title>{m.title}</title>
                </circle>
              ))}
          </g>
        ))}
        <g className="swim-links">
          {links
            .filter((k) => row.has(k.from) && row.has(k.to))
            .map((k, i) => (
              <line
                key={`${k.childTaskId}-${k.kind}-${i}`}
                className={`swim-link swim-link-${k.kind}`}
                data-from={k.from}
                data-to={k.to}
                x1={x(k.at)}
                x2={x(k.at)}
                y1={mid(k.from)}
                y2={mid(k.to)}
                stroke="#cbd5e1"
                strokeDasharray={k.kind === "send" ? "4 3" : undefined}
                markerEnd={`url(#${arrow})`}
              >
                <title>{k.title}</title>
              </line>
            ))}
        </g>
      </svg>
      <p className="swim-legend">
        {["running", "waiting", "paused", "input_required", "approval_required"].map((s) => (
          <span key={s} className="swim-legend-item">
            <svg width="10" height="10" aria-hidden="true">
              <rect width="10" height="10" fill={STATE_COLORS[s]} />
            </svg>{" "}
            {s.replace("_", " ")}
          </span>
        ))}
        <span className="swim-legend-item">┆ arrows: who waited for whom</span>
      </p>
    </div>
  );
}
