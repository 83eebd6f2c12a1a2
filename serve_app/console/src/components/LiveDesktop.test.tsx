import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CONNECT_TIMEOUT_MS,
  EmbedPage,
  LiveDesktop,
  MAX_ATTEMPTS,
  parseEmbedUrl,
} from "./LiveDesktop";
import {
  FakeRFB,
  FakeWebSocket,
  json,
  type Recorded,
  resetFakes,
  routeFetch,
  settle,
} from "./testkit";

vi.mock("@novnc/novnc", async () => ({ default: (await import("./testkit")).FakeRFB }));

const host = () => window.location.host;

function tickets(): { calls: Recorded[]; issued: string[] } {
  const issued: string[] = [];
  const calls = routeFetch({
    "POST /v1/agents/agent-1/tickets": (body) => {
      const mode = (body as { mode: string }).mode;
      const ticket = `T${issued.length + 1}-${mode}`;
      issued.push(ticket);
      return json({
        ticket,
        mode,
        expires_at: Date.now() / 1000 + 60,
        relay_path: `/v1/agents/agent-1/vnc?ticket=${ticket}`,
      });
    },
  });
  return { calls, issued };
}

const state = () => screen.getByTestId("live-desktop").getAttribute("data-state");

describe("LiveDesktop", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    resetFakes();
  });
  afterEach(() => {
    cleanup();
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it("mints a view ticket and opens RFB view-only on the relay of this host", async () => {
    const { calls } = tickets();
    render(<LiveDesktop agentId="agent-1" mode="view" />);
    expect(state()).toBe("connecting");
    await settle();

    expect(calls).toEqual([
      {
        method: "POST",
        path: "/v1/agents/agent-1/tickets",
        body: { mode: "view" },
        credentials: "same-origin",
      },
    ]);
    expect(FakeWebSocket.instances.map((w) => w.url)).toEqual([
      `ws://${host()}/v1/agents/agent-1/vnc?ticket=T1-view`,
    ]);
    expect(FakeWebSocket.instances[0].protocols).toEqual(["binary"]);
    const rfb = FakeRFB.instances[0];
    expect(rfb.channel).toBe(FakeWebSocket.instances[0]);
    expect(rfb.target).toBe(screen.getByTestId("live-desktop").firstElementChild);
    expect(rfb.viewOnly).toBe(true);
    expect(rfb.scaleViewport).toBe(true);
    expect(rfb.focusOnClick).toBe(false);
    expect(state()).toBe("connecting");

    await settle();
    rfb.connected();
    await settle();
    expect(state()).toBe("connected");
    expect(screen.getByTestId("live-desktop-status").textContent).toContain("view only");
  });

  it("sends input only in control mode, with a control ticket", async () => {
    const { calls } = tickets();
    render(<LiveDesktop agentId="agent-1" mode="control" />);
    await settle();
    expect(calls[0].body).toEqual({ mode: "control" });
    expect(FakeWebSocket.instances[0].url).toContain("ticket=T1-control");
    expect(FakeRFB.instances[0].viewOnly).toBe(false);
    expect(FakeRFB.instances[0].focusOnClick).toBe(true);
  });

  it("switching to control reconnects with a control ticket and drops the view stream", async () => {
    const { calls } = tickets();
    const { rerender } = render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle();
    FakeRFB.instances[0].connected();
    rerender(<LiveDesktop agentId="agent-1" mode="control" />);
    await settle();
    expect(FakeRFB.instances[0].disconnected).toBe(true);
    expect(calls.map((c) => c.body)).toEqual([{ mode: "view" }, { mode: "control" }]);
    expect(FakeRFB.instances[1].viewOnly).toBe(false);
  });

  it("after a drop shows why and reconnects with a fresh ticket after a backoff", async () => {
    const { calls, issued } = tickets();
    render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle();
    FakeRFB.instances[0].connected();
    await settle();

    FakeRFB.instances[0].dropped(1006);
    await settle();
    expect(state()).toBe("disconnected");
    const status = screen.getByTestId("live-desktop-status").textContent ?? "";
    expect(status).toContain("the connection was lost");
    expect(status).toContain("retrying in 1 s");
    expect(calls).toHaveLength(1);

    await settle(999);
    expect(calls).toHaveLength(1); // not before the backoff
    await settle(1);
    expect(calls).toHaveLength(2);
    expect(issued).toEqual(["T1-view", "T2-view"]);
    expect(FakeWebSocket.instances[1].url).toContain("ticket=T2-view");
    expect(state()).toBe("connecting");
    FakeRFB.instances[1].connected();
    await settle();
    expect(state()).toBe("connected");
  });

  it("backs off exponentially, bounded, and gives up after MAX_ATTEMPTS", async () => {
    const { calls } = tickets();
    render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle();
    const delays: number[] = [];
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      FakeRFB.instances[i].dropped(1011, "boom");
      await settle();
      const m = /retrying in (\d+) s/.exec(
        screen.getByTestId("live-desktop-status").textContent ?? "",
      );
      if (!m) break;
      delays.push(Number(m[1]));
      await settle(Number(m[1]) * 1000);
    }
    expect(delays).toEqual([1, 2, 4, 8, 15, 15, 15]);
    expect(calls).toHaveLength(MAX_ATTEMPTS);
    expect(screen.getByTestId("live-desktop-status").textContent).toContain(
      "the server failed: boom",
    );
    await settle(120_000);
    expect(calls).toHaveLength(MAX_ATTEMPTS);
    fireEvent.click(screen.getByTestId("live-desktop-reconnect"));
    await settle();
    expect(calls).toHaveLength(MAX_ATTEMPTS + 1);
  });

  it("gives a stream with no first frame CONNECT_TIMEOUT_MS, then tries again", async () => {
    const { calls } = tickets();
    render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle();
    const first = FakeRFB.instances[0];
    first.addEventListener("disconnect", () => undefined);
    await settle(CONNECT_TIMEOUT_MS - 1);
    expect(first.disconnected).toBe(false);
    await settle(1);
    expect(first.disconnected).toBe(true);
    first.dropped(1000); // what RFB reports once its socket closed
    await settle();
    expect(screen.getByTestId("live-desktop-status").textContent).toContain(
      "no picture within 20 s",
    );
    await settle(1000);
    expect(calls).toHaveLength(2);
  });

  it("shows the desktop's own refusal (security failure)", async () => {
    tickets();
    render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle();
    const rfb = FakeRFB.instances[0];
    act(() => {
      rfb.dispatchEvent(
        new CustomEvent("securityfailure", { detail: { status: 1, reason: "no such session" } }),
      );
    });
    rfb.dropped(1000);
    await settle();
    expect(screen.getByTestId("live-desktop-status").textContent).toContain(
      "refused by the desktop: no such session",
    );
  });

  it("does not retry revoked credentials (4403)", async () => {
    const { calls } = tickets();
    render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle();
    FakeRFB.instances[0].connected();
    FakeRFB.instances[0].dropped(4403, "key revoked");
    await settle(60_000);
    expect(state()).toBe("disconnected");
    expect(screen.getByTestId("live-desktop-status").textContent).toContain("the key was revoked");
    expect(calls).toHaveLength(1);
  });

  it("shows the API's refusal of a ticket and does not retry a 404", async () => {
    const calls = routeFetch({
      "POST /v1/agents/agent-1/tickets": () =>
        json({ error: { code: "not_found", message: "no agent agent-1" } }, 404),
    });
    render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle(30_000);
    expect(state()).toBe("disconnected");
    expect(screen.getByTestId("live-desktop-status").textContent).toContain("no agent agent-1");
    expect(calls).toHaveLength(1);
    expect(FakeWebSocket.instances).toHaveLength(0);
  });

  it("closes the stream on unmount and never reconnects", async () => {
    const { calls } = tickets();
    const { unmount } = render(<LiveDesktop agentId="agent-1" mode="view" />);
    await settle();
    unmount();
    expect(FakeRFB.instances[0].disconnected).toBe(true);
    await settle(60_000);
    expect(calls).toHaveLength(1);
  });
});

