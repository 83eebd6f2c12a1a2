import { act, cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildLanes, CLOCK_MS, type LaneAgent, type LaneEvent, Swimlanes } from "./Swimlanes";

// A lead delegates to a researcher (the runner's and actors/_tasks.py's events): the lead's
// task waits while the researcher works; a person takes the researcher over for 3 s.
const T = 1_800_000_000;
/** Seconds after T (rounded: unix times lose the last digits of 0.1 s steps). */
const rel = (t: number) => Math.round((t - T) * 1000) / 1000;
const AGENTS: LaneAgent[] = [
  { id: "agent-lead", path: "acme/u/lead" },
  { id: "agent-res", path: "acme/u/lead/researcher" },
];
let seq = 0;
const ev = (
  at: number,
  kind: string,
  agent_id: string,
  task_id: string | null,
  data: Record<string, unknown> = {},
): LaneEvent => ({
  seq: ++seq,
  kind,
  agent_id,
  task_id,
  at: T + at,
  data,
});
const EVENTS: LaneEvent[] = [
  ev(0, "task", "agent-lead", "task-1", { state: "pending", description: "Compare three laptops" }),
  ev(1, "task", "agent-lead", "task-1", { state: "running" }),
  ev(1.5, "model", "agent-lead", "task-1", { call: "triage", decision: "delegate" }),
  ev(2, "task", "agent-lead", "task-1", { state: "waiting" }),
  ev(2.5, "message", "agent-lead", "task-1", {
    from: "acme/u/lead",
    to: "acme/u/lead/researcher",
    subtask: "s1",
    task_id: "task-2",
    text: "Find prices",
  }),
  ev(2.6, "task", "agent-res", "task-2", { state: "pending", description: "Find prices" }),
  ev(3, "task", "agent-res", "task-2", { state: "running" }),
  ev(3.5, "model", "agent-res", "task-2", { call: "act" }),
  ev(4, "step", "agent-res", "task-2", {
    action: { type: "type", text: "laptop" },
    result: { ok: true },
  }),
  ev(5, "task", "agent-res", "task-2", { state: "paused", person: "taken over by session:abc" }),
  ev(8, "task", "agent-res", "task-2", {
    state: "running",
    person: "handed back: closed the popup",
  }),
  ev(9, "task", "agent-res", "task-2", { state: "succeeded", result: "$999" }),
  ev(9.2, "message", "agent-lead", "task-1", {
    from: "acme/u/lead/researcher",
    to: "acme/u/lead",
    subtask: "s1",
    task_id: "task-2",
    state: "succeeded",
    text: "$999",
  }),
  ev(9.5, "task", "agent-lead", "task-1", { state: "running" }),
  ev(10, "task", "agent-lead", "task-1", { state: "succeeded", result: "the second" }),
];

describe("buildLanes", () => {
  it("makes a lane per agent in tree order, bars per state span, ticks and ends", () => {
    const m = buildLanes([...EVENTS].reverse(), AGENTS, T + 12);
    expect(m.lanes.map((l) => [l.agentId, l.depth])).toEqual([
      ["agent-lead", 1],
      ["agent-res", 2],
    ]);
    const spans = (task: string) =>
      m.bars.filter((b) => b.taskId === task).map((b) => [b.state, rel(b.start), rel(b.end)]);
    expect(spans("task-1")).toEqual([
      ["pending", 0, 1],
      ["running", 1, 2],
      ["waiting", 2, 9.5],
      ["running", 9.5, 10],
    ]);
    expect(spans("task-2")).toEqual([
      ["pending", 2.6, 3],
      ["running", 3, 5],
      ["paused", 5, 8],
      ["running", 8, 9],
    ]);
    expect(
      m.bars.every((b) => b.agentId === (b.taskId === "task-1" ? "agent-lead" : "agent-res")),
    ).toBe(true);
    expect(m.ends.map((e) => [e.taskId, e.state, rel(e.at)])).toEqual([
      ["task-1", "succeeded", 10],
      ["task-2", "succeeded", 9],
    ]);
    expect(m.ticks.map((t) => [t.agentId, t.kind, rel(t.at)])).toEqual([
      ["agent-lead", "model", 1.5],
      ["agent-res", "model", 3.5],
      ["agent-res", "step", 4],
    ]);
    expect(m.start).toBe(T);
    expect(m.end).toBe(T + 12);
  });

  it("says who waited for whom, and why a task paused", () => {
    const m = buildLanes(EVENTS, AGENTS, T + 12);
    expect(m.links.map((k) => [k.kind, k.from, k.to, rel(k.at), k.childTaskId])).toEqual([
      ["send", "agent-lead", "agent-res", 2.5, "task-2"],
      ["reply", "agent-res", "agent-lead", 9.2, "task-2"],
    ]);
    const waiting = m.bars.find((b) => b.state === "waiting");
    expect(waiting?.title).toContain("waiting for acme/u/lead/researcher");
    const paused = m.bars.find((b) => b.state === "paused");
    expect(paused?.title).toContain("taken over by session:abc");
    expect(m.links[0].title).toContain("acme/u/lead waits for acme/u/lead/researcher (s1)");
  });

  it("runs a task still open to now, and gives an unknown agent its own lane", () => {
    const open = [
      ev(0, "task", "agent-x", "task-9", { state: "running" }),
      ev(1, "step", "agent-x", "task-9", {
        action: { type: "click" },
        result: { ok: false, error: "off screen" },
      }),
    ];
    const m = buildLanes(open, AGENTS, T + 30);
    expect(m.lanes.map((l) => l.agentId)).toEqual(["agent-lead", "agent-res", "agent-x"]);
    expect(m.bars).toHaveLength(1);
    expect(m.bars[0]).toMatchObject({ state: "running", open: true, end: T + 30 });
    expect(m.ticks[0].title).toContain("click");
    expect(m.ticks[0].title).toContain("failed off screen");
  });
});

