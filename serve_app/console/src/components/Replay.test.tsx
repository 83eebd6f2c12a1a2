import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DEBOUNCE_MS, Replay, type ReplayMoment } from "./Replay";
import { json, routeFetch, settle } from "./testkit";

const T0 = 1_800_000_000;

function moment(at: number): ReplayMoment {
  return {
    at,
    agents: [
      {
        agent_id: "agent-a",
        path: "acme/u/lead",
        status: "busy",
        screenshot: `sha-${at}`,
        shot_at: at - 1,
      },
      {
        agent_id: "agent-b",
        path: "acme/u/lead/researcher",
        status: "starting",
        screenshot: null,
        shot_at: null,
      },
    ],
    events: [
      {
        seq: 7,
        kind: "step",
        agent_id: "agent-a",
        task_id: "task-1",
        at: at - 2,
        data: { action: { type: "type", text: "hello" }, result: { ok: true } },
      },
    ],
  };
}

const replayAsks = (calls: { path: string }[]) =>
  calls
    .filter((c) => c.path.startsWith("/v1/replay?"))
    .map((c) => Number(new URLSearchParams(c.path.split("?")[1]).get("at")));

const scrubber = () => screen.getByTestId("replay-scrubber") as HTMLInputElement;

describe("Replay", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    cleanup();
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it("scrubbing asks for that moment (debounced) and shows every desktop and the events", async () => {
    const calls = routeFetch({
      "GET /v1/replay": (_, path) =>
        json(moment(Number(new URLSearchParams(path.split("?")[1]).get("at")))),
    });
    render(<Replay start={T0} end={T0 + 600} />);
    expect(scrubber().type).toBe("range");
    expect(scrubber().min).toBe(String(T0));
    expect(scrubber().max).toBe(String(T0 + 600));
    await settle(DEBOUNCE_MS);
    expect(replayAsks(calls)).toEqual([T0 + 600]); // it opens at the latest moment

    fireEvent.change(scrubber(), { target: { value: String(T0 + 100) } });
    fireEvent.change(scrubber(), { target: { value: String(T0 + 200) } });
    fireEvent.change(scrubber(), { target: { value: String(T0 + 300) } });
    await settle(DEBOUNCE_MS - 1);
    expect(replayAsks(calls)).toEqual([T0 + 600]); // still moving: nothing asked
    await settle(1);
    expect(replayAsks(calls)).toEqual([T0 + 600, T0 + 300]); // once, for where it rests
    expect(calls.every((c) => c.credentials === "same-origin")).toBe(true);

    const shot = screen.getByTestId("replay-shot-agent-a") as HTMLImageElement;
    expect(shot.tagName).toBe("IMG");
    expect(shot.getAttribute("src")).toBe(`/v1/blobs/sha-${T0 + 300}`);
    expect(screen.getByTestId("replay-shot-agent-b").textContent).toContain("no screenshot");
    expect(screen.getByTestId("replay-time").getAttribute("datetime")).toBe(
      new Date((T0 + 300) * 1000).toISOString(),
    );
    expect(screen.getByTestId("replay-time").textContent).toBe(
      new Date((T0 + 300) * 1000).toLocaleString([], { hour12: false }),
    );
    const events = screen.getByTestId("replay-events");
    expect(events.textContent).toContain("acme/u/lead");
    expect(events.textContent).toContain("type hello -> ok");
  });

  it("a newer moment aborts the request for an older one", async () => {
    const answers: Record<number, (r: Response) => void> = {};
    let aborted = 0;
    vi.stubGlobal(
      "fetch",
      vi.fn((input: string, init?: RequestInit) => {
        const at = Number(new URLSearchParams(String(input).split("?")[1]).get("at"));
        init?.signal?.addEventListener("abort", () => (aborted += 1));
        return new Promise<Response>((resolve, reject) => {
          answers[at] = resolve;
          init?.signal?.addEventListener("abort", () =>
            reject(new DOMException("aborted", "AbortError")),
          );
        });
      }),
    );
    render(<Replay start={T0} end={T0 + 600} />);
    await settle(DEBOUNCE_MS);
    fireEvent.change(scrubber(), { target: { value: String(T0 + 10) } });
    await settle(DEBOUNCE_MS);
    expect(aborted).toBe(1);
    answers[T0 + 10](json(moment(T0 + 10)));
    await settle();
    expect(screen.getByTestId("replay-shot-agent-a").getAttribute("src")).toBe(
      `/v1/blobs/sha-${T0 + 10}`,
    );
  });

  it("without a range, starts at the tenant's first event", async () => {
    const calls = routeFetch({
      "GET /v1/events": () =>
        json({
          events: [{ seq: 1, kind: "agent", at: T0 + 0.4, data: {} }],
          next_after_seq: 1,
          has_more: true,
        }),
      "GET /v1/replay": () => json(moment(T0)),
    });
    render(<Replay />);
    await settle();
    expect(calls[0].path).toBe("/v1/events?after_seq=0&limit=1");
    expect(scrubber().min).toBe(String(T0));
    expect(Number(scrubber().max)).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000));
  });

  it("shows the API's error", async () => {
    routeFetch({
      "GET /v1/replay": () =>
        json({ error: { code: "unavailable", message: "records unavailable" } }, 503),
    });
    render(<Replay start={T0} end={T0 + 60} />);
    await settle(DEBOUNCE_MS);
    expect(screen.getByRole("alert").textContent).toContain("records unavailable");
  });
});