describe("EmbedPage", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    resetFakes();
  });
  afterEach(() => {
    cleanup();
    vi.useRealTimers();
    vi.unstubAllGlobals();
    window.history.replaceState(null, "", "/");
  });

  it("parses the embed URL", () => {
    expect(parseEmbedUrl({ pathname: "/console/embed/agent-9", search: "?ticket=E%2B1" })).toEqual({
      agentId: "agent-9",
      ticket: "E+1",
    });
    expect(parseEmbedUrl({ pathname: "/console/embed/agent-9", search: "" })).toBeNull();
    expect(parseEmbedUrl({ pathname: "/console/", search: "?ticket=x" })).toBeNull();
  });

  it("opens the desktop view-only with the URL's ticket, minting nothing", async () => {
    const calls = routeFetch({});
    window.history.replaceState(null, "", "/console/embed/agent-9?ticket=E1%2Fx");
    render(<EmbedPage />);
    await settle();
    expect(calls).toHaveLength(0);
    expect(FakeWebSocket.instances.map((w) => w.url)).toEqual([
      `ws://${host()}/v1/agents/agent-9/vnc?ticket=E1%2Fx`,
    ]);
    expect(FakeRFB.instances[0].viewOnly).toBe(true);
    // an embed ticket refused cannot be replaced: it stops and says why
    FakeRFB.instances[0].dropped(4401);
    await settle(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(screen.getByTestId("live-desktop-status").textContent).toContain("ticket was refused");
  });

  it("says so when the URL has no ticket", () => {
    window.history.replaceState(null, "", "/console/embed/agent-9");
    render(<EmbedPage />);
    expect(screen.getByTestId("embed-error")).toBeTruthy();
  });
});
