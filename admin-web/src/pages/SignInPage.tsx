import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useSession } from '../session';
import { useDocumentTitle } from '../hooks';

export function SignInPage() {
  const { signIn, endedReason } = useSession();
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useDocumentTitle('Sign in');

  useEffect(() => {
    input.current?.focus();
  }, []);

  async function submit(e: FormEvent) {
    // Handled here, never submitted: the token must not end up in a URL.
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(token);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      input.current?.focus();
      input.current?.select();
    } finally {
      setBusy(false);
    }
  }

  const message = error ?? endedReason;
  return (
    <main id="main" className="signin">
      <form className="card signin-card" onSubmit={submit} method="post" action="#" noValidate>
        <h1>
          <img src="/favicon.svg" alt="" width="28" height="28" /> AI Proxy admin
        </h1>
        <p className="muted">Sign in with the control plane’s admin token.</p>
        {message ? (
          <div className="banner banner-error" role="alert" id="signin-error">
            {message}
          </div>
        ) : null}
        <div className={`field${error ? ' has-error' : ''}`}>
          <label htmlFor="admin-token">Admin token</label>
          <input
            ref={input}
            id="admin-token"
            type="password"
            autoComplete="current-password"
            spellCheck={false}
            value={token}
            onChange={(e) => setToken(e.target.value)}
            aria-invalid={error ? true : undefined}
            aria-describedby={`admin-token-hint${message ? ' signin-error' : ''}`}
          />
          <p className="hint" id="admin-token-hint">
            Kept for this browser tab only (session storage) and sent as a bearer header; closing the tab signs you out.
          </p>
        </div>
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
