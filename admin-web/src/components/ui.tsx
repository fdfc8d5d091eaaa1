import { useEffect, useRef, useState, type ReactNode } from 'react';
import type { Resource } from '../types';
import { formatInZone, browserTimeZone } from '../time';

export function AuthBadge({ resource }: { resource: Pick<Resource, 'use_managed_identity'> }) {
  return resource.use_managed_identity ? (
    <span className="badge badge-mi">Managed identity</span>
  ) : (
    <span className="badge badge-key">API key</span>
  );
}

export function ActiveBadge({ active }: { active: boolean }) {
  return active ? <span className="badge badge-ok">Active</span> : <span className="badge badge-muted">Inactive</span>;
}

/** An error the admin must see; announced by screen readers. */
export function ErrorBanner({ children }: { children: ReactNode }) {
  if (!children) return null;
  return (
    <div className="banner banner-error" role="alert">
      {children}
    </div>
  );
}

export function Notice({ children, onDismiss }: { children: ReactNode; onDismiss?: () => void }) {
  if (!children) return null;
  return (
    <div className="banner banner-ok" role="status">
      <span>{children}</span>
      {onDismiss ? (
        <button type="button" className="link-button" onClick={onDismiss}>
          Dismiss
        </button>
      ) : null}
    </div>
  );
}

/** The managed-identity token's state for the resources table. */
export function TokenStatus({ resource, now = new Date() }: { resource: Resource; now?: Date }) {
  const mi = resource.managed_identity;
  if (!resource.use_managed_identity || !mi) return <span className="muted">—</span>;
  const zone = browserTimeZone();
  if (mi.last_error) {
    return (
      <span className="token-status token-error">
        <span className="badge badge-error">Token error</span>{' '}
        <span className="token-detail" title={mi.last_error}>
          {mi.last_error}
        </span>
        {mi.next_attempt_at ? (
          <span className="muted small"> Next attempt {formatInZone(mi.next_attempt_at, zone)}.</span>
        ) : null}
      </span>
    );
  }
  if (mi.token_expires_at) {
    const expires = new Date(mi.token_expires_at);
    const expired = expires.getTime() <= now.getTime();
    return (
      <span className="token-status">
        <span className={`badge ${expired ? 'badge-error' : 'badge-ok'}`}>{expired ? 'Expired' : 'Token'}</span>{' '}
        <span className="small">
          {expired ? 'expired' : 'expires'} {formatInZone(expires, zone)}
          {mi.credential ? ` · ${mi.credential}` : ''}
        </span>
      </span>
    );
  }
  return (
    <span className="token-status">
      <span className="badge badge-muted">No token yet</span>
      {mi.active === false ? <span className="muted small"> (inactive resources get none)</span> : null}
    </span>
  );
}

async function writeClipboard(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection-based copy
  }
  try {
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand('copy');
    document.body.removeChild(area);
    return ok;
  } catch {
    return false;
  }
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return (
    <>
      <button
        type="button"
        className="button"
        onClick={async () => {
          const ok = await writeClipboard(text);
          setState(ok ? 'copied' : 'failed');
          window.clearTimeout(timer.current);
          timer.current = window.setTimeout(() => setState('idle'), 4000);
        }}
      >
        {state === 'copied' ? 'Copied' : label}
      </button>
      <span className="sr-only" role="status">
        {state === 'copied' ? 'Copied to the clipboard.' : state === 'failed' ? 'Copy failed: select the text and copy it.' : ''}
      </span>
      {state === 'failed' ? <span className="field-error">Copy failed: select the key and copy it.</span> : null}
    </>
  );
}

/** A two-step delete: the first click asks, the second does it. */
export function ConfirmButton({
  label,
  ariaLabel,
  confirmLabel,
  question,
  onConfirm,
  busy,
}: {
  label: string;
  ariaLabel?: string;
  confirmLabel: string;
  question: string;
  onConfirm: () => void;
  busy?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  const confirmRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) confirmRef.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button
        type="button"
        className="button button-danger-outline"
        aria-label={ariaLabel}
        disabled={busy}
        onClick={() => setAsking(true)}
      >
        {label}
      </button>
    );
  }
  return (
    <span className="confirm" role="group" aria-label={question}>
      <span className="small">{question}</span>
      <button
        ref={confirmRef}
        type="button"
        className="button button-danger"
        disabled={busy}
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
      >
        {confirmLabel}
      </button>
      <button type="button" className="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
