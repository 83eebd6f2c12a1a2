// The agent tree (`agent-tree`): each agent with its status, current step, cost and a
// desktop thumbnail refreshed every ~2 s; click to watch it live; hire and fire.
import { useState, type FormEvent } from "react";
import { api, describeError } from "../api";
import { useScreenshot } from "../components/screenshots";
import { usePageVisible } from "../components/http";
import { childrenOf } from "../state";
import type { AgentInfo, AgentSpec, TaskInfo, Usage } from "../types";
import { isEnded } from "../types";

/** Milliseconds between a thumbnail and the next. */
export const THUMB_MS = 2000;

export interface AgentTreeProps {
  agents: Record<string, AgentInfo>;
  tasks: Record<string, TaskInfo>;
  current: Record<string, string>;
  focused: string | null;
  onFocus: (agentId: string | null) => void;
  /** Agents the page changed (hired, fired): fetch them again. */
  onChanged: (agentIds: string[]) => void;
}

/** `$0.0310`, `$0.0310+?` when some calls had no price, `?` when none had one. */
export function formatCost(usage: Usage | null | undefined): string {
  if (!usage || usage.model_calls === 0) return "$0";
  if (usage.cost_usd === 0 && usage.unpriced_calls > 0) return "$?";
  return `$${usage.cost_usd.toFixed(4)}${usage.unpriced_calls > 0 ? "+?" : ""}`;
}

function Thumb({ agent }: { agent: AgentInfo }) {
  const visible = usePageVisible();
  // a starting agent has no desktop to show yet, a stopped or failed one none any more
  const live = agent.status === "idle" || agent.status === "busy";
  const { url } = useScreenshot(agent.id, visible && live, THUMB_MS);
  return (
    <span className="thumb">{url ? <img src={url} alt="" /> : <span className="thumb-empty" />}</span>
  );
}

function Node({
  agent,
  props,
  kids,
  depth,
}: {
  agent: AgentInfo;
  props: AgentTreeProps;
  kids: Map<string | null, AgentInfo[]>;
  depth: number;
}) {
  const [problem, setProblem] = useState("");
  const children = kids.get(agent.id) ?? [];
  const open = Object.values(props.tasks).filter(
    (t) => t.agent_id === agent.id && !isEnded(t.state),
  );
  const name = agent.path.split("/").pop() || agent.path;
  const ended = agent.status === "stopped" || agent.status === "failed";

  const fire = async () => {
    setProblem("");
    try {
      await api.fire(agent.id);
      props.onChanged([agent.id]);
    } catch (e) {
      setProblem(describeError(e));
    }
  };

  return (
    <li>
      <div
        className={`agent-node status-${agent.status}${props.focused === agent.id ? " focused" : ""}`}
        data-testid={`agent-node-${agent.id}`}
        data-status={agent.status}
        style={{ paddingLeft: `${0.5 + depth * 0.9}rem` }}
      >
        <button
          type="button"
          className="agent-main"
          title={`${agent.path}: watch live`}
          onClick={() => props.onFocus(agent.id)}
          disabled={ended}
        >
          <Thumb agent={agent} />
          <span className="agent-text">
            <span className="agent-name">
              {name} <span className="role">{agent.spec.role ?? ""}</span>
            </span>
            <span className="agent-meta">
              <span className={`pill pill-${agent.status}`}>{agent.status}</span>
              {open.length > 0 && <span className="pill pill-dim">{open.length} open</span>}
              <span className="cost" title="cost of its tasks">
                {formatCost(agent.usage)}
              </span>
            </span>
            <span className="agent-step" title={props.current[agent.id] ?? agent.error ?? ""}>
              {props.current[agent.id] ?? agent.error ?? ""}
            </span>
          </span>
        </button>
        {!ended && (
          <button
            type="button"
            className="fire"
            data-testid={`fire-${agent.id}`}
            title={`fire ${agent.path} and its subtree`}
            onClick={fire}
          >
            fire
          </button>
        )}
      </div>
      {problem && <p className="error">{problem}</p>}
      {children.length > 0 && (
        <ul>
          {children.map((c) => (
            <Node key={c.id} agent={c} props={props} kids={kids} depth={depth + 1} />
          ))}
        </ul>
      )}
    </li>
  );
}

