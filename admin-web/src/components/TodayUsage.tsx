// The event page's "today": requests, tokens and errors since 00:00 UTC, from GET /usage.

import { Link } from 'react-router-dom';
import { api } from '../api';
import { useLoad } from '../hooks';
import { addDays, formatShare, startOfDay, utcDate } from '../usage';
import { UsageStats } from './UsageStats';

export function TodayUsage({ eventId }: { eventId: string }) {
  const today = utcDate();
  const { data, error, loading, reload } = useLoad(
    () =>
      api.usage({
        event_id: eventId,
        from: startOfDay(today),
        to: startOfDay(addDays(today, 1)),
        granularity: 'day',
      }),
    [eventId, today],
  );
  const totals = data?.totals;
  const reports = `/events/${encodeURIComponent(eventId)}/reports`;

  return (
    <section className="section today" aria-labelledby="today-title">
      <div className="section-head">
        <h2 id="today-title">
          Today <span className="muted small">since 00:00 UTC</span>
        </h2>
        <div className="actions">
          <button type="button" className="button" onClick={reload} disabled={loading}>
            Refresh
          </button>
        </div>
      </div>
      {error ? (
        <p className="field-error" role="alert">
          Could not load today’s usage: {error}
        </p>
      ) : null}
      {!data && !error ? <p className="muted">Loading…</p> : null}
      {totals ? (
        <UsageStats
          label="Today’s usage"
          stats={[
            { label: 'Requests', value: totals.requests },
            { label: 'Tokens', value: totals.total_tokens },
            {
              label: 'Errors',
              value: totals.errors,
              tone: 'error',
              sub: totals.requests ? `${formatShare(totals.errors, totals.requests)} of requests` : undefined,
            },
          ]}
        />
      ) : null}
      <p className="small">
        <Link to={reports}>Usage over time, by resource and by attendee, and CSV downloads →</Link>
      </p>
    </section>
  );
}
