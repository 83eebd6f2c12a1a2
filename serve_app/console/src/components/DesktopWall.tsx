// The team's desktops side by side: each tile a JPEG screenshot refreshed every ~1.5 s
// (only while the tab is visible, one fetch at a time per tile, object URLs revoked); the
// focused desktop is live (noVNC through the relay) with take over / hand back.
import { useEffect, useRef, useState } from "react";
import { agentPath, describeError, requestBlob, usePageVisible } from "./http";
import { Takeover } from "./Takeover";
import "./desktop.css";

/** What a tile needs of an agent (the API's AgentInfo has more). */
export interface WallAgent {
  id: string;
  path: string;
  status: string;
}

export interface DesktopWallProps {
  agents: readonly WallAgent[];
  /** The focused agent, when the parent controls it (else the wall keeps its own). */
  focusedId?: string | null;
  onFocus?: (agentId: string | null) => void;
  /** Milliseconds between a tile's screenshot and its next request. */
  refreshMs?: number;
}

export const REFRESH_MS = 1500;
/** Agents with these statuses have no desktop to show. */
const NO_DESKTOP = new Set(["stopped", "failed"]);

export function screenshotPath(agentId: string): string {
  return `${agentPath(agentId)}/screenshot?format=jpeg&quality=60`;
}

/** A tile's picture: refreshed while `active`, never two requests at once, URLs revoked. */
export function useScreenshot(agentId: string, active: boolean, refreshMs: number) {
  const [url, setUrl] = useState<string | null>(null);
  const [error, setError] = useState("");
  const current = useRef<string | null>(null);

  useEffect(() => {
    if (!active) return;
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const blob = await requestBlob(screenshotPath(agentId), ctl.signal);
        if (ctl.signal.aborted) return;
        const next = URL.createObjectURL(blob);
        if (current.current) URL.revokeObjectURL(current.current);
        current.current = next;
        setUrl(next);
        setError("");
      } catch (e) {
        if (ctl.signal.aborted) return;
        setError(describeError(e));
      }
      // The next request starts only after this one ended: no overlap, however slow.
      timer = setTimeout(() => void load(), refreshMs);
    };
    void load();
    return () => {
      ctl.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [agentId, active, refreshMs]);

  // The last picture's URL goes when the tile does.
  useEffect(
    () => () => {
      if (current.current) URL.revokeObjectURL(current.current);
      current.current = null;
    },
    [],
  );
  return { url, error };
}

function Tile({
  agent,
  focused,
  active,
  refreshMs,
  onClick,
}: {
  agent: WallAgent;
  /** Shown live above: the tile stops refreshing. */
  focused: boolean;
  active: boolean;
  refreshMs: number;
  onClick: () => void;
}) {
  const hasDesktop = !NO_DESKTOP.has(agent.status);
  const { url, error } = useScreenshot(agent.id, active && hasDesktop, refreshMs);
  const name = agent.path.split("/").pop() || agent.path;
  return (
    <button
      type="button"
      className={`desktop-tile desktop-tile-${agent.status}${focused ? " desktop-tile-focused" : ""}`}
      aria-pressed={focused}
      data-testid={`desktop-tile-${agent.id}`}
      data-status={agent.status}
      title={`${agent.path} (${agent.status}): click for the live desktop`}
      onClick={onClick}
    >
      {url ? (
        <img src={url} alt={`${agent.path}'s desktop`} />
      ) : (
        <span className="desktop-tile-empty">{hasDesktop ? "…" : "no desktop"}</span>
      )}
      <span className="desktop-tile-caption">
        {name} · {agent.status}
        {focused && " · live above"}
        {error && (
          <span className="desktop-tile-error" title={error}>
            {" "}
            · stale
          </span>
        )}
      </span>
    </button>
  );
}

/** The wall (`data-testid="desktop-wall"`): tiles, and the focused desktop live. */
export function DesktopWall({
  agents,
  focusedId,
  onFocus,
  refreshMs = REFRESH_MS,
}: DesktopWallProps) {
  const [ownFocus, setOwnFocus] = useState<string | null>(null);
  const focused = focusedId !== undefined ? focusedId : ownFocus;
  const visible = usePageVisible();
  const focus = (id: string | null) => {
    setOwnFocus(id);
    onFocus?.(id);
  };
  const focusedAgent = agents.find((a) => a.id === focused) ?? null;

  return (
    <div className="desktop-wall" data-testid="desktop-wall">
      {focusedAgent && (
        <section className="desktop-focus" data-testid="desktop-focus">
          <header>
            <span>{focusedAgent.path}</span>
            <button type="button" data-testid="desktop-unfocus" onClick={() => focus(null)}>
              Back to the wall
            </button>
          </header>
          <Takeover key={focusedAgent.id} agentId={focusedAgent.id} />
        </section>
      )}
      <div className="desktop-tiles">
        {agents.length === 0 && <p className="empty">No agents yet: hire one.</p>}
        {agents.map((a) => (
          <Tile
            key={a.id}
            agent={a}
            focused={a.id === focusedAgent?.id}
            active={visible && a.id !== focusedAgent?.id}
            refreshMs={refreshMs}
            onClick={() => focus(a.id)}
          />
        ))}
      </div>
    </div>
  );
}
