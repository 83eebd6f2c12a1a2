// A stand-in for the browser's EventSource (jsdom has none): it records the URL it was
// opened with; tests push events, errors and closes as the server would.
import { act } from "@testing-library/react";
import type { OrchEvent } from "../types";

export class FakeEventSource {
  static instances: FakeEventSource[] = [];
  readyState = 0;
  onopen: ((e: Event) => void) | null = null;
  onmessage: ((e: MessageEvent<string>) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  closed = false;
  private readonly named = new Map<string, Array<(e: MessageEvent<string>) => void>>();

  constructor(readonly url: string) {
    FakeEventSource.instances.push(this);
  }

  static latest(): FakeEventSource {
    const last = FakeEventSource.instances.at(-1);
    if (!last) throw new Error("no EventSource was opened");
    return last;
  }

  addEventListener(name: string, fn: (e: MessageEvent<string>) => void): void {
    this.named.set(name, [...(this.named.get(name) ?? []), fn]);
  }

  /** The server ends the stream with `event: end` (credentials ended). */
  async end(): Promise<void> {
    await act(async () => {
      for (const fn of this.named.get("end") ?? []) {
        fn(new MessageEvent("end", { data: '{"reason": "signed out or key revoked"}' }));
      }
      await Promise.resolve();
    });
  }

  close(): void {
    this.closed = true;
    this.readyState = 2;
  }

  open(): void {
    act(() => {
      this.readyState = 1;
      this.onopen?.(new Event("open"));
    });
  }

  /** The server sends these events (`id:` = seq, `data:` = the event). */
  async send(...events: OrchEvent[]): Promise<void> {
    await act(async () => {
      for (const e of events) {
        this.onmessage?.(
          new MessageEvent("message", { data: JSON.stringify(e), lastEventId: String(e.seq) }),
        );
      }
      await Promise.resolve();
    });
  }

  /** The stream failed; `closed`: the browser gives up (an error answer, say a 401). */
  async fail(closed: boolean): Promise<void> {
    await act(async () => {
      this.readyState = closed ? 2 : 0;
      this.onerror?.(new Event("error"));
      await Promise.resolve();
    });
  }
}

let seq = 0;

/** An event as the API sends it. */
export function ev(partial: Partial<OrchEvent> & Pick<OrchEvent, "kind">): OrchEvent {
  seq += 1;
  return {
    id: `event-${seq}`,
    seq: partial.seq ?? 1000 + seq,
    agent_id: null,
    task_id: null,
    at: Date.now() / 1000,
    data: {},
    blobs: [],
    ...partial,
  };
}
