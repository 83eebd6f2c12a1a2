// Stepping in: a person takes over an agent's desktop under a lease (the agent's task
// pauses), works on it live in control mode, and hands back with a note for the agent.
// Routes: GET/POST /v1/agents/{id}/lease, POST /v1/agents/{id}/lease/hand-back.
import { useCallback, useEffect, useState } from "react";
import { agentPath, describeError, requestJson, usePageVisible } from "./http";
import { LiveDesktop } from "./LiveDesktop";
import "./desktop.css";

/** An agent's lease as the API answers it (actors/_lease.py `Lease`). */
export interface Lease {
  id: string;
  agent_id: string;
  holder: string;
  task_id?: string | null;
  taken_at: number;
  expires_at: number;
  note?: string | null;
}

export interface TakeoverProps {
  agentId: string;
  /** Who this page is (`GET /v1/session`'s `holder`); fetched when not given. */
  me?: string;
  /** Seconds a lease lasts before it hands back by itself (renewed by taking it again). */
  ttlS?: number;
}

/** How often the lease is re-read while the page is visible (someone else may take it). */
export const LEASE_POLL_MS = 5000;

const now = () => Date.now() / 1000;

function clock(at: number): string {
  return new Date(at * 1000).toLocaleTimeString();
}

/** Take over / hand back one agent's desktop, with the live desktop itself. */
export function Takeover({ agentId, me, ttlS = 900 }: TakeoverProps) {
  const [lease, setLease] = useState<Lease | null | undefined>(undefined);
  const [holder, setHolder] = useState<string | null>(me ?? null);
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  /** Why the last take over / hand back failed (kept until the next one). */
  const [error, setError] = useState("");
  /** Why the lease could not be read (cleared by the next good read). */
  const [readError, setReadError] = useState("");
  const [tick, setTick] = useState(0);
  const visible = usePageVisible();

  useEffect(() => {
    if (me !== undefined) {
      setHolder(me);
      return;
    }
    let live = true;
    requestJson<{ holder: string }>("GET", "/v1/session")
      .then((s) => live && setHolder(s.holder))
      .catch(() => undefined); // a bearer-key page has no session: it learns from its lease
    return () => {
      live = false;
    };
  }, [me]);

  const path = `${agentPath(agentId)}/lease`;

  // Read the lease now, then every LEASE_POLL_MS while visible, and when it expires.
  useEffect(() => {
    if (!visible) return;
    const ctl = new AbortController();
    requestJson<Lease | null>("GET", path, undefined, ctl.signal)
      .then((l) => {
        setLease(l && l.expires_at > now() ? l : null);
        setReadError("");
      })
      .catch((e) => {
        if (!ctl.signal.aborted) setReadError(describeError(e));
      });
    const timer = setTimeout(() => setTick((t) => t + 1), LEASE_POLL_MS);
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [path, visible, tick]);

  const held = lease != null && lease.expires_at > now();
  const mine = held && holder !== null && lease.holder === holder;

  const act = useCallback(async (what: () => Promise<Lease | null>) => {
    setBusy(true);
    setError("");
    try {
      setLease(await what());
    } catch (e) {
      setError(describeError(e));
      setTick((t) => t + 1); // re-read who holds it now
    } finally {
      setBusy(false);
    }
  }, []);

  const take = () =>
    act(async () => {
      const l = await requestJson<Lease>("POST", path, { ttl_s: ttlS });
      setHolder(l.holder); // the API took it for us: that holder is this page
      return l;
    });

  const handBack = () =>
    act(async () => {
      await requestJson<Lease>("POST", `${path}/hand-back`, { note });
      setNote("");
      return null;
    });

  return (
    <div className="takeover" data-testid="takeover-panel">
      <div className="takeover-bar">
        <span className="lease-holder" data-testid="lease-holder" data-mine={mine ? "1" : "0"}>
          {lease === undefined
            ? "lease: …"
            : held
              ? `held by ${mine ? "you" : lease.holder} until ${clock(lease.expires_at)}`
              : "nobody holds it: the agent works alone"}
        </span>
        <button
          type="button"
          data-testid="takeover"
          disabled={busy || (held && !mine)}
          onClick={() => void take()}
          title={mine ? "Renew your lease" : "Pause the agent's task and control its desktop"}
        >
          {mine ? "Extend lease" : "Take over"}
        </button>
      </div>
      {(error || readError) && (
        <div className="takeover-error" role="alert">
          {error || `cannot read the lease: ${readError}`}
        </div>
      )}
      <LiveDesktop agentId={agentId} mode={mine ? "control" : "view"} />
      {mine && (
        <form
          className="handback"
          onSubmit={(e) => {
            e.preventDefault();
            void handBack();
          }}
        >
          <textarea
            data-testid="handback-note"
            value={note}
            placeholder="A note for the agent: what you did, what it should do next"
            onChange={(e) => setNote(e.target.value)}
            rows={3}
          />
          <button type="submit" data-testid="handback-submit" disabled={busy}>
            Hand back
          </button>
        </form>
      )}
    </div>
  );
}
