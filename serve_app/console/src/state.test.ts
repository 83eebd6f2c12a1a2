// The reducer: events change agents and tasks in place, keep the latest MAX_EVENTS once
// each, and say what an agent is doing.
import { describe, expect, it } from "vitest";
import { EMPTY, MAX_EVENTS, childrenOf, describeEvent, reduce } from "./state";
import { ev } from "./test/fakeEventSource";
import { agent, task } from "./test/fixtures";

describe("reduce", () => {
  it("applies status and state events to what it knows, and keeps each event once", () => {
    let data = reduce(EMPTY, { type: "agents", agents: [agent("agent-a")] });
    data = reduce(data, { type: "tasks", tasks: [task("task-1", "agent-a", { updated_at: 1 })] });
    const events = [
      ev({ kind: "agent", agent_id: "agent-a", data: { status: "busy" } }),
      ev({ kind: "task", agent_id: "agent-a", task_id: "task-1", at: 2, data: { state: "succeeded", result: "ok" } }),
      ev({ kind: "agent", agent_id: "agent-zzz", data: { status: "busy" } }), // unknown: fetched
    ];
    data = reduce(data, { type: "events", events });
    data = reduce(data, { type: "events", events }); // again (a reconnect): no duplicates
    expect(data.agents["agent-a"].status).toBe("busy");
    expect(data.tasks["task-1"]).toMatchObject({ state: "succeeded", result: "ok" });
    expect(data.agents["agent-zzz"]).toBeUndefined();
    expect(data.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(data.current["agent-a"]).toBe("task succeeded");
  });

  it("an older state event never undoes a newer task record", () => {
    let data = reduce(EMPTY, { type: "tasks", tasks: [task("task-1", "a", { state: "succeeded", updated_at: 10 })] });
    data = reduce(data, { type: "events", events: [ev({ kind: "task", task_id: "task-1", at: 5, data: { state: "running" } })] });
    expect(data.tasks["task-1"].state).toBe("succeeded");
  });

  it("keeps the latest MAX_EVENTS events, in seq order", () => {
    const many = Array.from({ length: MAX_EVENTS + 20 }, (_, i) => ev({ kind: "log", seq: i + 1 }));
    const data = reduce(EMPTY, { type: "events", events: many.slice().reverse() });
    expect(data.events).toHaveLength(MAX_EVENTS);
    expect(data.events[0].seq).toBe(21);
    expect(data.events.at(-1)!.seq).toBe(MAX_EVENTS + 20);
  });

  it("puts an agent whose parent it does not know at the top", () => {
    const kids = childrenOf({
      "agent-b": agent("agent-b", { parent_id: "agent-gone", created_at: 2 }),
      "agent-a": agent("agent-a", { created_at: 1 }),
    });
    expect(kids.get(null)!.map((a) => a.id)).toEqual(["agent-a", "agent-b"]);
  });
});

describe("describeEvent", () => {
  it("says what happened in words", () => {
    const step = ev({ kind: "step", data: { action: { type: "shell", command: "ls -la" }, result: { ok: false, error: "exit 2" } } });
    expect(describeEvent(step)).toBe("shell ls -la -> FAILED exit 2");
    expect(describeEvent(ev({ kind: "agent", data: { node: "waiting for a node with a free desktop unit" } }))).toBe(
      "node: waiting for a node with a free desktop unit",
    );
    expect(describeEvent(ev({ kind: "task", data: { state: "input_required", question: "Which colour?" } }))).toBe(
      "task input_required: Which colour?",
    );
    expect(describeEvent(ev({ kind: "task", data: { state: "running", person: "answered: blue" } }))).toBe(
      "task running: a person: answered: blue",
    );
  });
});