describe("Swimlanes", () => {
  afterEach(cleanup);

  it("draws a lane per agent with its bars, ticks, hover titles and wait arrows", () => {
    render(<Swimlanes events={EVENTS} agents={AGENTS} now={T + 12} />);
    const root = screen.getByTestId("swimlanes");
    const lead = screen.getByTestId("lane-agent-lead");
    const res = screen.getByTestId("lane-agent-res");
    const states = (g: Element) =>
      [...g.querySelectorAll("rect.swim-bar")].map((r) => r.getAttribute("data-state"));
    expect(states(lead)).toEqual(["pending", "running", "waiting", "running"]);
    expect(states(res)).toEqual(["pending", "running", "paused", "running"]);
    expect(res.querySelectorAll("line.swim-tick-step")).toHaveLength(1);
    expect(res.querySelectorAll("line.swim-tick-model")).toHaveLength(1);
    const paused = res.querySelector('rect[data-state="paused"]');
    expect(paused?.querySelector("title")?.textContent).toContain("taken over by session:abc");
    // bars sit in time order, left to right, and a longer span is wider
    const xs = [...lead.querySelectorAll("rect.swim-bar")].map((r) => Number(r.getAttribute("x")));
    expect([...xs].sort((a, b) => a - b)).toEqual(xs);
    const w = (state: string) =>
      Number(lead.querySelector(`rect[data-state="${state}"]`)?.getAttribute("width"));
    expect(w("waiting")).toBeGreaterThan(w("pending") * 5);
    const links = [...root.querySelectorAll("line.swim-link")];
    expect(links.map((l) => [l.getAttribute("data-from"), l.getAttribute("data-to")])).toEqual([
      ["agent-lead", "agent-res"],
      ["agent-res", "agent-lead"],
    ]);
    expect(links[0].getAttribute("marker-end")).toMatch(/^url\(#swim-arrow-/);
  });

  it("without a fixed now, an open span grows with the clock", async () => {
    vi.useFakeTimers();
    try {
      vi.setSystemTime((T + 10) * 1000);
      render(
        <Swimlanes
          events={[ev(0, "task", "agent-lead", "task-1", { state: "running" })]}
          agents={AGENTS}
        />,
      );
      const bar = () =>
        screen.getByTestId("lane-agent-lead").querySelector("rect.swim-bar title")?.textContent ??
        "";
      expect(bar()).toContain("(10.0 s)");
      await act(async () => {
        await vi.advanceTimersByTimeAsync(CLOCK_MS);
      });
      expect(bar()).toContain("(12.0 s)");
    } finally {
      vi.useRealTimers();
    }
  });

  it("says so when nothing was recorded", () => {
    render(<Swimlanes events={[]} agents={[]} now={T} />);
    expect(screen.getByTestId("swimlanes").textContent).toContain("No work recorded yet");
  });
});
