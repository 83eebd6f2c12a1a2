// The tree: agents under their parents, with status and cost; fired agents on request;
// fire and hire send the right requests.
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { json, routeFetch } from "../components/testkit";
import { agent } from "../test/fixtures";
import { AgentTree, formatCost } from "./AgentTree";

const usage = { model_calls: 2, input_tokens: 1, output_tokens: 1, steps: 0, wall_s: 0 };

function tree(onChanged = vi.fn()) {
  const agents = {
    "agent-boss": agent("agent-boss", { status: "busy", usage: { ...usage, cost_usd: 0.031, unpriced_calls: 0 } }),
    "agent-kid": agent("agent-kid", { parent_id: "agent-boss", path: "t-a/user/boss/kid" }),
    "agent-old": agent("agent-old", { status: "stopped" }),
  };
  render(
    <AgentTree
      agents={agents}
      tasks={{}}
      current={{ "agent-kid": "click 10 20 -> ok" }}
      focused={null}
      onFocus={() => {}}
      onChanged={onChanged}
    />,
  );
}

describe("AgentTree", () => {
  it("draws children under their parent with status, step and cost; fired ones on request", () => {
    routeFetch({});
    tree();
    const boss = screen.getByTestId("agent-node-agent-boss");
    expect(boss.getAttribute("data-status")).toBe("busy");
    expect(boss.textContent).toContain("$0.0310");
    const kid = within(boss.closest("li")!).getByTestId("agent-node-agent-kid");
    expect(kid.textContent).toContain("click 10 20 -> ok");
    expect(screen.queryByTestId("agent-node-agent-old")).toBeNull();
    fireEvent.click(screen.getByTestId("show-fired"));
    expect(screen.getByTestId("agent-node-agent-old").getAttribute("data-status")).toBe("stopped");
    expect(screen.queryByTestId("fire-agent-old")).toBeNull(); // fired already
  });

  it("fires with DELETE and hires a child with POST .../children", async () => {
    const calls = routeFetch({
      "DELETE /v1/agents/agent-kid": () => new Response(null, { status: 204 }),
      "POST /v1/agents/agent-boss/children": (body) => json(agent("agent-new", { parent_id: "agent-boss", spec: body as never }), 201),
    });
    const changed = vi.fn();
    tree(changed);
    fireEvent.click(screen.getByTestId("fire-agent-kid"));
    await waitFor(() => expect(changed).toHaveBeenCalledWith(["agent-kid"]));
    fireEvent.change(screen.getByTestId("hire-name"), { target: { value: "writer" } });
    fireEvent.change(screen.getByTestId("hire-role"), { target: { value: "technical writer" } });
    fireEvent.change(screen.getByTestId("hire-parent"), { target: { value: "agent-boss" } });
    fireEvent.click(screen.getByTestId("hire"));
    await waitFor(() => expect(changed).toHaveBeenCalledWith(["agent-new"]));
    expect(calls.filter((c) => !c.path.includes("screenshot")).map((c) => [c.method, c.path, c.body])).toEqual([
      ["DELETE", "/v1/agents/agent-kid", undefined],
      ["POST", "/v1/agents/agent-boss/children", { name: "writer", role: "technical writer" }],
    ]);
  });

  it("says what is known of the cost", () => {
    expect(formatCost(null)).toBe("$0");
    expect(formatCost({ ...usage, cost_usd: 0, unpriced_calls: 2 })).toBe("$?");
    expect(formatCost({ ...usage, cost_usd: 0.5, unpriced_calls: 1 })).toBe("$0.5000+?");
  });
});
