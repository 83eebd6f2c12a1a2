// One task (`task-detail`): what it was asked, its state, result or error, what it spent,
// its subtasks, its events (read again when the live stream brings new ones) and its
// artifacts (a zip).
import { useEffect, useRef, useState } from "react";
import { api, artifactsUrl, describeError } from "../api";
import { formatCost } from "./AgentTree";
import { describeEvent } from "../state";
import type { AgentInfo, OrchEvent, TaskInfo } from "../types";
import { isEnded } from "../types";

export interface TaskDetailProps {
  task: TaskInfo;
  agent?: AgentInfo;
  tasks: Record<string, TaskInfo>;
  /** The newest seq the live stream brought for this task: its events are read again
   * when it moves (no polling of our own). */
  liveSeq: number;
  onSelect: (taskId: string | null) => void;
  onChanged: (what: { tasks?: string[] }) => void;
}

function clock(at: number): string {
  return new Date(at * 1000).toLocaleTimeString();
}

/** The task's events, all pages, read again after each `liveSeq` it has not got yet. */
function useTaskEvents(taskId: string, liveSeq: number): { events: OrchEvent[]; error: string } {
  const [events, setEvents] = useState<OrchEvent[]>([]);
  const [error, setError] = useState("");
  const cursor = useRef(0);

  useEffect(() => {
    if (cursor.current > 0 && liveSeq <= cursor.current) return; // nothing new
    let stop = false;
    const read = async () => {
      try {
        for (;;) {
          const page = await api.taskEvents(taskId, cursor.current);
          if (stop) return;
          if (page.events.length) {
            cursor.current = page.next_after_seq;
            setEvents((old) => [...old, ...page.events]);
          }
          if (!page.has_more) break;
        }
        setError("");
      } catch (e) {
        if (!stop) setError(describeError(e));
      }
    };
    void read();
    return () => {
      stop = true;
    };
  }, [taskId, liveSeq]);
  return { events, error };
}

export function TaskDetail({ task, agent, tasks, liveSeq, onSelect, onChanged }: TaskDetailProps) {
  const { events, error } = useTaskEvents(task.id, liveSeq);
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);
  const missing = task.subtask_ids.filter((id) => !tasks[id]);

  useEffect(() => {
    if (missing.length) onChanged({ tasks: missing });
  }, [missing.join(",")]);

  const run = async (call: () => Promise<TaskInfo>) => {
    setBusy(true);
    setProblem("");
    try {
      await call();
      onChanged({ tasks: [task.id] });
    } catch (e) {
      setProblem(describeError(e));
    } finally {
      setBusy(false);
    }
  };

  const usage = task.subtree_usage ?? task.usage;
  return (
    <article className="task-detail card" data-testid="task-detail" data-state={task.state}>
      <header>
        <h3 title={task.id}>{task.spec.description}</h3>
        <button type="button" className="link" onClick={() => onSelect(null)} aria-label="close">
          ×
        </button>
      </header>
      <dl className="facts">
        <dt>state</dt>
        <dd>
          <span className={`pill state-${task.state}`} data-testid="task-state">
            {task.state}
          </span>
        </dd>
        <dt>agent</dt>
        <dd>{agent?.path ?? task.agent_id}</dd>
        <dt>id</dt>
        <dd className="mono">{task.id}</dd>
        {task.parent_task_id && (
          <>
            <dt>part of</dt>
            <dd>
              <button type="button" className="link" onClick={() => onSelect(task.parent_task_id!)}>
                {tasks[task.parent_task_id]?.spec.description ?? task.parent_task_id}
              </button>
            </dd>
          </>
        )}
        {usage && (
          <>
            <dt>spent</dt>
            <dd>
              {formatCost(usage)} · {usage.model_calls} calls · {usage.steps} steps ·{" "}
              {Math.round(usage.wall_s)} s
            </dd>
          </>
        )}
      </dl>
      {task.result && (
        <section>
          <h4>Result</h4>
          <pre className="result" data-testid="task-result">
            {task.result}
          </pre>
        </section>
      )}
      {task.error && (
        <section>
          <h4>Error</h4>
          <pre className="result error" data-testid="task-error">
            {task.error}
          </pre>
        </section>
      )}
      <div className="row actions">
        {!isEnded(task.state) && (
          <>
            <button
              type="button"
              data-testid="cancel-task"
              disabled={busy}
              onClick={() => run(() => api.cancel(task.id))}
            >
              Cancel
            </button>
            {task.state === "paused" ? (
              <button type="button" data-testid="resume-task" disabled={busy} onClick={() => run(() => api.resume(task.id))}>
                Resume
              </button>
            ) : (
              <button type="button" data-testid="pause-task" disabled={busy} onClick={() => run(() => api.pause(task.id))}>
                Pause
              </button>
            )}
          </>
        )}
        <a className="button" data-testid="task-artifacts" href={artifactsUrl(task.id)} download>
          Download artifacts
        </a>
      </div>
      {problem && <p className="error">{problem}</p>}
      {task.subtask_ids.length > 0 && (
        <section>
          <h4>Subtasks</h4>
          <ul className="subtasks">
            {task.subtask_ids.map((id) => (
              <li key={id}>
                <button type="button" className="link" onClick={() => onSelect(id)}>
                  {tasks[id]?.spec.description ?? id}
                </button>{" "}
                {tasks[id] && <span className={`pill state-${tasks[id].state}`}>{tasks[id].state}</span>}
              </li>
            ))}
          </ul>
        </section>
      )}
      <section>
        <h4>Events</h4>
        {error && <p className="error">{error}</p>}
        <ol className="task-events">
          {events.map((e) => (
            <li key={e.id} className={`ev ev-${e.kind}`}>
              <span className="dim">{clock(e.at)}</span> <span className="kind">{e.kind}</span>{" "}
              {describeEvent(e)}
            </li>
          ))}
        </ol>
      </section>
    </article>
  );
}
