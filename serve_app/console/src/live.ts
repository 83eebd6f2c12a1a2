// The page's ONE live update stream: every event of the tenant from
// `GET /v1/events/stream` (Server-Sent Events, `id:` = the event's seq). Views subscribe to
// it; none opens a stream of its own.
//
// Reconnects: the browser's own retry sends `Last-Event-ID`; when the browser gives up (the
// stream answered an error) or the server ended the stream (`event: end`), a new stream
// resumes with `?after_seq=<last seq seen>`. On any error the session is checked: a 401
// (signed out elsewhere, key revoked, session expired) ends the stream for good and tells
// the page, which shows `signed-out`.
import type { OrchEvent } from "./types";

export type LiveState = "connecting" | "open" | "signed-out" | "closed";

export interface LiveOptions {
  /** Resume after this seq (the newest event the page already has); none: from now on. */
  afterSeq?: number;
  /** Whether the session still stands (false: signed out). Default: `GET /v1/session`. */
  checkSession?: () => Promise<boolean>;
  /** Builds the EventSource (tests hand in their own). */
  open?: (url: string) => EventSource;
  /** Delay before a new stream after the browser gave up, in ms. */
  retryMs?: number;
}

type Listener = (events: OrchEvent[]) => void;

/** `EventSource.CLOSED`: the browser will not retry this stream. */
const CLOSED = 2;
type StateListener = (state: LiveState) => void;

async function sessionStands(): Promise<boolean> {
  try {
    const res = await fetch("/v1/session", { credentials: "same-origin" });
    return res.status !== 401;
  } catch {
    return true; // the network, not the session: keep trying
  }
}

export class LiveStream {
  private source: EventSource | null = null;
  private lastSeq: number | null;
  private readonly listeners = new Set<Listener>();
  private readonly stateListeners = new Set<StateListener>();
  private retry: ReturnType<typeof setTimeout> | null = null;
  private pending: OrchEvent[] = [];
  private flushing = false;
  state: LiveState = "closed";

  constructor(private readonly opts: LiveOptions = {}) {
    this.lastSeq = opts.afterSeq ?? null;
  }

  /** The newest seq seen so far (null: none yet). */
  get seq(): number | null {
    return this.lastSeq;
  }

  /** Calls `fn` with each batch of new events; returns the unsubscribe function. */
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onState(fn: StateListener): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  start(): void {
    if (this.source !== null || this.state === "signed-out") return;
    this.setState("connecting");
    const url =
      this.lastSeq === null
        ? "/v1/events/stream"
        : `/v1/events/stream?after_seq=${this.lastSeq}`;
    const source = (this.opts.open ?? ((u) => new EventSource(u)))(url);
    this.source = source;
    source.onopen = () => this.setState("open");
    source.onmessage = (msg: MessageEvent<string>) => this.receive(msg);
    source.onerror = () => void this.failed(source);
    // The server ends the stream when the credentials end (or its records fail): no
    // browser retry, ask the session now.
    source.addEventListener("end", () => {
      source.close();
      void this.failed(source);
    });
  }

  stop(): void {
    if (this.retry !== null) clearTimeout(this.retry);
    this.retry = null;
    this.source?.close();
    this.source = null;
    if (this.state !== "signed-out") this.setState("closed");
  }

  private receive(msg: MessageEvent<string>): void {
    let event: OrchEvent;
    try {
      event = JSON.parse(msg.data) as OrchEvent;
    } catch {
      return; // not an event (a comment would not reach here)
    }
    const seq = event.seq ?? Number(msg.lastEventId);
    if (Number.isFinite(seq) && this.lastSeq !== null && seq <= this.lastSeq) return; // seen
    if (Number.isFinite(seq)) this.lastSeq = seq;
    // Events come in bursts: hand them out once per frame, not one render each.
    this.pending.push(event);
    if (!this.flushing) {
      this.flushing = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    this.flushing = false;
    for (const fn of this.listeners) fn(batch);
  }

  private async failed(source: EventSource): Promise<void> {
    if (source !== this.source) return;
    const stands = await (this.opts.checkSession ?? sessionStands)();
    if (source !== this.source) return; // stopped meanwhile
    if (!stands) {
      source.close();
      this.source = null;
      this.setState("signed-out");
      return;
    }
    if (source.readyState === CLOSED) {
      // The browser gave up (an error answer): a new stream, after the last seq seen.
      this.source = null;
      this.setState("connecting");
      this.retry = setTimeout(() => {
        this.retry = null;
        this.start();
      }, this.opts.retryMs ?? 1000);
    } else {
      this.setState("connecting"); // the browser retries, sending Last-Event-ID
    }
  }

  private setState(state: LiveState): void {
    if (this.state === state) return;
    this.state = state;
    for (const fn of this.stateListeners) fn(state);
  }
}
