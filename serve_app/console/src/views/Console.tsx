// The signed-in console: the agent tree on the left, the team's desktops in the centre,
// tabs (tasks, inbox, swimlanes, replay, stats) and the latest events on the right.
import { useEffect, useMemo, useState } from "react";
import { DesktopWall } from "../components/DesktopWall";
import { Replay } from "../components/Replay";
import { Swimlanes } from "../components/Swimlanes";
import { isEnded, type SessionInfo } from "../types";
import { useConsole } from "../useConsole";
import { AgentTree } from "./AgentTree";
import { EventLog } from "./EventLog";
import { Inbox, inboxTasks } from "./Inbox";
import { StatsView } from "./Stats";
import { Tasks } from "./Tasks";

export const TABS = ["tasks", "inbox", "swimlanes", "replay", "stats"] as const;
export type Tab = (typeof TABS)[number];

export interface ConsoleProps {
  session: SessionInfo;
  onSignOut: () => void;
  /** The session ended under the page (revoked, expired, signed out elsewhere). */
  onSignedOut: () => void;
}

export function Console({ session, onSignOut, onSignedOut }: ConsoleProps) {
  const { data, live, error, refresh } = useConsole(onSignedOut);
  const [tab, setTab] = useState<Tab>("tasks");
  const [focused, setFocused] = useState<string | null>(null);
  const [selectedTask, setSelectedTask] = useState<string | null>(null);

  const agents = useMemo(
    () => Object.values(data.agents).sort((a, b) => a.created_at - b.created_at),
    [data.agents],
  );
  const onWall = useMemo(() => agents.filter((a) => a.status !== "stopped"), [agents]);
  const inbox = useMemo(() => inboxTasks(data.tasks), [data.tasks]);
  const openTasks = Object.values(data.tasks).filter((t) => !isEnded(t.state)).length;

  // What waits for a person shows in the browser's tab too.
  useEffect(() => {
    document.title = inbox.length ? `(${inbox.length}) orchestrator console` : "orchestrator console";
  }, [inbox.length]);

  const openTask = (id: string) => {
    setSelectedTask(id);
    setTab("tasks");
  };

  return (
    <div className="console">
      <header className="topbar">
        <h1>orchestrator</h1>
        <span className="tenant">
          tenant <b data-testid="tenant-name">{session.tenant}</b>
        </span>
        <span className={`live live-${live}`} data-testid="live-state" title="the live stream">
          {live === "open" ? "live" : live}
        </span>
        <span className="spacer" />
        {error && (
          <span className="error" role="alert" title={error}>
            {error}
          </span>
        )}
        <button type="button" data-testid="signout" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <aside className="side">
        <AgentTree
          agents={data.agents}
          tasks={data.tasks}
          current={data.current}
          focused={focused}
          onFocus={setFocused}
          onChanged={(ids) => refresh({ agents: ids })}
        />
      </aside>
      <main className="centre">
        <DesktopWall agents={onWall} focusedId={focused} onFocus={setFocused} />
      </main>
      <section className="panel">
        <nav className="tabs" role="tablist">
          {TABS.map((t) => (
            <button
              key={t}
              type="button"
              role="tab"
              aria-selected={tab === t}
              className={tab === t ? "tab tab-on" : "tab"}
              data-testid={`tab-${t}`}
              onClick={() => setTab(t)}
            >
              {t}
              {t === "inbox" && inbox.length > 0 && <span className="badge">{inbox.length}</span>}
              {t === "tasks" && openTasks > 0 && <span className="badge dim">{openTasks}</span>}
            </button>
          ))}
        </nav>
        <div className="tab-body">
          {tab === "tasks" && (
            <Tasks
              agents={agents}
              tasks={data.tasks}
              events={data.events}
              selected={selectedTask}
              onSelect={setSelectedTask}
              onChanged={refresh}
            />
          )}
          {tab === "inbox" && (
            <Inbox tasks={inbox} agents={data.agents} onOpen={openTask} onChanged={refresh} />
          )}
          {tab === "swimlanes" && <Swimlanes events={data.events} agents={agents} />}
          {tab === "replay" && <Replay />}
          {tab === "stats" && <StatsView agents={data.agents} />}
        </div>
        <EventLog events={data.events} agents={data.agents} onOpenTask={openTask} />
      </section>
    </div>
  );
}
