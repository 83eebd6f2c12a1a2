// The inbox (`inbox`): every question and approval the team waits on, answered in place
// (`POST /v1/tasks/{id}/answer`, `/approve`, `/reject`).
import { useState, type FormEvent } from "react";
import { api, describeError, waitingScreenshotUrl } from "../api";
import type { Action, AgentInfo, TaskInfo } from "../types";
import { INBOX_STATES } from "../types";

/** The tasks waiting for a person's answer or approval, the longest waiting first. */
export function inboxTasks(tasks: Record<string, TaskInfo>): TaskInfo[] {
  return Object.values(tasks)
    .filter((t) => INBOX_STATES.includes(t.state))
    .sort((a, b) => a.updated_at - b.updated_at);
}

export interface InboxProps {
  tasks: TaskInfo[];
  agents: Record<string, AgentInfo>;
  onOpen: (taskId: string) => void;
  onChanged: (what: { tasks?: string[] }) => void;
}

/** One action in words: `click (120, 40)`, `type "hello"`. */
export function describeAction(a: Action): string {
  const { type, ...rest } = a;
  const parts = Object.entries(rest)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v)}`);
  return `${type}${parts.length ? ` ${parts.join(" ")}` : ""}`;
}

function Item({ task, agent, onOpen, onChanged }: { task: TaskInfo; agent?: AgentInfo } & Omit<InboxProps, "tasks" | "agents">) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState("");
  const [shot, setShot] = useState(true);
  const asks = task.state === "input_required";
  const waiting = task.waiting;

  const act = async (call: () => Promise<TaskInfo>) => {
    setBusy(true);
    setProblem("");
    try {
      await call();
      setText("");
      onChanged({ tasks: [task.id] });
    } catch (e) {
      setProblem(describeError(e));
    } finally {
      setBusy(false);
    }
  };

  const send = (e: FormEvent) => {
    e.preventDefault();
    void act(() => api.answer(task.id, text.trim()));
  };

  return (
    <li className="inbox-item card" data-testid={`inbox-item-${task.id}`} data-state={task.state}>
      <header>
        <span className={`pill state-${task.state}`}>{asks ? "question" : "approval"}</span>{" "}
        <b>{agent?.path ?? task.agent_id}</b>{" "}
        <button type="button" className="link" onClick={() => onOpen(task.id)}>
          {task.spec.description}
        </button>
      </header>
      {asks ? (
        <p className="question">{waiting?.question ?? "(the question is loading)"}</p>
      ) : (
        <>
          {waiting?.reason && <p className="question">{waiting.reason}</p>}
          <ul className="pending-actions">
            {(waiting?.actions ?? []).map((a, i) => (
              <li key={i} className="mono">
                {describeAction(a)}
              </li>
            ))}
          </ul>
        </>
      )}
      {waiting?.screenshot && shot && (
        <img
          className="waiting-shot"
          src={waitingScreenshotUrl(task.id)}
          alt="the screen it asked about"
          onError={() => setShot(false)}
        />
      )}
      {asks ? (
        <form className="row" onSubmit={send}>
          <input
            data-testid={`inbox-answer-${task.id}`}
            placeholder="Your answer"
            value={text}
            onChange={(e) => setText(e.target.value)}
            required
          />
          <button type="submit" data-testid={`inbox-send-${task.id}`} disabled={busy || !text.trim()}>
            Send
          </button>
        </form>
      ) : (
        <div className="row">
          <button
            type="button"
            data-testid={`inbox-approve-${task.id}`}
            disabled={busy}
            onClick={() => void act(() => api.approve(task.id))}
          >
            Approve
          </button>
          <input
            data-testid={`inbox-reason-${task.id}`}
            placeholder="Why not? (for a rejection)"
            value={text}
            onChange={(e) => setText(e.target.value)}
          />
          <button
            type="button"
            className="danger"
            data-testid={`inbox-reject-${task.id}`}
            disabled={busy}
            onClick={() => void act(() => api.reject(task.id, text.trim() || "refused in the console"))}
          >
            Reject
          </button>
        </div>
      )}
      {problem && <p className="error">{problem}</p>}
    </li>
  );
}

export function Inbox({ tasks, agents, onOpen, onChanged }: InboxProps) {
  return (
    <div className="inbox" data-testid="inbox">
      {tasks.length === 0 ? (
        <p className="empty">Nothing waits for you.</p>
      ) : (
        <ul>
          {tasks.map((t) => (
            <Item key={t.id} task={t} agent={agents[t.agent_id]} onOpen={onOpen} onChanged={onChanged} />
          ))}
        </ul>
      )}
    </div>
  );
}
