// Tasks (`tasks`): start a task on an agent or a workflow, the list (newest first), and
// the selected task's detail.
import { useState, type FormEvent } from "react";
import { api, describeError } from "../api";
import type { AgentInfo, OrchEvent, TaskInfo } from "../types";
import { isEnded } from "../types";
import { TaskDetail } from "./TaskDetail";

export interface TasksProps {
  agents: AgentInfo[];
  tasks: Record<string, TaskInfo>;
  /** The live stream's latest events (the selected task's detail reads its own again). */
  events: readonly OrchEvent[];
  selected: string | null;
  onSelect: (taskId: string | null) => void;
  onChanged: (what: { agents?: string[]; tasks?: string[] }) => void;
}

export function ago(at: number, now = Date.now() / 1000): string {
  const s = Math.max(0, Math.round(now - at));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function NewTask({
  agents,
  onStarted,
}: {
  agents: AgentInfo[];
  onStarted: (task: TaskInfo) => void;
}) {
  const [agentId, setAgentId] = useState("");
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState("");
  const target = agentId || agents[0]?.id || "";

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setProblem("");
    try {
      const task = await api.assign(target, { description: text.trim() });
      setText("");
      onStarted(task);
    } catch (err) {
      setProblem(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="new-task" onSubmit={submit}>
      <select
        data-testid="new-task-agent"
        value={target}
        onChange={(e) => setAgentId(e.target.value)}
        aria-label="agent"
      >
        {agents.length === 0 && <option value="">no agent: hire one</option>}
        {agents.map((a) => (
          <option key={a.id} value={a.id}>
            {a.path}
          </option>
        ))}
      </select>
      <textarea
        data-testid="new-task-text"
        placeholder="What should it do?"
        rows={2}
        value={text}
        onChange={(e) => setText(e.target.value)}
        required
      />
      <button type="submit" data-testid="new-task-submit" disabled={busy || !target || !text.trim()}>
        {busy ? "Starting…" : "Start task"}
      </button>
      {problem && <p className="error">{problem}</p>}
    </form>
  );
}

function NewWorkflow({ onStarted }: { onStarted: (agent: AgentInfo, task: TaskInfo) => void }) {
  const [yaml, setYaml] = useState("");
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState("");

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setProblem("");
    try {
      const started = await api.startWorkflow(yaml);
      setYaml("");
      setOpen(false);
      onStarted(started.agent, started.task);
    } catch (err) {
      setProblem(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  if (!open) {
    return (
      <button type="button" className="link" data-testid="new-workflow" onClick={() => setOpen(true)}>
        Start a workflow…
      </button>
    );
  }
  return (
    <form className="new-workflow" onSubmit={submit}>
      <textarea
        data-testid="new-workflow-yaml"
        placeholder="The workflow file (YAML): agent, task, team…"
        rows={8}
        value={yaml}
        onChange={(e) => setYaml(e.target.value)}
        required
      />
      <div className="row">
        <button type="submit" data-testid="new-workflow-submit" disabled={busy || !yaml.trim()}>
          {busy ? "Starting…" : "Start workflow"}
        </button>
        <button type="button" className="link" onClick={() => setOpen(false)}>
          close
        </button>
      </div>
      {problem && <p className="error">{problem}</p>}
    </form>
  );
}

/** The newest seq among the events of `taskId` (0: none). */
export function latestSeq(events: readonly OrchEvent[], taskId: string | null): number {
  let seq = 0;
  for (const e of events) if (e.task_id === taskId && (e.seq ?? 0) > seq) seq = e.seq ?? 0;
  return seq;
}

export function Tasks({ agents, tasks, events, selected, onSelect, onChanged }: TasksProps) {
  const list = Object.values(tasks).sort((a, b) => b.created_at - a.created_at);
  const byId = Object.fromEntries(agents.map((a) => [a.id, a]));
  const working = agents.filter((a) => a.status !== "stopped" && a.status !== "failed");
  const chosen = selected ? tasks[selected] : undefined;

  return (
    <div className="tasks" data-testid="tasks">
      <NewTask
        agents={working}
        onStarted={(t) => {
          onChanged({ tasks: [t.id] });
          onSelect(t.id);
        }}
      />
      <NewWorkflow
        onStarted={(agent, task) => {
          onChanged({ agents: [agent.id], tasks: [task.id] });
          onSelect(task.id);
        }}
      />
      <div className="split">
        <table className="task-list">
          <thead>
            <tr>
              <th>task</th>
              <th>agent</th>
              <th>state</th>
              <th>updated</th>
            </tr>
          </thead>
          <tbody>
            {list.length === 0 && (
              <tr>
                <td colSpan={4} className="empty">
                  No tasks yet.
                </td>
              </tr>
            )}
            {list.map((t) => (
              <tr
                key={t.id}
                data-testid={`task-row-${t.id}`}
                data-state={t.state}
                className={t.id === selected ? "selected" : ""}
                onClick={() => onSelect(t.id)}
              >
                <td className="desc" title={t.spec.description}>
                  {t.parent_task_id ? "↳ " : ""}
                  {t.spec.description}
                </td>
                <td>{byId[t.agent_id]?.path.split("/").pop() ?? t.agent_id}</td>
                <td>
                  <span className={`pill state-${t.state}${isEnded(t.state) ? " ended" : ""}`}>
                    {t.state}
                  </span>
                </td>
                <td className="dim">{ago(t.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {chosen && (
          <TaskDetail
            key={chosen.id}
            task={chosen}
            agent={byId[chosen.agent_id]}
            tasks={tasks}
            liveSeq={latestSeq(events, chosen.id)}
            onSelect={onSelect}
            onChanged={onChanged}
          />
        )}
      </div>
    </div>
  );
}
