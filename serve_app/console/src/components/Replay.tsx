// The replay scrubber: pick a moment of the tenant's recorded time and see every agent's
// screenshot then (the last one its events refer to, GET /v1/blobs/<address>) and the events
// of the 30 s before it (GET /v1/replay?at=<unix seconds>, asked once the scrubber rests).
import { useEffect, useMemo, useState } from "react";
import { describeError, requestJson, usePageVisible } from "./http";
import { clock, type LaneEvent, summarize } from "./Swimlanes";
import "./desktop.css";

/** One agent at the moment (the API's replay answer). */
export interface ReplayAgent {
  agent_id: string;
  path: string;
  status: string;
  /** Blob address of its last screenshot at or before the moment, if any. */
  screenshot: string | null;
  shot_at: number | null;
}

/** `GET /v1/replay?at=` answer. */
export interface ReplayMoment {
  at: number;
  agents: ReplayAgent[];
  events: LaneEvent[];
}

export interface ReplayProps {
  /** The earliest moment (unix seconds); the tenant's first event when not given. */
  start?: number;
  /** The latest moment; now (kept current while the page is visible) when not given. */
  end?: number;
  /** Wait this long after the scrubber last moved before asking (ms). */
  debounceMs?: number;
}

export const DEBOUNCE_MS = 250;
/** How often "now" moves the scrubber's right end while the page is visible. */
const NOW_EVERY_MS = 5000;

export function replayPath(at: number): string {
  return `/v1/replay?at=${encodeURIComponent(at.toFixed(3))}`;
}

export function blobPath(address: string): string {
  return `/v1/blobs/${encodeURIComponent(address)}`;
}

function day(at: number): string {
  return new Date(at * 1000).toLocaleString([], { hour12: false });
}

/** The tenant's first recorded event time (for the scrubber's left end). */
async function firstEventAt(signal: AbortSignal): Promise<number | null> {
  const page = await requestJson<{ events: LaneEvent[] } | LaneEvent[]>(
    "GET",
    "/v1/events?after_seq=0&limit=1",
    undefined,
    signal,
  );
  const events = Array.isArray(page) ? page : page.events;
  return events.length ? events[0].at : null;
}

/** The scrubber (`replay-scrubber`), the moment (`replay-time`), screenshots (`replay-shot-<id>`). */
export function Replay({ start, end, debounceMs = DEBOUNCE_MS }: ReplayProps) {
  const visible = usePageVisible();
  const [first, setFirst] = useState<number | null>(start ?? null);
  const [now, setNow] = useState(() => Date.now() / 1000);
  const [at, setAt] = useState<number | null>(null);
  const [moment, setMoment] = useState<ReplayMoment | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState("");

  // The left end: given, or the first event.
  useEffect(() => {
    if (start !== undefined) {
      setFirst(start);
      return;
    }
    const ctl = new AbortController();
    firstEventAt(ctl.signal)
      .then((t) => setFirst(t ?? Date.now() / 1000))
      .catch((e) => {
        if (!ctl.signal.aborted) setError(describeError(e));
      });
    return () => ctl.abort();
  }, [start]);

  // The right end: given, or now, moving while the page is visible.
  useEffect(() => {
    if (end !== undefined || !visible) return;
    const timer = setInterval(() => setNow(Date.now() / 1000), NOW_EVERY_MS);
    return () => clearInterval(timer);
  }, [end, visible]);

  const lo = first === null ? null : Math.floor(first);
  const hi = lo === null ? null : Math.max(Math.ceil(end ?? now), lo + 1);
  const value = at ?? hi;

  // Ask for the moment once the scrubber rests; a newer moment aborts an older request.
  useEffect(() => {
    if (value === null) return;
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      setLoading(true);
      requestJson<ReplayMoment>("GET", replayPath(value), undefined, ctl.signal)
        .then((m) => {
          setMoment(m);
          setError("");
        })
        .catch((e) => {
          if (!ctl.signal.aborted) setError(describeError(e));
        })
        .finally(() => {
          if (!ctl.signal.aborted) setLoading(false);
        });
    }, debounceMs);
    return () => {
      clearTimeout(timer);
      ctl.abort();
    };
    // `value` only changes when the person moves the scrubber, or while it rests at "now"
    // once `hi` is first known: a scrubber left at the right end does not re-ask every 5 s.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [at, lo, debounceMs]);

  const pathOf = useMemo(
    () => new Map((moment?.agents ?? []).map((a) => [a.agent_id, a.path])),
    [moment],
  );

  if (lo === null || hi === null || value === null) {
    return (
      <div className="replay" data-testid="replay">
        {error ? <p role="alert">{error}</p> : <p>Loading the recorded time span…</p>}
      </div>
    );
  }
  return (
    <div className="replay" data-testid="replay">
      <div className="replay-controls">
        <input
          type="range"
          data-testid="replay-scrubber"
          aria-label="Moment to replay"
          min={lo}
          max={hi}
          step={1}
          value={Math.min(Math.max(value, lo), hi)}
          onChange={(e) => setAt(Number(e.target.value))}
        />
        <time data-testid="replay-time" dateTime={new Date(value * 1000).toISOString()}>
          {day(value)}
        </time>
        {loading && <span className="replay-loading">loading…</span>}
      </div>
      {error && (
        <p className="replay-error" role="alert">
          {error}
        </p>
      )}
      {moment && (
        <>
          <div className="replay-shots">
            {moment.agents.map((a) => (
              <figure key={a.agent_id} className="replay-shot">
                {a.screenshot ? (
                  <img
                    data-testid={`replay-shot-${a.agent_id}`}
                    src={blobPath(a.screenshot)}
                    alt={`${a.path} at ${day(moment.at)}`}
                  />
                ) : (
                  <div data-testid={`replay-shot-${a.agent_id}`} className="replay-shot-none">
                    no screenshot yet
                  </div>
                )}
                <figcaption>
                  {a.path} · {a.status}
                  {a.shot_at ? ` · shot ${clock(a.shot_at)}` : ""}
                </figcaption>
              </figure>
            ))}
          </div>
          <ol className="replay-events" data-testid="replay-events">
            {moment.events.length === 0 && <li className="empty">No events in the 30 s before.</li>}
            {moment.events.map((e, i) => (
              <li key={e.seq ?? i} data-kind={e.kind}>
                <time>{clock(e.at)}</time> <b>{pathOf.get(e.agent_id ?? "") ?? e.agent_id ?? ""}</b>{" "}
                {summarize(e)}
              </li>
            ))}
          </ol>
        </>
      )}
    </div>
  );
}