export function HireForm({
  agents,
  onHired,
}: {
  agents: AgentInfo[];
  onHired: (agent: AgentInfo) => void;
}) {
  const [name, setName] = useState("");
  const [role, setRole] = useState("");
  const [parent, setParent] = useState("");
  const [brain, setBrain] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState("");

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setProblem("");
    const spec: AgentSpec = { name: name.trim() };
    if (role.trim()) spec.role = role.trim();
    if (brain.trim()) {
      try {
        spec.brain = JSON.parse(brain) as AgentSpec["brain"];
      } catch {
        setProblem("the brain is not JSON");
        return;
      }
    }
    setBusy(true);
    try {
      const hired = parent ? await api.hireChild(parent, spec) : await api.hireTopLevel(spec);
      setName("");
      setRole("");
      onHired(hired);
    } catch (err) {
      setProblem(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="hire-form" onSubmit={submit}>
      <h3>Hire</h3>
      <input
        data-testid="hire-name"
        placeholder="name"
        value={name}
        pattern="[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,62}"
        onChange={(e) => setName(e.target.value)}
        required
      />
      <input
        data-testid="hire-role"
        placeholder="role (generalist)"
        value={role}
        onChange={(e) => setRole(e.target.value)}
      />
      <select data-testid="hire-parent" value={parent} onChange={(e) => setParent(e.target.value)}>
        <option value="">top level</option>
        {agents.map((a) => (
          <option key={a.id} value={a.id}>
            under {a.path}
          </option>
        ))}
      </select>
      <textarea
        data-testid="hire-brain"
        placeholder='brain as JSON (default: {"kind": "scripted"})'
        rows={2}
        value={brain}
        onChange={(e) => setBrain(e.target.value)}
      />
      <button type="submit" data-testid="hire" disabled={busy || !name.trim()}>
        {busy ? "Hiring…" : "Hire"}
      </button>
      {problem && <p className="error">{problem}</p>}
    </form>
  );
}

/** The agents to draw: fired ones (`stopped`) only when asked for. */
export function shownAgents(
  agents: Record<string, AgentInfo>,
  showFired: boolean,
): Record<string, AgentInfo> {
  if (showFired) return agents;
  return Object.fromEntries(Object.entries(agents).filter(([, a]) => a.status !== "stopped"));
}

export function AgentTree(props: AgentTreeProps) {
  const [showFired, setShowFired] = useState(false);
  const fired = Object.values(props.agents).filter((a) => a.status === "stopped").length;
  const kids = childrenOf(shownAgents(props.agents, showFired));
  const roots = kids.get(null) ?? [];
  const live = Object.values(props.agents).filter(
    (a) => a.status !== "stopped" && a.status !== "failed",
  );
  return (
    <div className="agent-tree-box">
      <div className="row tree-head">
        <h2>Agents</h2>
        <span className="spacer" />
        {fired > 0 && (
          <label className="dim small">
            <input
              type="checkbox"
              data-testid="show-fired"
              checked={showFired}
              onChange={(e) => setShowFired(e.target.checked)}
            />{" "}
            fired ({fired})
          </label>
        )}
      </div>
      <ul className="agent-tree" data-testid="agent-tree">
        {roots.length === 0 && <li className="empty">No agents yet.</li>}
        {roots.map((a) => (
          <Node key={a.id} agent={a} props={props} kids={kids} depth={0} />
        ))}
      </ul>
      <HireForm agents={live} onHired={(a) => props.onChanged([a.id])} />
    </div>
  );
}
