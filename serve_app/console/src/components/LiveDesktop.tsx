// One agent's desktop, live, through the API's VNC relay and noVNC's RFB class. The page
// mints a short-lived ticket (POST /v1/agents/{id}/tickets), opens
// ws(s)://<this host>/v1/agents/{id}/vnc?ticket=... and hands the socket to RFB. View-only
// unless `mode` is "control" (the relay passes input only for a lease holder's control
// ticket). A dropped stream reconnects with a fresh ticket after a bounded backoff.
import RFB from "@novnc/novnc";
import { useCallback, useEffect, useRef, useState } from "react";
import { agentPath, describeError, HttpError, requestJson } from "./http";
import "./desktop.css";

export type DesktopMode = "view" | "control";
export type DesktopState = "connecting" | "connected" | "disconnected";

/** `POST /v1/agents/{id}/tickets` answer. */
export interface Ticket {
  ticket: string;
  mode: "view" | "control" | "embed";
  expires_at: number;
  relay_path: string;
  embed_path?: string | null;
}

export interface LiveDesktopProps {
  agentId: string;
  /** "control" sends the person's pointer and keys (they must hold the agent's lease). */
  mode: DesktopMode;
  /** A ticket given from outside (the embed page's URL): used instead of minting one. */
  ticket?: string;
  /** Told each time the connection state changes. */
  onState?: (state: DesktopState) => void;
}

/** First reconnect delay; it doubles per failed attempt up to `MAX_DELAY_MS`. */
export const BASE_DELAY_MS = 1000;
export const MAX_DELAY_MS = 15000;
/** Consecutive failed attempts (no connection in between) before giving up. */
export const MAX_ATTEMPTS = 8;
/** A stream with no first frame by then is closed and tried again. */
export const CONNECT_TIMEOUT_MS = 20000;

const CLOSE_REASONS: Record<number, string> = {
  1000: "the desktop stream ended",
  1001: "the server is going away",
  1006: "the connection was lost",
  1011: "the server failed",
  1013: "the server is busy",
  4401: "the ticket was refused (invalid or expired)",
  4403: "access ended: signed out, or the key was revoked",
  4404: "no such agent (or not yours)",
};

/** Why a relay closed, from its WebSocket close code and reason. */
export function closeReason(code: number | undefined, reason?: string): string {
  if (code === undefined) return "the desktop stream failed";
  const known = CLOSE_REASONS[code] ?? `closed (code ${code})`;
  return reason ? `${known}: ${reason}` : known;
}

/** Whether trying again may help after a close with `code` (`minted`: we can get a new ticket). */
export function mayRetry(code: number | undefined, minted: boolean): boolean {
  if (code === 4403 || code === 4404) return false;
  if (code === 4401) return minted;
  return true;
}

