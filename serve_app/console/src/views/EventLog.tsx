// The latest events of the whole team (`event-log`, each `event-<seq>`), newest first.
import { describeEvent } from "../state";
import type { AgentInfo, OrchEvent } from "../types";

/** How many events the log shows. */
export const LOG_SHOWN = 100;

export interface EventLogProps {
  events: readonly OrchEvent[];
  agents: Record<string, AgentInfo>;
  onOpenTask: (taskId: string) => void;
}

function clock(at: number): string {
  return new Date(at * 1000).toLocaleTimeString();
}

export function EventLog({ events, agents, onOpenTask }: EventLogProps) {
  const shown = events.slice(-LOG_SHOWN).reverse();
  return (
    <section className="event-log-box">
      <h3>Latest events</h3>
      <ol className="event-log" data-testid="event-log">
        {shown.length === 0 && <li className="empty">Waiting for events…</li>}
        {shown.map((e) => {
          const who = e.agent_id ? (agents[e.agent_id]?.path.split("/").pop() ?? e.agent_id) : "";
          return (
            <li key={e.id} data-testid={`event-${e.seq}`} className={`ev ev-${e.kind}`}>
              <span className="dim">{clock(e.at)}</span> <b>{who}</b>{" "}
              {e.task_id ? (
                <button type="button" className="link" onClick={() => onOpenTask(e.task_id!)}>
                  {describeEvent(e)}
                </button>
              ) : (
                describeEvent(e)
              )}
            </li>
          );
        })}
      </ol>
    </section>
  );
}
