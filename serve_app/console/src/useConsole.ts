// The console's data, loaded once and then kept current by the ONE live stream: events
// update agents and tasks in place, and what an event does not carry (a new agent, a task's
// question, an agent's cost) is fetched again, batched and at most once per id per beat.
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { api, describeError, isSignedOut } from "./api";
import { LiveStream, type LiveState } from "./live";
import { EMPTY, reduce, type ConsoleAction } from "./state";
import type { EventPage, OrchEvent } from "./types";

/** How long fetches of the same ids are gathered before they go out. */
export const REFRESH_BEAT_MS = 100;
/** An agent's cost is fetched again at most this often while it works. */
export const COST_REFRESH_MS = 3000;

export interface ConsoleHandle {
  data: typeof EMPTY;
  live: LiveState;
  error: string;
  dispatch: (action: ConsoleAction) => void;
  /** Fetch these agents or tasks again soon (after a change the page made). */
  refresh: (what: { agents?: string[]; tasks?: string[] }) => void;
}

function pageEvents(page: EventPage | OrchEvent[]): OrchEvent[] {
  return Array.isArray(page) ? page : page.events;
}

/** The tenant's data and its live stream, for as long as the component is mounted. */
export function useConsole(onSignedOut: () => void): ConsoleHandle {
  const [data, dispatch] = useReducer(reduce, EMPTY);
  const [live, setLive] = useState<LiveState>("connecting");
  const [error, setError] = useState("");
  const wanted = useRef({ agents: new Set<string>(), tasks: new Set<string>() });
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const costAt = useRef(new Map<string, number>());
  const signedOut = useRef(onSignedOut);
  signedOut.current = onSignedOut;

  const fail = useCallback((e: unknown) => {
    if (isSignedOut(e)) signedOut.current();
    else setError(describeError(e));
  }, []);

  const flush = useCallback(() => {
    timer.current = null;
    const { agents, tasks } = wanted.current;
    wanted.current = { agents: new Set(), tasks: new Set() };
    for (const id of agents) {
      api.agent(id).then(
        (agent) => dispatch({ type: "agent", agent }),
        (e) => {
          if (e?.status === 404) dispatch({ type: "agent-gone", agentId: id });
          else fail(e);
        },
      );
    }
    for (const id of tasks) {
      api.task(id).then((task) => dispatch({ type: "tasks", tasks: [task] }), fail);
    }
  }, [fail]);

  const refresh = useCallback(
    (what: { agents?: string[]; tasks?: string[] }) => {
      for (const id of what.agents ?? []) wanted.current.agents.add(id);
      for (const id of what.tasks ?? []) wanted.current.tasks.add(id);
      if (timer.current === null) timer.current = setTimeout(flush, REFRESH_BEAT_MS);
    },
    [flush],
  );

  useEffect(() => {
    let stream: LiveStream | null = null;
    let gone = false;
    const known = { agents: new Set<string>() };

    const onEvents = (events: OrchEvent[]) => {
      dispatch({ type: "events", events });
      const agents: string[] = [];
      const tasks: string[] = [];
      const now = Date.now();
      for (const e of events) {
        if (e.agent_id && (e.kind === "agent" || !known.agents.has(e.agent_id))) {
          agents.push(e.agent_id);
          known.agents.add(e.agent_id);
        }
        if (e.task_id && e.kind === "task") {
          tasks.push(e.task_id);
          // its agent's status and cost change with it (busy, idle): read them too
          if (e.agent_id) agents.push(e.agent_id);
        }
        if (e.agent_id && e.kind === "model") {
          // the cost is the server's (it knows the prices): read again, not too often
          if (now - (costAt.current.get(e.agent_id) ?? 0) >= COST_REFRESH_MS) {
            costAt.current.set(e.agent_id, now);
            agents.push(e.agent_id);
          }
        }
      }
      if (agents.length || tasks.length) refresh({ agents, tasks });
    };

    const load = async () => {
      try {
        const [agents, tasks, asked, approvals] = await Promise.all([
          api.agents(),
          api.tasks({ limit: 200 }),
          api.tasks({ state: "input_required" }),
          api.tasks({ state: "approval_required" }),
        ]);
        if (gone) return;
        for (const a of agents) known.agents.add(a.id);
        dispatch({ type: "agents", agents });
        dispatch({ type: "tasks", tasks: [...tasks, ...asked, ...approvals] });
      } catch (e) {
        fail(e);
        if (isSignedOut(e)) return;
      }
      // The latest events for the log, then the stream from the newest of them.
      let afterSeq: number | undefined;
      try {
        const recent = pageEvents(await api.recentEvents(Date.now() / 1000 + 60, 500));
        dispatch({ type: "events", events: recent });
        afterSeq = Math.max(0, ...recent.map((e) => e.seq ?? 0));
      } catch (e) {
        if (isSignedOut(e)) return fail(e);
        // no page of recent events: the stream starts from now on
      }
      if (gone) return;
      stream = new LiveStream({ afterSeq });
      stream.onState((s) => {
        setLive(s);
        if (s === "signed-out") signedOut.current();
      });
      stream.subscribe(onEvents);
      stream.start();
    };
    void load();
    return () => {
      gone = true;
      stream?.stop();
      if (timer.current !== null) clearTimeout(timer.current);
    };
  }, [fail, refresh]);

  return { data, live, error, dispatch, refresh };
}
