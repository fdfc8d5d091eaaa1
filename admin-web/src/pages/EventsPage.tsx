import { useMemo, useState } from 'react';
import { Link } from 'react-router-dom';
import { api } from '../api';
import { useDocumentTitle, useLoad } from '../hooks';
import { eventPhase } from '../time';
import { ConfirmButton, ErrorBanner, Notice } from '../components/ui';
import { EventWindow, PhaseBadge } from '../components/EventWindow';
import type { AiEvent } from '../types';

export function EventsPage() {
  useDocumentTitle('Events');
  const { data, error, loading, reload } = useLoad(async () => {
    const [events, resources] = await Promise.all([api.listEvents(), api.listResources()]);
    return { events, names: new Map(resources.map((r) => [r.id, r.friendly_name])) };
  }, []);
  const [q, setQ] = useState('');
  const [phase, setPhase] = useState('');
  const [notice, setNotice] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);

  const rows = useMemo(() => {
    const needle = q.trim().toLowerCase();
    return (data?.events ?? [])
      .filter((e) => !phase || eventPhase(e) === phase)
      .filter((e) => !needle || `${e.name} ${e.organizer_name} ${e.organizer_email}`.toLowerCase().includes(needle))
      .sort((a, b) => Date.parse(b.starts_at) - Date.parse(a.starts_at));
  }, [data, q, phase]);

  async function remove(e: AiEvent) {
    setActionError(null);
    setNotice(null);
    try {
      await api.deleteEvent(e.id);
      setNotice(`Deleted “${e.name}” and its attendees.`);
      reload();
    } catch (err) {
      setActionError(`Could not delete “${e.name}”: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  return (
    <section className="page">
      <div className="page-head">
        <h1>Events</h1>
        <div className="actions">
          <button type="button" className="button" onClick={reload} disabled={loading}>
            Refresh
          </button>
          <Link className="button button-primary" to="/events/new">
            + New Event
          </Link>
        </div>
      </div>
      <p className="lead">Each event exposes resources to its attendees, with their own keys, during its window.</p>
      <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
      <ErrorBanner>{actionError}</ErrorBanner>
      <ErrorBanner>{error}</ErrorBanner>
      <div className="filters" role="search">
        <div className="field">
          <label htmlFor="event-search">Search</label>
          <input
            id="event-search"
            type="search"
            placeholder="Name or organizer"
            value={q}
            onChange={(e) => setQ(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor="event-phase-filter">Status</label>
          <select id="event-phase-filter" value={phase} onChange={(e) => setPhase(e.target.value)}>
            <option value="">Any</option>
            <option value="live">Live</option>
            <option value="upcoming">Upcoming</option>
            <option value="ended">Ended</option>
            <option value="inactive">Inactive</option>
          </select>
        </div>
      </div>
      {loading && !data ? <p className="muted">Loading…</p> : null}
      {data && data.events.length === 0 ? (
        <div className="empty">
          <p>No events yet.</p>
          <Link to="/events/new">Create the first one</Link>
        </div>
      ) : null}
      {data && data.events.length > 0 ? (
        <div className="table-wrap">
          <table className="table responsive" id="events-table">
            <caption className="sr-only">Events</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Window</th>
                <th scope="col">Status</th>
                <th scope="col">Resources</th>
                <th scope="col">Caps</th>
                <th scope="col">Organizer</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((e) => (
                <tr key={e.id} data-event-id={e.id}>
                  <th scope="row" data-label="Name">
                    <Link className="cell-title" to={`/events/${encodeURIComponent(e.id)}`}>
                      {e.name}
                    </Link>
                  </th>
                  <td data-label="Window">
                    <EventWindow event={e} compact />
                  </td>
                  <td data-label="Status">
                    <PhaseBadge event={e} />
                  </td>
                  <td data-label="Resources">
                    {e.resource_ids.length === 0 ? (
                      <span className="muted">none</span>
                    ) : (
                      e.resource_ids.map((id) => data.names.get(id) ?? id).join(', ')
                    )}
                  </td>
                  <td data-label="Caps" className="small">
                    {e.max_token_cap ? `${e.max_token_cap} tokens/request` : 'no token cap'}
                    <br />
                    {e.daily_request_cap ? `${e.daily_request_cap} requests/day` : 'no daily cap'}
                    {e.daily_token_cap ? (
                      <>
                        <br />
                        {`${e.daily_token_cap} tokens/day`}
                      </>
                    ) : null}
                    {e.token_budget ? (
                      <>
                        <br />
                        {`${e.token_budget} tokens in all`}
                      </>
                    ) : null}
                  </td>
                  <td data-label="Organizer">
                    {e.organizer_name || e.organizer_email ? (
                      <>
                        {e.organizer_name}
                        {e.organizer_email ? <span className="cell-sub">{e.organizer_email}</span> : null}
                      </>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  <td className="row-actions">
                    <Link className="button" to={`/events/${encodeURIComponent(e.id)}`} aria-label={`Open ${e.name}`}>
                      Open
                    </Link>
                    <Link className="button" to={`/events/${encodeURIComponent(e.id)}/edit`} aria-label={`Edit ${e.name}`}>
                      Edit
                    </Link>
                    <ConfirmButton
                      label="Delete"
                      ariaLabel={`Delete ${e.name}`}
                      confirmLabel="Delete event"
                      question={`Delete “${e.name}” and all its attendee keys?`}
                      onConfirm={() => void remove(e)}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
