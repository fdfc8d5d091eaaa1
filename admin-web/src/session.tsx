// The admin session: the token lives in sessionStorage (this tab only, gone when it closes) and in
// the API client's memory; never in a URL, a cookie or localStorage. A 401 from any call ends the
// session with a message that tells the admin why.

import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { ApiError, api, setToken, setUnauthorizedHandler } from './api';

const STORAGE_KEY = 'aiproxy.admin.token';

export const MESSAGES = {
  wrongToken:
    'This admin token was not accepted. Use the control plane’s AIPROXY_ADMIN_TOKEN (scripts/run.sh prints it; in embedded mode it is in data/admin.token).',
  expired:
    'Your session has ended: the control plane no longer accepts this admin token (it was changed, or the control plane restarted with another one). Sign in again.',
  empty: 'Enter the admin token.',
} as const;

interface Session {
  signedIn: boolean;
  /** Why the admin was sent back to the sign-in page, if it was not their choice. */
  endedReason: string | null;
  signIn: (token: string) => Promise<void>;
  signOut: () => void;
}

const SessionContext = createContext<Session | null>(null);

function readStoredToken(): string | null {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

function storeToken(token: string | null): void {
  try {
    if (token) window.sessionStorage.setItem(STORAGE_KEY, token);
    else window.sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage disabled: the session lasts as long as the page.
  }
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const [token, setTokenState] = useState<string | null>(() => {
    const stored = readStoredToken();
    setToken(stored);
    return stored;
  });
  const [endedReason, setEndedReason] = useState<string | null>(null);

  const end = useCallback((reason: string | null) => {
    storeToken(null);
    setToken(null);
    setTokenState(null);
    setEndedReason(reason);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => end(MESSAGES.expired));
    return () => setUnauthorizedHandler(null);
  }, [end]);

  const signIn = useCallback(async (raw: string) => {
    const candidate = raw.trim();
    if (!candidate) throw new ApiError(0, 'Empty', MESSAGES.empty);
    try {
      await api.checkToken(candidate);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw new ApiError(401, e.code, MESSAGES.wrongToken);
      throw e;
    }
    storeToken(candidate);
    setToken(candidate);
    setEndedReason(null);
    setTokenState(candidate);
  }, []);

  const signOut = useCallback(() => end(null), [end]);

  const value = useMemo<Session>(
    () => ({ signedIn: token !== null, endedReason, signIn, signOut }),
    [token, endedReason, signIn, signOut],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside SessionProvider');
  return session;
}
