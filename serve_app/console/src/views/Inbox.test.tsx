// The inbox answers in place: the right request for a question, an approval, a rejection.
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { json, routeFetch } from "../components/testkit";
import { agent, task } from "../test/fixtures";
import { Inbox, inboxTasks } from "./Inbox";

const asking = task("task-q", "agent-a", {
  state: "input_required",
  updated_at: 10,
  waiting: { question: "Which colour should the report be?", actions: [] },
});
const approving = task("task-p", "agent-a", {
  state: "approval_required",
  updated_at: 5,
  waiting: { actions: [{ type: "click", x: 10, y: 20 }], reason: "clicks need a person" },
});
const agents = { "agent-a": agent("agent-a") };

describe("Inbox", () => {
  it("lists only the tasks waiting for a person, the longest waiting first", () => {
    const tasks = { a: asking, p: approving, r: task("task-r", "agent-a"), s: task("task-s", "agent-a", { state: "paused" }) };
    expect(inboxTasks(tasks).map((t) => t.id)).toEqual(["task-p", "task-q"]);
  });

  it("answers a question with POST /v1/tasks/{id}/answer and the text", async () => {
    const calls = routeFetch({
      "POST /v1/tasks/task-q/answer": () => json({ ...asking, state: "running", waiting: null }),
    });
    const changed = vi.fn();
    render(<Inbox tasks={[asking]} agents={agents} onOpen={() => {}} onChanged={changed} />);
    const item = screen.getByTestId("inbox-item-task-q");
    expect(item.textContent).toContain("Which colour should the report be?");
    fireEvent.change(screen.getByTestId("inbox-answer-task-q"), { target: { value: " ultramarine " } });
    fireEvent.click(screen.getByTestId("inbox-send-task-q"));
    await waitFor(() => expect(changed).toHaveBeenCalledWith({ tasks: ["task-q"] }));
    expect(calls).toEqual([
      {
        method: "POST",
        path: "/v1/tasks/task-q/answer",
        body: { text: "ultramarine" },
        credentials: "same-origin",
      },
    ]);
  });

  it("approves, and rejects with the reason given", async () => {
    const calls = routeFetch({
      "POST /v1/tasks/task-p/approve": () => json({ ...approving, state: "running" }),
      "POST /v1/tasks/task-p/reject": () => json({ ...approving, state: "running" }),
    });
    render(<Inbox tasks={[approving]} agents={agents} onOpen={() => {}} onChanged={() => {}} />);
    const item = screen.getByTestId("inbox-item-task-p");
    expect(within(item).getByText(/click x=10 y=20/)).toBeTruthy();
    expect(item.textContent).toContain("clicks need a person");
    expect(screen.queryByTestId("inbox-answer-task-p")).toBeNull(); // nothing to answer
    fireEvent.click(screen.getByTestId("inbox-approve-task-p"));
    await waitFor(() => expect(calls).toHaveLength(1));
    const approve = screen.getByTestId("inbox-approve-task-p") as HTMLButtonElement;
    await waitFor(() => expect(approve.disabled).toBe(false)); // the approval went through
    fireEvent.change(screen.getByTestId("inbox-reason-task-p"), { target: { value: "not that button" } });
    await waitFor(() => expect((screen.getByTestId("inbox-reject-task-p") as HTMLButtonElement).disabled).toBe(false));
    fireEvent.click(screen.getByTestId("inbox-reject-task-p"));
    await waitFor(() => expect(calls).toHaveLength(2));
    expect(calls.map((c) => [c.method, c.path, c.body])).toEqual([
      ["POST", "/v1/tasks/task-p/approve", {}],
      ["POST", "/v1/tasks/task-p/reject", { reason: "not that button" }],
    ]);
  });

  it("shows the API's refusal and keeps the item", async () => {
    routeFetch({
      "POST /v1/tasks/task-q/answer": () =>
        json({ error: { code: "conflict", message: "task task-q asked nothing" } }, 409),
    });
    render(<Inbox tasks={[asking]} agents={agents} onOpen={() => {}} onChanged={() => {}} />);
    fireEvent.change(screen.getByTestId("inbox-answer-task-q"), { target: { value: "blue" } });
    fireEvent.click(screen.getByTestId("inbox-send-task-q"));
    expect((await screen.findByText(/asked nothing/)).textContent).toContain("409 conflict");
  });
});
