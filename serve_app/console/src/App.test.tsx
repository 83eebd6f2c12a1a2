// The whole page on a routed fetch and a fake EventSource: sign-in, the tree filled in by
// the live stream (new agents fetched, statuses changed in place), and the end of the
// session (the stream fails, GET /v1/session says 401: `signed-out`).
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { App } from "./App";
import { json, routeFetch } from "./components/testkit";
import { FakeEventSource, ev } from "./test/fakeEventSource";
import { agent, task } from "./test/fixtures";

vi.mock("@novnc/novnc", async () => ({ default: (await import("./components/testkit")).FakeRFB }));

const SESSION = { tenant: "t-a", expires_at: 2_000_000_000, holder: "session:abc" };

beforeEach(() => {
  FakeEventSource.instances = [];
  vi.stubGlobal("EventSource", FakeEventSource);
  window.history.replaceState(null, "", "/console/");
});

function api(opts: { signedIn: boolean }) {
  let signedIn = opts.signedIn;
  const boss = agent("agent-boss", { status: "busy" });
  const kid = agent("agent-kid", { parent_id: "agent-boss", path: "t-a/user/boss/kid", status: "starting" });
  const calls = routeFetch({
    "GET /v1/session": () =>
      signedIn ? json(SESSION) : json({ error: { code: "unauthorized", message: "no session" } }, 401),
    "POST /v1/session": (body) => {
      if ((body as { key: string }).key !== "good-key") {
        return json({ error: { code: "unauthorized", message: "invalid API key" } }, 401);
      }
      signedIn = true;
      return json({ tenant: "t-a", expires_at: 2_000_000_000 });
    },
    "GET /v1/agents": () => json([boss]),
    "GET /v1/agents/agent-boss": () => json(boss),
    "GET /v1/agents/agent-kid": () => json(kid),
    "GET /v1/tasks": (_, path) =>
      json(path.includes("state=") ? [] : [task("task-1", "agent-boss", { state: "running" })]),
    "GET /v1/tasks/task-1": () => json(task("task-1", "agent-boss", { state: "waiting" })),
    "DELETE /v1/session": () => {
      signedIn = false;
      return new Response(null, { status: 204 });
    },
    "GET /v1/events": () => json({ events: [ev({ kind: "log", seq: 41, data: { msg: "hello" } })], next_after_seq: 41, has_more: false }),
  });
  return { calls, end: () => (signedIn = false) };
}

describe("the console page", () => {
  it("signs in with a key, then shows the tenant and its agents", async () => {
    const { calls } = api({ signedIn: false });
    render(<App />);
    fireEvent.change(await screen.findByTestId("signin-key"), { target: { value: "wrong" } });
    fireEvent.click(screen.getByTestId("signin-submit"));
    expect((await screen.findByRole("alert")).textContent).toContain("invalid API key");
    expect(screen.queryByTestId("tenant-name")).toBeNull();

    fireEvent.change(screen.getByTestId("signin-key"), { target: { value: "good-key" } });
    fireEvent.click(screen.getByTestId("signin-submit"));
    expect((await screen.findByTestId("tenant-name")).textContent).toContain("t-a");
    const posts = calls.filter((c) => c.method === "POST" && c.path === "/v1/session");
    expect(posts.map((c) => c.body)).toEqual([{ key: "wrong" }, { key: "good-key" }]);
    expect(calls.every((c) => c.credentials === "same-origin")).toBe(true);
    expect((await screen.findByTestId("agent-node-agent-boss")).getAttribute("data-status")).toBe("busy");
  });

  it("fills the tree in from the ONE live stream and updates statuses in place", async () => {
    api({ signedIn: true });
    render(<App />);
    const tree = await screen.findByTestId("agent-tree");
    await within(tree).findByTestId("agent-node-agent-boss");
    await waitFor(() => expect(FakeEventSource.instances).toHaveLength(1));
    const stream = FakeEventSource.latest();
    expect(stream.url).toBe("/v1/events/stream?after_seq=41"); // after the newest event shown
    stream.open();

    // A child is hired: the stream names it, the page fetches it and puts it under its parent.
    await stream.send(ev({ kind: "agent", agent_id: "agent-kid", data: { desktop: "queued for a start slot" } }));
    const kid = await within(tree).findByTestId("agent-node-agent-kid");
    expect(kid.getAttribute("data-status")).toBe("starting");
    const bossItem = within(tree).getByTestId("agent-node-agent-boss").closest("li")!;
    expect(within(bossItem).getByTestId("agent-node-agent-kid")).toBe(kid);

    // Its status changes: in place, from the event alone.
    await stream.send(ev({ kind: "agent", agent_id: "agent-kid", data: { status: "busy", error: null } }));
    expect(within(tree).getByTestId("agent-node-agent-kid").getAttribute("data-status")).toBe("busy");
    // A step shows as the agent's current step, and in the event log.
    const step = ev({
      kind: "step",
      agent_id: "agent-kid",
      task_id: "task-1",
      data: { action: { type: "type_text", text: "hello world" }, result: { ok: true } },
    });
    await stream.send(step);
    expect(within(kid).getByText(/type_text hello world -> ok/)).toBeTruthy();
    expect(within(screen.getByTestId("event-log")).getByTestId(`event-${step.seq}`)).toBeTruthy();
    expect(FakeEventSource.instances).toHaveLength(1); // one stream for the whole page
  });

  it("shows signed-out when the stream ends with the session", async () => {
    const { end } = api({ signedIn: true });
    render(<App />);
    await screen.findByTestId("agent-tree");
    await waitFor(() => expect(FakeEventSource.instances).toHaveLength(1));
    const stream = FakeEventSource.latest();
    stream.open();
    end(); // the key is revoked: the server ends the stream, the session answers 401
    await stream.fail(false);
    expect(await screen.findByTestId("signed-out")).toBeTruthy();
    expect(screen.queryByTestId("agent-tree")).toBeNull();
    expect(stream.closed).toBe(true);
    expect(screen.getByTestId("signin-key")).toBeTruthy();
  });

  it("signs out: DELETE /v1/session, back to the sign-in page", async () => {
    const { calls } = api({ signedIn: true });
    render(<App />);
    fireEvent.click(await screen.findByTestId("signout"));
    expect(await screen.findByTestId("signed-out")).toBeTruthy();
    expect(calls.filter((c) => c.method === "DELETE").map((c) => c.path)).toEqual(["/v1/session"]);
  });

  it("an embed URL shows one view-only desktop without asking to sign in", async () => {
    api({ signedIn: false });
    window.history.replaceState(null, "", "/console/embed/agent-boss?ticket=T1");
    render(<App />);
    expect(await screen.findByTestId("live-desktop")).toBeTruthy();
    expect(screen.queryByTestId("signin-key")).toBeNull();
  });
});
