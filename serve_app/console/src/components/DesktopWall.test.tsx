import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DesktopWall, type WallAgent } from "./DesktopWall";
import { polledAgents, useScreenshot } from "./screenshots";
import { FakeRFB, json, resetFakes, routeFetch, settle } from "./testkit";

vi.mock("@novnc/novnc", async () => ({ default: (await import("./testkit")).FakeRFB }));

const AGENTS: WallAgent[] = [
  { id: "agent-a", path: "acme/u/lead", status: "busy" },
  { id: "agent-b", path: "acme/u/lead/researcher", status: "idle" },
  { id: "agent-c", path: "acme/u/lead/gone", status: "stopped" },
];

const shot = () =>
  new Response(new Blob([new Uint8Array([0xff, 0xd8, 0xff])], { type: "image/jpeg" }));

let made: string[];
let revoked: string[];

function stubObjectUrls() {
  made = [];
  revoked = [];
  let n = 0;
  vi.stubGlobal(
    "URL",
    Object.assign(URL, {
      createObjectURL: vi.fn(() => {
        const u = `blob:shot-${++n}`;
        made.push(u);
        return u;
      }),
      revokeObjectURL: vi.fn((u: string) => {
        revoked.push(u);
      }),
    }),
  );
}

function setVisibility(state: "visible" | "hidden") {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
  fireEvent(document, new Event("visibilitychange"));
}

const shotsOf = (calls: { path: string }[], id: string) =>
  calls.filter((c) => c.path === `/v1/agents/${id}/screenshot?format=jpeg&quality=60`).length;

