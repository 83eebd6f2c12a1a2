// Stats and capacity (`stats`): the tenant's agents by status and tasks by state
// (`GET /v1/stats`), and each node's desktops used, free and starting (`GET /v1/capacity`),
// read again every few seconds while the tab is shown and the page visible.
import { useEffect, useState } from "react";
import { api, describeError } from "../api";
import { usePageVisible } from "../components/http";
import type { AgentInfo, Capacity, Stats } from "../types";

export const STATS_POLL_MS = 3000;

function Counts({ title, counts }: { title: string; counts: Record<string, number | undefined> }) {
  const entries = Object.entries(counts).filter(([, n]) => (n ?? 0) > 0);
  return (
    <section className="counts">
      <h4>{title}</h4>
      {entries.length === 0 ? (
        <p className="empty">none</p>
      ) : (
        <dl>
          {entries.map(([k, n]) => (
            <div key={k} className={`count state-${k}`} data-testid={`count-${title}-${k}`}>
              <dt>{k}</dt>
              <dd>{n}</dd>
            </div>
          ))}
        </dl>
      )}
    </section>
  );
}

export function StatsView({ agents }: { agents: Record<string, AgentInfo> }) {
  const [stats, setStats] = useState<Stats | null>(null);
  const [capacity, setCapacity] = useState<Capacity | null>(null);
  const [error, setError] = useState("");
  const visible = usePageVisible();
  const agentCount = Object.keys(agents).length;

  useEffect(() => {
    if (!visible) return;
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      const [s, c] = await Promise.allSettled([api.stats(), api.capacity()]);
      if (stop) return;
      if (s.status === "fulfilled") setStats(s.value);
      if (c.status === "fulfilled") setCapacity(c.value);
      const failed = [s, c].find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
      setError(failed ? describeError(failed.reason) : "");
      timer = setTimeout(() => void read(), STATS_POLL_MS);
    };
    void read();
    return () => {
      stop = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [visible, agentCount]);

  const nodes = capacity?.nodes ?? [];
  const total = nodes.reduce(
    (acc, n) => ({
      used: acc.used + n.desktops_used,
      free: acc.free + n.desktops_free,
      starting: acc.starting + n.desktops_starting,
    }),
    { used: 0, free: 0, starting: 0 },
  );
  return (
    <div className="stats" data-testid="stats">
      {error && <p className="error">{error}</p>}
      <div className="row wrap">
        <Counts title="agents" counts={stats?.agents ?? {}} />
        <Counts title="tasks" counts={stats?.tasks ?? {}} />
      </div>
      <h4>
        Capacity{" "}
        <span className="dim">
          {total.used} used · {total.free} free · {total.starting} starting
          {(capacity?.starting_unplaced ?? 0) > 0 &&
            ` · ${capacity?.starting_unplaced} waiting for a node`}
        </span>
      </h4>
      <table className="capacity">
        <thead>
          <tr>
            <th>node</th>
            <th>name</th>
            <th>used</th>
            <th>free</th>
            <th>starting</th>
            <th>total</th>
          </tr>
        </thead>
        <tbody>
          {capacity && nodes.length === 0 && (
            <tr>
              <td colSpan={6} className="empty">
                No node offers desktops.
              </td>
            </tr>
          )}
          {nodes.map((n) => (
            <tr
              key={n.node_id}
              data-testid={`capacity-node-${n.node_id}`}
              data-alive={n.alive}
              className={n.alive ? "" : "dead"}
            >
              <td className="mono" title={n.node_id}>
                {n.node_id.slice(0, 12)}
              </td>
              <td>{n.address}</td>
              <td>
                <span className="meter" aria-hidden>
                  <span
                    className="meter-used"
                    style={{ width: `${n.desktops_total ? (100 * n.desktops_used) / n.desktops_total : 0}%` }}
                  />
                </span>{" "}
                {n.desktops_used}
              </td>
              <td>{n.desktops_free}</td>
              <td>{n.desktops_starting}</td>
              <td>{n.desktops_total}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
