// Sign in with an API key: `POST /v1/session` exchanges it for the console's session
// cookie (HttpOnly: the page never sees it, nor keeps the key).
import { useState, type FormEvent } from "react";
import { api, describeError } from "../api";
import type { SessionInfo } from "../types";

export interface SignInProps {
  /** The session ended (signed out here or elsewhere, key revoked, expired). */
  ended?: boolean;
  error?: string;
  onSignedIn: (info: SessionInfo) => void;
}

export function SignIn({ ended, error, onSignedIn }: SignInProps) {
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState(error ?? "");

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setProblem("");
    try {
      await api.signIn(key.trim());
      setKey("");
      // the session's holder (for leases) comes with GET
      onSignedIn(await api.session());
    } catch (err) {
      setProblem(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="signin">
      <form className="card signin-card" onSubmit={submit}>
        <h1>orchestrator console</h1>
        {ended && (
          <p className="notice" data-testid="signed-out" role="status">
            You are signed out: the session ended. Sign in again to go on.
          </p>
        )}
        <label htmlFor="signin-key">API key</label>
        <input
          id="signin-key"
          data-testid="signin-key"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          required
        />
        <button data-testid="signin-submit" type="submit" disabled={busy || !key.trim()}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
      </form>
    </main>
  );
}