describe("DesktopWall", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    resetFakes();
    stubObjectUrls();
    setVisibility("visible");
  });
  afterEach(() => {
    cleanup();
    vi.useRealTimers();
    vi.unstubAllGlobals();
    setVisibility("visible");
  });

  it("shows a tile per agent with its screenshot, refreshed, old URLs revoked", async () => {
    const calls = routeFetch({
      "GET /v1/agents/agent-a/screenshot": shot,
      "GET /v1/agents/agent-b/screenshot": shot,
    });
    render(<DesktopWall agents={AGENTS} refreshMs={1500} />);
    await settle();
    expect(screen.getByTestId("desktop-wall")).toBeTruthy();
    for (const a of AGENTS) expect(screen.getByTestId(`desktop-tile-${a.id}`)).toBeTruthy();
    expect(shotsOf(calls, "agent-a")).toBe(1);
    expect(shotsOf(calls, "agent-b")).toBe(1);
    expect(shotsOf(calls, "agent-c")).toBe(0); // stopped: no desktop
    expect(calls.every((c) => c.credentials === "same-origin")).toBe(true);
    const img = () =>
      screen.getByTestId("desktop-tile-agent-a").querySelector("img")?.getAttribute("src");
    const first = img();
    expect(first).toMatch(/^blob:shot-/);

    await settle(1500);
    expect(shotsOf(calls, "agent-a")).toBe(2);
    expect(img()).not.toBe(first);
    expect(revoked).toContain(first);

    cleanup();
    expect(new Set(revoked)).toEqual(new Set(made)); // every picture's URL released
  });

  it("never has two requests of a tile in flight, however slow the desktop", async () => {
    const calls = routeFetch({
      "GET /v1/agents/agent-a/screenshot": () => "pending",
      "GET /v1/agents/agent-b/screenshot": shot,
    });
    render(<DesktopWall agents={AGENTS} refreshMs={1000} />);
    await settle(10_000);
    expect(shotsOf(calls, "agent-a")).toBe(1);
    expect(shotsOf(calls, "agent-b")).toBe(11);
  });

  it("stops refreshing while the tab is hidden and resumes when visible", async () => {
    const calls = routeFetch({
      "GET /v1/agents/agent-a/screenshot": shot,
      "GET /v1/agents/agent-b/screenshot": shot,
    });
    render(<DesktopWall agents={AGENTS.slice(0, 1)} refreshMs={1000} />);
    await settle();
    expect(shotsOf(calls, "agent-a")).toBe(1);
    setVisibility("hidden");
    await settle(30_000);
    expect(shotsOf(calls, "agent-a")).toBe(1);
    setVisibility("visible");
    await settle();
    expect(shotsOf(calls, "agent-a")).toBe(2);
  });

  it("a click focuses a tile: its desktop goes live (view-only) and the tile stops polling", async () => {
    const calls = routeFetch({
      "GET /v1/agents/agent-a/screenshot": shot,
      "GET /v1/agents/agent-b/screenshot": shot,
      "GET /v1/session": () => json({ tenant: "acme", expires_at: 0, holder: "session:x" }),
      "GET /v1/agents/agent-b/lease": () => json(null),
      "POST /v1/agents/agent-b/tickets": (body) =>
        json({
          ticket: "tk",
          mode: (body as { mode: string }).mode,
          expires_at: 0,
          relay_path: "/v1/agents/agent-b/vnc?ticket=tk",
        }),
    });
    const onFocus = vi.fn();
    render(<DesktopWall agents={AGENTS} refreshMs={1000} onFocus={onFocus} />);
    await settle();
    expect(screen.queryByTestId("live-desktop")).toBeNull();

    fireEvent.click(screen.getByTestId("desktop-tile-agent-b"));
    await settle();
    expect(onFocus).toHaveBeenCalledWith("agent-b");
    const live = screen.getByTestId("live-desktop");
    expect(live.getAttribute("data-agent-id")).toBe("agent-b");
    expect(FakeRFB.instances).toHaveLength(1);
    expect(FakeRFB.instances[0].viewOnly).toBe(true);
    expect(screen.getByTestId("takeover")).toBeTruthy();

    const before = shotsOf(calls, "agent-b");
    await settle(5000);
    expect(shotsOf(calls, "agent-b")).toBe(before); // live above: no screenshots
    expect(shotsOf(calls, "agent-a")).toBeGreaterThan(3);

    fireEvent.click(screen.getByTestId("desktop-unfocus"));
    await settle();
    expect(screen.queryByTestId("live-desktop")).toBeNull();
    expect(FakeRFB.instances[0].disconnected).toBe(true);
  });

  it("follows the focus its parent gives", async () => {
    routeFetch({
      "GET /v1/agents/agent-a/screenshot": shot,
      "GET /v1/agents/agent-b/screenshot": shot,
      "GET /v1/session": () => json({ tenant: "acme", expires_at: 0, holder: "session:x" }),
      "GET /v1/agents/agent-a/lease": () => json(null),
      "POST /v1/agents/agent-a/tickets": () =>
        json({
          ticket: "tk",
          mode: "view",
          expires_at: 0,
          relay_path: "/v1/agents/agent-a/vnc?ticket=tk",
        }),
    });
    render(<DesktopWall agents={AGENTS} focusedId="agent-a" />);
    await settle();
    expect(screen.getByTestId("live-desktop").getAttribute("data-agent-id")).toBe("agent-a");
  });

  it("a tile and a thumbnail of the same agent share one request at a time", async () => {
    const calls = routeFetch({ "GET /v1/agents/agent-a/screenshot": shot });
    function Thumb() {
      const { url } = useScreenshot("agent-a", true, 2000);
      return url ? <img data-testid="thumb" src={url} alt="" /> : null;
    }
    render(
      <>
        <DesktopWall agents={AGENTS.slice(0, 1)} refreshMs={1500} />
        <Thumb />
      </>,
    );
    await settle();
    expect(shotsOf(calls, "agent-a")).toBe(1);
    const tile = () =>
      screen.getByTestId("desktop-tile-agent-a").querySelector("img")?.getAttribute("src");
    expect(screen.getByTestId("thumb").getAttribute("src")).toBe(tile());
    for (let i = 0; i < 10; i++) await settle(1500);
    // one poller at the shorter interval, not one per picture (that would be 11 + 8)
    expect(shotsOf(calls, "agent-a")).toBe(11);
    expect(screen.getByTestId("thumb").getAttribute("src")).toBe(tile());
    cleanup();
    expect(polledAgents()).toBe(0);
    expect(new Set(revoked)).toEqual(new Set(made));
  });
});
