// The tasks list (newest first, each row's state), the detail of a selected task, and
// starting a task on an agent.
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { json, routeFetch } from "../components/testkit";
import { agent, task } from "../test/fixtures";
import { Tasks } from "./Tasks";

const agents = [agent("agent-a"), agent("agent-b", { path: "t-a/user/b" })];
const tasks = {
  "task-old": task("task-old", "agent-a", { state: "succeeded", result: "all done", created_at: 1 }),
  "task-new": task("task-new", "agent-b", { state: "input_required", created_at: 2 }),
};

describe("Tasks", () => {
  it("lists tasks newest first with their states", () => {
    routeFetch({});
    render(<Tasks agents={agents} tasks={tasks} events={[]} selected={null} onSelect={() => {}} onChanged={() => {}} />);
    const rows = within(screen.getByTestId("tasks")).getAllByTestId(/^task-row-/);
    expect(rows.map((r) => [r.dataset.testid, r.dataset.state])).toEqual([
      ["task-row-task-new", "input_required"],
      ["task-row-task-old", "succeeded"],
    ]);
  });

  it("selects a row; the detail shows the result, the artifacts link and the events", async () => {
    routeFetch({
      "GET /v1/tasks/task-old/events": () =>
        json({
          events: [
            { id: "e1", seq: 7, kind: "task", agent_id: "agent-a", task_id: "task-old", at: 1, data: { state: "succeeded" }, blobs: [] },
          ],
          next_after_seq: 7,
          has_more: false,
        }),
    });
    const select = vi.fn();
    const { rerender } = render(
      <Tasks agents={agents} tasks={tasks} events={[]} selected={null} onSelect={select} onChanged={() => {}} />,
    );
    fireEvent.click(screen.getByTestId("task-row-task-old"));
    expect(select).toHaveBeenCalledWith("task-old");
    rerender(<Tasks agents={agents} tasks={tasks} events={[]} selected="task-old" onSelect={select} onChanged={() => {}} />);
    const detail = screen.getByTestId("task-detail");
    expect(detail.textContent).toContain("all done");
    expect(within(detail).getByTestId("task-artifacts").getAttribute("href")).toBe("/v1/tasks/task-old/artifacts");
    expect(within(detail).queryByTestId("cancel-task")).toBeNull(); // ended: nothing to cancel
    expect((await within(detail).findByText(/task succeeded/)).textContent).toBeTruthy();
  });

  it("starts a task on the chosen agent", async () => {
    const calls = routeFetch({
      "POST /v1/agents/agent-b/tasks": (body) => json(task("task-3", "agent-b", { spec: body as { description: string } }), 202),
    });
    const select = vi.fn();
    const changed = vi.fn();
    render(<Tasks agents={agents} tasks={{}} events={[]} selected={null} onSelect={select} onChanged={changed} />);
    fireEvent.change(screen.getByTestId("new-task-agent"), { target: { value: "agent-b" } });
    fireEvent.change(screen.getByTestId("new-task-text"), { target: { value: "write the report" } });
    fireEvent.click(screen.getByTestId("new-task-submit"));
    await waitFor(() => expect(select).toHaveBeenCalledWith("task-3"));
    expect(changed).toHaveBeenCalledWith({ tasks: ["task-3"] });
    expect(calls.map((c) => [c.method, c.path, c.body])).toEqual([
      ["POST", "/v1/agents/agent-b/tasks", { description: "write the report" }],
    ]);
  });

  it("cancels an open task", async () => {
    const calls = routeFetch({
      "GET /v1/tasks/task-new/events": () => json({ events: [], next_after_seq: 0, has_more: false }),
      "POST /v1/tasks/task-new/cancel": () => json({ ...tasks["task-new"], state: "cancelled" }),
    });
    render(<Tasks agents={agents} tasks={tasks} events={[]} selected="task-new" onSelect={() => {}} onChanged={() => {}} />);
    fireEvent.click(screen.getByTestId("cancel-task"));
    await waitFor(() => expect(calls.some((c) => c.path === "/v1/tasks/task-new/cancel")).toBe(true));
  });

  it("reads the detail's events again when the live stream brings one of its task", async () => {
    const page = (seq: number, state: string) => ({
      events: [{ id: `e${seq}`, seq, kind: "task" as const, agent_id: "agent-b", task_id: "task-new", at: seq, data: { state }, blobs: [] }],
      next_after_seq: seq,
      has_more: false,
    });
    const calls = routeFetch({
      "GET /v1/tasks/task-new/events?after_seq=0&limit=1000": () => json(page(3, "running")),
      "GET /v1/tasks/task-new/events?after_seq=3&limit=1000": () => json(page(9, "paused")),
    });
    const props = { agents, tasks, selected: "task-new", onSelect: () => {}, onChanged: () => {} };
    const { rerender } = render(<Tasks {...props} events={[]} />);
    const detail = screen.getByTestId("task-detail");
    await within(detail).findByText(/task running/);
    rerender(<Tasks {...props} events={[]} />); // nothing new: no read
    const live = page(9, "paused").events;
    rerender(<Tasks {...props} events={live} />);
    await within(detail).findByText(/task paused/);
    expect(calls.map((c) => c.path)).toEqual([
      "/v1/tasks/task-new/events?after_seq=0&limit=1000",
      "/v1/tasks/task-new/events?after_seq=3&limit=1000",
    ]);
  });
});
