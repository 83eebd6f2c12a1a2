// Test doubles for the desktop components' tests (never imported by the app): a recording
// RFB class (noVNC's is mocked with it), a WebSocket that records its URL, and a routed
// fetch that answers by "METHOD path" and records every request.
import { act } from "@testing-library/react";
import { vi } from "vitest";

/** Stands in for noVNC's RFB: keeps what it was given; tests dispatch its events. */
export class FakeRFB extends EventTarget {
  static instances: FakeRFB[] = [];
  viewOnly = false;
  scaleViewport = false;
  clipViewport = false;
  resizeSession = false;
  focusOnClick = true;
  showDotCursor = false;
  background = "";
  qualityLevel = 6;
  compressionLevel = 2;
  disconnected = false;
  constructor(
    readonly target: HTMLElement,
    readonly channel: string | FakeWebSocket,
    readonly options?: unknown,
  ) {
    super();
    FakeRFB.instances.push(this);
  }
  disconnect() {
    this.disconnected = true;
  }
  focus() {}
  blur() {}
  sendCtrlAltDel() {}
  /** The server side of the stream reached the point where frames flow. */
  connected() {
    act(() => {
      this.dispatchEvent(new CustomEvent("connect", { detail: {} }));
    });
  }
  /** The relay closed the socket with `code`, then RFB reports the disconnect. */
  dropped(code: number, reason = "") {
    const ws = this.channel as FakeWebSocket;
    act(() => {
      ws.dispatchEvent(
        Object.assign(new Event("close"), { code, reason, wasClean: code === 1000 }),
      );
      this.dispatchEvent(new CustomEvent("disconnect", { detail: { clean: code === 1000 } }));
    });
  }
}

/** A WebSocket that opens nothing: it records the URL and protocols it was made with. */
export class FakeWebSocket extends EventTarget {
  static instances: FakeWebSocket[] = [];
  readyState = 0;
  binaryType = "blob";
  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    super();
    FakeWebSocket.instances.push(this);
  }
  send() {}
  close() {
    this.readyState = 3;
  }
}

export interface Recorded {
  method: string;
  path: string;
  body: unknown;
  credentials: RequestCredentials | undefined;
}

export type Route = (body: unknown, path: string) => Response | Promise<Response> | "pending";

/** A JSON answer. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

/**
 * Install a fetch that answers from `routes` ("GET /v1/x" keys; a key without a query
 * matches any query; "pending" never answers) and records every request.
 */
export function routeFetch(routes: Record<string, Route>): Recorded[] {
  const calls: Recorded[] = [];
  const fake = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), window.location.href);
    const method = (init?.method ?? "GET").toUpperCase();
    const path = url.pathname + url.search;
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    calls.push({ method, path, body, credentials: init?.credentials });
    const route = routes[`${method} ${path}`] ?? routes[`${method} ${url.pathname}`];
    if (!route)
      return json({ error: { code: "not_found", message: `no route ${method} ${path}` } }, 404);
    const answer = await route(body, path);
    if (answer === "pending") {
      return new Promise<Response>((_, reject) =>
        init?.signal?.addEventListener("abort", () =>
          reject(new DOMException("aborted", "AbortError")),
        ),
      );
    }
    return answer;
  });
  vi.stubGlobal("fetch", fake);
  return calls;
}

/** Let pending promises and due timers run (fake timers), inside React's act. */
export async function settle(ms = 0): Promise<void> {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
  await act(async () => {
    await vi.advanceTimersByTimeAsync(0);
  });
}

/** Reset the recorded instances and install the fake WebSocket. */
export function resetFakes(): void {
  FakeRFB.instances = [];
  FakeWebSocket.instances = [];
  vi.stubGlobal("WebSocket", FakeWebSocket);
}
