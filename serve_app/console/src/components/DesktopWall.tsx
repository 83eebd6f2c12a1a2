// The team's desktops side by side: each tile a JPEG screenshot refreshed every ~1.5 s
// (only while the tab is visible, one fetch at a time per agent, shared with the tree's
// thumbnail, object URLs revoked: ./screenshots); the focused desktop is live (noVNC
// through the relay) with take over / hand back.
import { useState } from "react";
import { usePageVisible } from "./http";
import { useScreenshot } from "./screenshots";
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
