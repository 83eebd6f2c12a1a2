// A tiny same-origin JSON client for the desktop components (live desktop, wall, takeover,
// replay): the session cookie rides along, errors carry the API's code and message. Also the
// page-visibility hook they share (nothing refreshes in a hidden tab).
import { useEffect, useState } from "react";

/** An API error: the HTTP status and the API's `{"error": {"code", "message"}}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

async function errorOf(res: Response): Promise<HttpError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new HttpError(res.status, code, message);
}

/** `fetch` a JSON answer from the API (same origin, cookie included); throws `HttpError`. */
export async function requestJson<T>(
  method: "GET" | "POST" | "DELETE",
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const init: RequestInit = { method, credentials: "same-origin", signal };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** `fetch` a binary answer (an image) from the API; throws `HttpError`. */
export async function requestBlob(path: string, signal?: AbortSignal): Promise<Blob> {
  const res = await fetch(path, { credentials: "same-origin", signal });
  if (!res.ok) throw await errorOf(res);
  return res.blob();
}

/** A short, human reason for any error thrown by a request. */
export function describeError(e: unknown): string {
  if (e instanceof HttpError) return `${e.message} (${e.status} ${e.code})`;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** `/v1/agents/<id>` with the id escaped. */
export function agentPath(agentId: string): string {
  return `/v1/agents/${encodeURIComponent(agentId)}`;
}

/** Whether the page is visible now; re-renders when that changes (no refreshing a hidden tab). */
export function usePageVisible(): boolean {
  const [visible, setVisible] = useState(() => document.visibilityState !== "hidden");
  useEffect(() => {
    const changed = () => setVisible(document.visibilityState !== "hidden");
    document.addEventListener("visibilitychange", changed);
    return () => document.removeEventListener("visibilitychange", changed);
  }, []);
  return visible;
}
