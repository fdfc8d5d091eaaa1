import { Link, useParams } from 'react-router-dom';
import { api } from '../api';
import { useDocumentTitle, useFlashNotice, useLoad } from '../hooks';
import { modelTypeLabel } from '../validation';
import { ActiveBadge, AuthBadge, ErrorBanner, Notice } from '../components/ui';
import { EventWindow, PhaseBadge } from '../components/EventWindow';
import { Attendees } from '../components/Attendees';
import { TodayUsage } from '../components/TodayUsage';
import { formatCount } from '../usage';
import type { AiEvent } from '../types';

/** Each cap on its own line: "4,096 max tokens per request", "no daily token cap". */
function capLines(e: AiEvent): string[] {
  return [
    e.max_token_cap ? `${formatCount(e.max_token_cap)} max tokens per request` : 'No max tokens per request',
    e.daily_request_cap ? `${formatCount(e.daily_request_cap)} requests per attendee per UTC day` : 'No daily request cap',
    e.daily_token_cap ? `${formatCount(e.daily_token_cap)} tokens per attendee per UTC day` : 'No daily token cap',
    e.token_budget ? `${formatCount(e.token_budget)} tokens for the whole event` : 'No event token budget',
  ];
}

export function EventDetailPage() {
  const { id = '' } = useParams();
  const [notice, setNotice] = useFlashNotice();
  const { data, error } = useLoad(async () => {
    const [event, resources] = await Promise.all([api.getEvent(id), api.listResources()]);
    return { event, resources: new Map(resources.map((r) => [r.id, r])) };
  }, [id]);
  const event = data?.event;
  useDocumentTitle(event ? event.name : 'Event');

  return (
    <section className="page">
      <p className="crumbs">
        <Link to="/events">Events</Link> /
      </p>
      <ErrorBanner>{error}</ErrorBanner>
      {!data && !error ? <p className="muted">Loading…</p> : null}
      {event && data ? (
        <>
          <div className="page-head">
            <h1>
              {event.name} <PhaseBadge event={event} />
            </h1>
            <div className="actions">
              <Link className="button" to={`/events/${encodeURIComponent(event.id)}/reports`}>
                Reports
              </Link>
              <Link className="button" to={`/events/${encodeURIComponent(event.id)}/edit`}>
                Edit event
              </Link>
            </div>
          </div>
          <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
          <dl className="summary card">
            <dt>Window</dt>
            <dd>
              <EventWindow event={event} />
            </dd>
            <dt>Caps</dt>
            <dd>
              <ul className="plain-list caps">
                {capLines(event).map((line) => (
                  <li key={line} className={line.startsWith('No ') ? 'muted' : undefined}>
                    {line}
                  </li>
                ))}
              </ul>
            </dd>
            <dt>Organizer</dt>
            <dd>
              {event.organizer_name || <span className="muted">—</span>}
              {event.organizer_email ? ` · ${event.organizer_email}` : ''}
            </dd>
            <dt>Status</dt>
            <dd>
              <ActiveBadge active={event.active} />
            </dd>
            <dt>Resources</dt>
            <dd>
              {event.resource_ids.length === 0 ? (
                <span className="muted">None: attendees can call nothing yet.</span>
              ) : (
                <ul className="plain-list">
                  {event.resource_ids.map((rid) => {
                    const r = data.resources.get(rid);
                    if (!r) return <li key={rid} className="muted">{rid} (deleted)</li>;
                    return (
                      <li key={rid}>
                        {r.friendly_name} <code>{r.deployment_name}</code>{' '}
                        <span className="muted small">{modelTypeLabel(r.model_type)}</span> <AuthBadge resource={r} />
                        {r.active ? null : <> <ActiveBadge active={false} /></>}
                      </li>
                    );
                  })}
                </ul>
              )}
            </dd>
          </dl>
          <TodayUsage eventId={event.id} />
          <Attendees eventId={event.id} />
        </>
      ) : null}
    </section>
  );
}
