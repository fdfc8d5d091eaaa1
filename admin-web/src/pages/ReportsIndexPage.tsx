// Reports are per event: this page lists the events, live ones first, each with a link to its report.

import { useMemo } from 'react';
import { Link } from 'react-router-dom';
import { api } from '../api';
import { useDocumentTitle, useLoad } from '../hooks';
import { eventPhase } from '../time';
import { ErrorBanner } from '../components/ui';
import { EventWindow, PhaseBadge } from '../components/EventWindow';

const PHASE_ORDER = { live: 0, upcoming: 1, ended: 2, inactive: 3 } as const;

export function ReportsIndexPage() {
  useDocumentTitle('Reports');
  const { data, error, loading } = useLoad(() => api.listEvents(), []);
  const events = useMemo(
    () =>
      [...(data ?? [])].sort(
        (a, b) =>
          PHASE_ORDER[eventPhase(a)] - PHASE_ORDER[eventPhase(b)] || Date.parse(b.starts_at) - Date.parse(a.starts_at),
      ),
    [data],
  );

  return (
    <section className="page">
      <div className="page-head">
        <h1>Reports</h1>
      </div>
      <p className="lead">Usage is reported per event: requests and tokens over time, by resource and by attendee. Pick an event.</p>
      <ErrorBanner>{error}</ErrorBanner>
      {loading && !data ? <p className="muted">Loading…</p> : null}
      {data && data.length === 0 ? (
        <div className="empty">
          <p>No events yet, so nothing to report.</p>
          <Link to="/events/new">Create an event</Link>
        </div>
      ) : null}
      {events.length > 0 ? (
        <div className="table-wrap">
          <table className="table responsive" id="report-events-table">
            <caption className="sr-only">Events and their reports</caption>
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Window</th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span className="sr-only">Report</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {events.map((e) => (
                <tr key={e.id}>
                  <th scope="row" data-label="Event">
                    <Link className="cell-title" to={`/events/${encodeURIComponent(e.id)}/reports`}>
                      {e.name}
                    </Link>
                  </th>
                  <td data-label="Window">
                    <EventWindow event={e} compact />
                  </td>
                  <td data-label="Status">
                    <PhaseBadge event={e} />
                  </td>
                  <td className="row-actions">
                    <Link
                      className="button"
                      to={`/events/${encodeURIComponent(e.id)}/reports`}
                      aria-label={`Reports for ${e.name}`}
                    >
                      Reports
                    </Link>
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
