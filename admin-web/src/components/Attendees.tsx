import { useMemo, useRef, useState, type FormEvent } from 'react';
import { api } from '../api';
import { useLoad } from '../hooks';
import { browserTimeZone, formatInZone } from '../time';
import { USER_ID_RULE, fieldErrorsFrom, validateUserId } from '../validation';
import type { IssuedAttendee } from '../types';
import { plural } from '../format';
import { ActiveBadge, CopyButton, ErrorBanner } from './ui';

/** The key of a just-added attendee: shown here once, never stored by the console. */
function NewKey({ issued, onDone }: { issued: IssuedAttendee; onDone: () => void }) {
  return (
    <div className="card new-key" role="region" aria-labelledby="new-key-title">
      <h3 id="new-key-title">Key for {issued.user_id}</h3>
      <p>
        <strong>Shown only once.</strong> Copy it now and hand it to the attendee: the control plane keeps only a hash,
        so nobody can show it again. (Lost it? Deactivate this attendee and add them under another user ID.)
      </p>
      <div className="key-row">
        <label htmlFor="new-api-key" className="sr-only">
          API key for {issued.user_id}
        </label>
        <input
          id="new-api-key"
          className="key-value"
          readOnly
          autoFocus
          spellCheck={false}
          value={issued.api_key}
          onFocus={(e) => e.target.select()}
        />
        <CopyButton text={issued.api_key} label="Copy key" />
      </div>
      <p className="hint">
        Attendees send it as the <code>api-key</code> header (or <code>Authorization: Bearer</code>) to an edge’s{' '}
        <code>/api/v1</code> routes.
      </p>
      <button type="button" className="button" onClick={onDone}>
        Done, hide the key
      </button>
    </div>
  );
}

export function Attendees({ eventId }: { eventId: string }) {
  const { data, error, reload } = useLoad(() => api.listAttendees(eventId), [eventId]);
  const [userId, setUserId] = useState('');
  const [userIdError, setUserIdError] = useState<string | null>(null);
  const [addError, setAddError] = useState<string | null>(null);
  const [adding, setAdding] = useState(false);
  const [issued, setIssued] = useState<IssuedAttendee | null>(null);
  const [q, setQ] = useState('');
  const [status, setStatus] = useState('');
  const [rowError, setRowError] = useState<string | null>(null);
  const input = useRef<HTMLInputElement>(null);

  async function add(e: FormEvent) {
    e.preventDefault();
    setAddError(null);
    setIssued(null);
    const problem = validateUserId(userId);
    setUserIdError(problem);
    if (problem) {
      input.current?.focus();
      return;
    }
    setAdding(true);
    try {
      const created = await api.addAttendee(eventId, userId.trim());
      setIssued(created);
      setUserId('');
      reload();
    } catch (err) {
      const { fieldErrors, general } = fieldErrorsFrom(err, ['user_id'] as const);
      setUserIdError(fieldErrors.user_id ?? null);
      setAddError(general);
      input.current?.focus();
    } finally {
      setAdding(false);
    }
  }

  async function setActive(user: string, active: boolean) {
    setRowError(null);
    try {
      await api.setAttendeeActive(eventId, user, active);
      reload();
    } catch (err) {
      setRowError(`Could not ${active ? 'reactivate' : 'deactivate'} ${user}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  const rows = useMemo(() => {
    const needle = q.trim().toLowerCase();
    return (data ?? [])
      .filter((a) => !needle || a.user_id.toLowerCase().includes(needle))
      .filter((a) => !status || (status === 'active') === a.active)
      .sort((a, b) => a.user_id.localeCompare(b.user_id));
  }, [data, q, status]);
  const zone = browserTimeZone();

  return (
    <section className="section" aria-labelledby="attendees-title">
      <h2 id="attendees-title">Attendees</h2>
      <form className="inline-form" onSubmit={add} noValidate>
        <div className={`field grow${userIdError ? ' has-error' : ''}`}>
          <label htmlFor="user_id">User ID</label>
          <input
            ref={input}
            id="user_id"
            name="user_id"
            value={userId}
            onChange={(e) => {
              setUserId(e.target.value);
              setUserIdError(null);
            }}
            placeholder="ada@example.com"
            autoComplete="off"
            spellCheck={false}
            aria-invalid={userIdError ? true : undefined}
            aria-describedby={userIdError ? 'user_id-hint user_id-error' : 'user_id-hint'}
          />
          <p className="hint" id="user_id-hint">
            {USER_ID_RULE} Each attendee gets their own key.
          </p>
          {userIdError ? (
            <p className="field-error" id="user_id-error">
              {userIdError}
            </p>
          ) : null}
        </div>
        <button type="submit" className="button button-primary" disabled={adding}>
          {adding ? 'Adding…' : 'Add attendee'}
        </button>
      </form>
      <ErrorBanner>{addError}</ErrorBanner>
      {issued ? <NewKey issued={issued} onDone={() => setIssued(null)} /> : null}

      <ErrorBanner>{error}</ErrorBanner>
      <ErrorBanner>{rowError}</ErrorBanner>
      {data && data.length > 0 ? (
        <>
          <div className="filters" role="search">
            <div className="field">
              <label htmlFor="attendee-search">Search attendees</label>
              <input id="attendee-search" type="search" value={q} onChange={(e) => setQ(e.target.value)} />
            </div>
            <div className="field">
              <label htmlFor="attendee-status-filter">Status</label>
              <select id="attendee-status-filter" value={status} onChange={(e) => setStatus(e.target.value)}>
                <option value="">Any</option>
                <option value="active">Active</option>
                <option value="inactive">Deactivated</option>
              </select>
            </div>
          </div>
          <p className="muted small" aria-live="polite">
            {rows.length === data.length ? `${plural(data.length, 'attendee')}.` : `${rows.length} of ${plural(data.length, 'attendee')} match.`}
          </p>
          <div className="table-wrap">
            <table className="table responsive" id="attendees-table">
              <caption className="sr-only">Attendees</caption>
              <thead>
                <tr>
                  <th scope="col">User ID</th>
                  <th scope="col">Key</th>
                  <th scope="col">Added</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map((a) => (
                  <tr key={a.user_id} data-user-id={a.user_id}>
                    <th scope="row" data-label="User ID">
                      {a.user_id}
                    </th>
                    <td data-label="Key">
                      {a.active ? <ActiveBadge active /> : <span className="badge badge-muted">Deactivated</span>}
                    </td>
                    <td data-label="Added">{a.created_at ? formatInZone(a.created_at, zone) : '—'}</td>
                    <td className="row-actions">
                      {a.active ? (
                        <button
                          type="button"
                          className="button button-danger-outline"
                          onClick={() => void setActive(a.user_id, false)}
                          aria-label={`Deactivate ${a.user_id}`}
                        >
                          Deactivate
                        </button>
                      ) : (
                        <button
                          type="button"
                          className="button"
                          onClick={() => void setActive(a.user_id, true)}
                          aria-label={`Reactivate ${a.user_id}`}
                        >
                          Reactivate
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : data ? (
        <p className="muted">No attendees yet.</p>
      ) : null}
    </section>
  );
}
