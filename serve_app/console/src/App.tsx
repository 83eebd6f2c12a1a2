// The console's shell: an embed page (`/console/embed/<agent_id>?ticket=`: one view-only
// desktop, no sign-in) or the console itself, behind a sign-in with an API key.
import { useCallback, useEffect, useState } from "react";
import { api, isSignedOut } from "./api";
import { EmbedPage } from "./components/LiveDesktop";
import type { SessionInfo } from "./types";
import { Console } from "./views/Console";
import { SignIn } from "./views/SignIn";

/** Whether this page is an embed (a notebook's iframe). */
export function isEmbed(pathname: string): boolean {
  return /^\/console\/embed(\/|$)/.test(pathname);
}

type Session =
  | { kind: "checking" }
  | { kind: "out"; ended: boolean; error?: string }
  | { kind: "in"; info: SessionInfo };

export function App() {
  if (isEmbed(window.location.pathname)) return <EmbedPage />;
  return <SignedIn />;
}

function SignedIn() {
  const [session, setSession] = useState<Session>({ kind: "checking" });

  useEffect(() => {
    api.session().then(
      (info) => setSession({ kind: "in", info }),
      (e) =>
        setSession({
          kind: "out",
          ended: false,
          error: isSignedOut(e) ? undefined : String(e?.message ?? e),
        }),
    );
  }, []);

  const ended = useCallback(() => setSession({ kind: "out", ended: true }), []);

  const signOut = useCallback(async () => {
    try {
      await api.signOut();
    } finally {
      setSession({ kind: "out", ended: true });
    }
  }, []);

  switch (session.kind) {
    case "checking":
      return <div className="splash">Loading…</div>;
    case "out":
      return (
        <SignIn
          ended={session.ended}
          error={session.error}
          onSignedIn={(info) => setSession({ kind: "in", info })}
        />
      );
    case "in":
      return <Console session={session.info} onSignOut={signOut} onSignedOut={ended} />;
  }
}
