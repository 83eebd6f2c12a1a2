import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LEASE_POLL_MS, type Lease, Takeover } from "./Takeover";
import { FakeRFB, json, resetFakes, routeFetch, settle } from "./testkit";

vi.mock("@novnc/novnc", async () => ({ default: (await import("./testkit")).FakeRFB }));

const ME = "session:abcdef012345";

function lease(holder: string, note: string | null = null): Lease {
  const at = Date.now() / 1000;
  return {
    id: "lease-1",
    agent_id: "agent-1",
    holder,
    task_id: "task-1",
    taken_at: at,
    expires_at: at + 900,
    note,
  };
}

function ticketRoute(body: unknown) {
  const mode = (body as { mode: string }).mode;
  return json({
    ticket: `t-${mode}`,
    mode,
    expires_at: 0,
    relay_path: `/v1/agents/agent-1/vnc?ticket=t-${mode}`,
  });
}

const desktop = () => screen.getByTestId("live-desktop");

describe("Takeover", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    resetFakes();
  });
  afterEach(() => {
    cleanup();
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it("takes over (control mode), then hands back with the note (view mode)", async () => {
    let current: Lease | null = null;
    const calls = routeFetch({
      "GET /v1/session": () => json({ tenant: "acme", expires_at: 0, holder: ME }),
      "GET /v1/agents/agent-1/lease": () => json(current),
      "POST /v1/agents/agent-1/lease": () => {
        current = lease(ME);
        return json(current);
      },
      "POST /v1/agents/agent-1/lease/hand-back": (body) => {
        const ended = {
          ...lease(ME, (body as { note: string }).note),
          expires_at: Date.now() / 1000,
        };
        current = null;
        return json(ended);
      },
      "POST /v1/agents/agent-1/tickets": ticketRoute,
    });
    render(<Takeover agentId="agent-1" />);
    await settle();
    expect(screen.getByTestId("lease-holder").textContent).toContain("nobody");
    expect(desktop().getAttribute("data-mode")).toBe("view");
    expect(FakeRFB.instances.at(-1)?.viewOnly).toBe(true);
    expect(screen.queryByTestId("handback-note")).toBeNull();

    fireEvent.click(screen.getByTestId("takeover"));
    await settle();
    const took = calls.find((c) => c.method === "POST" && c.path === "/v1/agents/agent-1/lease");
    expect(took?.body).toEqual({ ttl_s: 900 });
    expect(took?.credentials).toBe("same-origin");
    expect(screen.getByTestId("lease-holder").textContent).toContain("held by you");
    expect(desktop().getAttribute("data-mode")).toBe("control");
    const tickets = calls.filter((c) => c.path === "/v1/agents/agent-1/tickets").map((c) => c.body);
    expect(tickets).toEqual([{ mode: "view" }, { mode: "control" }]);
    expect(FakeRFB.instances.at(-1)?.viewOnly).toBe(false);

    fireEvent.change(screen.getByTestId("handback-note"), {
      target: { value: "I closed the dialog" },
    });
    fireEvent.click(screen.getByTestId("handback-submit"));
    await settle();
    const back = calls.find((c) => c.path === "/v1/agents/agent-1/lease/hand-back");
    expect(back?.body).toEqual({ note: "I closed the dialog" });
    expect(screen.getByTestId("lease-holder").textContent).toContain("nobody");
    expect(desktop().getAttribute("data-mode")).toBe("view");
    expect(screen.queryByTestId("handback-note")).toBeNull();
  });

  it("shows another holder, cannot take it, and sees it freed on the next poll", async () => {
    let current: Lease | null = lease("key:0123456789ab");
    routeFetch({
      "GET /v1/session": () => json({ tenant: "acme", expires_at: 0, holder: ME }),
      "GET /v1/agents/agent-1/lease": () => json(current),
      "POST /v1/agents/agent-1/tickets": ticketRoute,
    });
    render(<Takeover agentId="agent-1" />);
    await settle();
    expect(screen.getByTestId("lease-holder").textContent).toContain("held by key:0123456789ab");
    expect((screen.getByTestId("takeover") as HTMLButtonElement).disabled).toBe(true);
    expect(desktop().getAttribute("data-mode")).toBe("view");

    current = null;
    await settle(LEASE_POLL_MS);
    expect(screen.getByTestId("lease-holder").textContent).toContain("nobody");
    expect((screen.getByTestId("takeover") as HTMLButtonElement).disabled).toBe(false);
  });

  it("a lease already mine (from an earlier visit) means control at once", async () => {
    routeFetch({
      "GET /v1/session": () => json({ tenant: "acme", expires_at: 0, holder: ME }),
      "GET /v1/agents/agent-1/lease": () => json(lease(ME)),
      "POST /v1/agents/agent-1/tickets": ticketRoute,
    });
    render(<Takeover agentId="agent-1" />);
    await settle();
    expect(desktop().getAttribute("data-mode")).toBe("control");
    expect(screen.getByTestId("takeover").textContent).toContain("Extend");
  });

  it("shows a refused takeover (409) and re-reads the holder", async () => {
    let reads = 0;
    routeFetch({
      "GET /v1/session": () => json({ tenant: "acme", expires_at: 0, holder: ME }),
      "GET /v1/agents/agent-1/lease": () => {
        reads += 1;
        return json(reads > 1 ? lease("session:someoneelse") : null);
      },
      "POST /v1/agents/agent-1/lease": () =>
        json({ error: { code: "conflict", message: "session:someoneelse holds it" } }, 409),
      "POST /v1/agents/agent-1/tickets": ticketRoute,
    });
    render(<Takeover agentId="agent-1" />);
    await settle();
    fireEvent.click(screen.getByTestId("takeover"));
    await settle();
    expect(screen.getByRole("alert").textContent).toContain("session:someoneelse holds it");
    expect(screen.getByTestId("lease-holder").textContent).toContain("held by session:someoneelse");
    expect(desktop().getAttribute("data-mode")).toBe("view");
  });
});
