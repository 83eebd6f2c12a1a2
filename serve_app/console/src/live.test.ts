// The one live stream: hands out new events once each, resumes after the last seq when the
// browser gave up, and stops for good when the session is gone.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LiveStream, type LiveState } from "./live";
import { FakeEventSource, ev } from "./test/fakeEventSource";
import type { OrchEvent } from "./types";

beforeEach(() => {
  FakeEventSource.instances = [];
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

function stream(stands: { value: boolean }) {
  const live = new LiveStream({
    afterSeq: 5,
    checkSession: async () => stands.value,
    open: (url) => new FakeEventSource(url) as unknown as EventSource,
    retryMs: 500,
  });
  const got: OrchEvent[] = [];
  const states: LiveState[] = [];
  live.subscribe((batch) => got.push(...batch));
  live.onState((s) => states.push(s));
  live.start();
  return { live, got, states };
}

describe("LiveStream", () => {
  it("resumes after the last seq seen, never handing an event out twice", async () => {
    const stands = { value: true };
    const { live, got, states } = stream(stands);
    const first = FakeEventSource.latest();
    expect(first.url).toBe("/v1/events/stream?after_seq=5");
    first.open();
    await first.send(ev({ kind: "log", seq: 6 }), ev({ kind: "log", seq: 7 }));
    expect(got.map((e) => e.seq)).toEqual([6, 7]);

    await first.fail(true); // the browser gave up on it
    expect(states.at(-1)).toBe("connecting");
    await vi.advanceTimersByTimeAsync(500);
    const second = FakeEventSource.latest();
    expect(second).not.toBe(first);
    expect(second.url).toBe("/v1/events/stream?after_seq=7");
    await second.send(ev({ kind: "log", seq: 7 }), ev({ kind: "log", seq: 8 }));
    expect(got.map((e) => e.seq)).toEqual([6, 7, 8]);
    expect(live.seq).toBe(8);
    live.stop();
  });

  it("lets the browser retry by itself while the session stands", async () => {
    const { live } = stream({ value: true });
    const first = FakeEventSource.latest();
    await first.fail(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeEventSource.instances).toEqual([first]);
    expect(first.closed).toBe(false);
    live.stop();
    expect(first.closed).toBe(true);
  });

  it("opens from now on when the page has no seq yet", () => {
    const live = new LiveStream({ open: (url) => new FakeEventSource(url) as unknown as EventSource });
    live.start();
    expect(FakeEventSource.latest().url).toBe("/v1/events/stream");
    live.stop();
  });

  it("asks the session at once when the server ends the stream", async () => {
    const stands = { value: true };
    const { live, states } = stream(stands);
    const first = FakeEventSource.latest();
    first.open();
    await first.send(ev({ kind: "log", seq: 9 }));
    await first.end(); // ended with the session still standing (records failed): resume
    expect(first.closed).toBe(true);
    await vi.advanceTimersByTimeAsync(500);
    const second = FakeEventSource.latest();
    expect(second.url).toBe("/v1/events/stream?after_seq=9");
    stands.value = false;
    await second.end();
    expect(states.at(-1)).toBe("signed-out");
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeEventSource.instances).toEqual([first, second]);
    live.stop();
  });

  it("ends for good when the session is gone", async () => {
    const stands = { value: true };
    const { live, states } = stream(stands);
    const first = FakeEventSource.latest();
    first.open();
    stands.value = false;
    await first.fail(false);
    expect(states.at(-1)).toBe("signed-out");
    expect(first.closed).toBe(true);
    live.start(); // does not come back
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeEventSource.instances).toEqual([first]);
  });
});
