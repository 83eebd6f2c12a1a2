// One screenshot poller per agent, shared by every picture of its desktop on the page (the
// wall's tile and the tree's thumbnail ask the agent once, not once each): one request at a
// time, the next one the shortest interval any picture asks for after the last ended; the
// object URL of a picture is revoked when the next one replaces it and when the last picture
// of the agent goes.
import { useEffect, useState } from "react";
import { agentPath, describeError, requestBlob } from "./http";

/** What a picture shows: the latest screenshot's object URL, or why it is stale. */
export interface Shot {
  url: string | null;
  error: string;
}

export const NO_SHOT: Shot = { url: null, error: "" };

type Listener = (shot: Shot) => void;

interface Poller {
  shot: Shot;
  wanted: Map<number, { refreshMs: number; listener: Listener }>;
  ctl: AbortController;
  timer?: ReturnType<typeof setTimeout>;
}

const pollers = new Map<string, Poller>();
let nextId = 0;

export function screenshotPath(agentId: string): string {
  return `${agentPath(agentId)}/screenshot?format=jpeg&quality=60`;
}

/** How many agents are polled now (for tests). */
export function polledAgents(): number {
  return pollers.size;
}

async function load(agentId: string, p: Poller): Promise<void> {
  try {
    const blob = await requestBlob(screenshotPath(agentId), p.ctl.signal);
    if (p.ctl.signal.aborted) return;
    if (p.shot.url) URL.revokeObjectURL(p.shot.url);
    p.shot = { url: URL.createObjectURL(blob), error: "" };
  } catch (e) {
    if (p.ctl.signal.aborted) return;
    p.shot = { url: p.shot.url, error: describeError(e) };
  }
  for (const { listener } of p.wanted.values()) listener(p.shot);
  // The next request starts only after this one ended: no overlap, however slow.
  const every = Math.min(...[...p.wanted.values()].map((w) => w.refreshMs));
  p.timer = setTimeout(() => void load(agentId, p), every);
}

/** Have `listener` called with each new picture of the agent's desktop (at once with the
 * latest, if there is one); returns the function that stops it. */
export function watchScreenshot(agentId: string, refreshMs: number, listener: Listener): () => void {
  let p = pollers.get(agentId);
  const fresh = p === undefined;
  if (p === undefined) {
    p = { shot: NO_SHOT, wanted: new Map(), ctl: new AbortController() };
    pollers.set(agentId, p);
  }
  const id = ++nextId;
  p.wanted.set(id, { refreshMs, listener });
  if (fresh) void load(agentId, p);
  else if (p.shot !== NO_SHOT) listener(p.shot);
  const poller = p;
  return () => {
    poller.wanted.delete(id);
    if (poller.wanted.size > 0) return;
    poller.ctl.abort();
    if (poller.timer !== undefined) clearTimeout(poller.timer);
    if (poller.shot.url) URL.revokeObjectURL(poller.shot.url);
    pollers.delete(agentId);
  };
}

/** A picture of the agent's desktop, refreshed while `active` (every `refreshMs` at most). */
export function useScreenshot(agentId: string, active: boolean, refreshMs: number): Shot {
  const [shot, setShot] = useState<Shot>(NO_SHOT);
  useEffect(() => {
    if (!active) return;
    return watchScreenshot(agentId, refreshMs, setShot);
  }, [agentId, active, refreshMs]);
  return shot;
}