/** The ws(s) URL of a relay path on this page's own host. */
export function relayUrl(relayPath: string, loc: Location = window.location): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${relayPath}`;
}

/** The relay path for an agent and a ticket (what the API's `relay_path` says). */
export function relayPath(agentId: string, ticket: string): string {
  return `${agentPath(agentId)}/vnc?ticket=${encodeURIComponent(ticket)}`;
}

/** Mint a ticket for `mode` on the agent (the session cookie authorizes it). */
export function mintTicket(agentId: string, mode: DesktopMode): Promise<Ticket> {
  return requestJson<Ticket>("POST", `${agentPath(agentId)}/tickets`, { mode });
}

/** An agent's desktop, live (`data-testid="live-desktop"`, `data-state`). */
export function LiveDesktop({ agentId, mode, ticket, onState }: LiveDesktopProps) {
  const screen = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<DesktopState>("connecting");
  const [why, setWhy] = useState<string>("");
  const [retryIn, setRetryIn] = useState<number | null>(null);
  const [gaveUp, setGaveUp] = useState(false);
  const [generation, setGeneration] = useState(0);
  const onStateRef = useRef(onState);
  onStateRef.current = onState;

  const announce = useCallback((s: DesktopState) => {
    setState(s);
    onStateRef.current?.(s);
  }, []);

  useEffect(() => {
    const target = screen.current;
    if (!target) return;
    let stopped = false;
    let rfb: RFB | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    const minted = ticket === undefined;

    const fail = (reason: string, retry: boolean) => {
      if (stopped) return;
      announce("disconnected");
      setWhy(reason);
      failures += 1;
      if (!retry || failures >= MAX_ATTEMPTS) {
        setRetryIn(null);
        setGaveUp(true);
        return;
      }
      const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (failures - 1));
      setRetryIn(Math.round(delay / 1000));
      timer = setTimeout(() => void connect(), delay);
    };

    const connect = async () => {
      if (stopped) return;
      announce("connecting");
      setRetryIn(null);
      setGaveUp(false);
      let path: string;
      try {
        path =
          ticket === undefined
            ? (await mintTicket(agentId, mode)).relay_path
            : relayPath(agentId, ticket);
      } catch (e) {
        const fatal = e instanceof HttpError && [401, 403, 404].includes(e.status);
        fail(`no ticket: ${describeError(e)}`, !fatal);
        return;
      }
      if (stopped) return;
      let closed: CloseEvent | null = null;
      let ws: WebSocket;
      let client: RFB;
      try {
        ws = new WebSocket(relayUrl(path), ["binary"]);
        // Registered before RFB's own handler, so the code is known when RFB reports.
        ws.addEventListener("close", (e) => {
          closed = e;
        });
        client = new RFB(target, ws, { shared: true });
      } catch (e) {
        fail(describeError(e), true);
        return;
      }
      client.viewOnly = mode !== "control";
      client.focusOnClick = mode === "control";
      client.scaleViewport = true;
      let refused: string | null = null;
      let timedOut = false;
      deadline = setTimeout(() => {
        timedOut = true;
        client.disconnect(); // RFB then reports "disconnect"
      }, CONNECT_TIMEOUT_MS);
      client.addEventListener("connect", () => {
        clearTimeout(deadline);
        if (stopped) return;
        failures = 0;
        setWhy("");
        announce("connected");
      });
      client.addEventListener("securityfailure", (e) => {
        const reason = (e as CustomEvent<{ reason?: string }>).detail?.reason;
        refused = `refused by the desktop${reason ? `: ${reason}` : ""}`;
      });
      client.addEventListener("disconnect", () => {
        clearTimeout(deadline);
        rfb = null;
        const c = closed as CloseEvent | null;
        if (timedOut) fail(`no picture within ${CONNECT_TIMEOUT_MS / 1000} s`, true);
        else if (refused) fail(refused, mayRetry(c?.code, minted));
        else fail(closeReason(c?.code, c?.reason), mayRetry(c?.code, minted));
      });
      rfb = client;
    };

    void connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(deadline);
      rfb?.disconnect();
      rfb = null;
    };
  }, [agentId, mode, ticket, generation, announce]);

  const status =
    state === "connected"
      ? mode === "control"
        ? "live: your input reaches the desktop"
        : "live: view only"
      : state === "connecting"
        ? "connecting…"
        : `disconnected${why ? `: ${why}` : ""}${retryIn !== null ? `; retrying in ${retryIn} s` : ""}`;

  return (
    <div
      className={`live-desktop live-desktop-${state}`}
      data-testid="live-desktop"
      data-state={state}
      data-mode={mode}
      data-agent-id={agentId}
    >
      <div ref={screen} className="live-desktop-screen" />
      <div className="live-desktop-status" data-testid="live-desktop-status">
        <span>{status}</span>
        {gaveUp && (
          <button
            type="button"
            data-testid="live-desktop-reconnect"
            onClick={() => setGeneration((g) => g + 1)}
          >
            Reconnect
          </button>
        )}
      </div>
    </div>
  );
}

export interface EmbedPageProps {
  /** The agent; read from the URL (`/console/embed/<agent_id>`) when not given. */
  agentId?: string;
  /** The embed ticket; read from the URL's `?ticket=` when not given. */
  ticket?: string;
}

/** Parse `/console/embed/<agent_id>?ticket=...` (or null when it is not an embed URL). */
export function parseEmbedUrl(loc: Pick<Location, "pathname" | "search">) {
  const m = /\/embed\/([^/?#]+)\/?$/.exec(loc.pathname);
  const ticket = new URLSearchParams(loc.search).get("ticket");
  if (!m || !ticket) return null;
  return { agentId: decodeURIComponent(m[1]), ticket };
}

/** The notebook embed: one desktop, view-only, authorized by the ticket in the URL. */
export function EmbedPage(props: EmbedPageProps) {
  const fromUrl = parseEmbedUrl(window.location);
  const agentId = props.agentId ?? fromUrl?.agentId;
  const ticket = props.ticket ?? fromUrl?.ticket;
  if (!agentId || !ticket) {
    return (
      <div className="embed embed-error" data-testid="embed-error">
        This embed link has no agent or ticket: ask the notebook for a new one.
      </div>
    );
  }
  return (
    <div className="embed">
      <LiveDesktop agentId={agentId} mode="view" ticket={ticket} />
    </div>
  );
}
