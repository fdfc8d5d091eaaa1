import { Link, useNavigate, useParams } from 'react-router-dom';
import { api } from '../api';
import { useDocumentTitle, useLoad } from '../hooks';
import { emptyEvent, eventToForm } from '../validation';
import { EventForm } from '../components/EventForm';
import { ErrorBanner } from '../components/ui';

/** New (`/events/new`) and edit (`/events/<id>/edit`). */
export function EventFormPage() {
  const { id } = useParams();
  const navigate = useNavigate();
  const title = id ? 'Edit event' : 'New event';
  useDocumentTitle(title);
  const { data, error } = useLoad(
    async () => {
      const [resources, event] = await Promise.all([api.listResources(), id ? api.getEvent(id) : Promise.resolve(null)]);
      resources.sort((a, b) => a.friendly_name.localeCompare(b.friendly_name));
      return { resources, event };
    },
    [id],
  );

  return (
    <section className="page page-narrow">
      <p className="crumbs">
        <Link to="/events">Events</Link> /
      </p>
      <h1>
        {title}
        {data?.event ? `: ${data.event.name}` : ''}
      </h1>
      <ErrorBanner>{error}</ErrorBanner>
      {!data && !error ? <p className="muted">Loading…</p> : null}
      {data ? (
        <EventForm
          key={id ?? 'new'}
          initial={data.event ? eventToForm(data.event) : emptyEvent()}
          resources={data.resources}
          onCancel={() => navigate(id ? `/events/${encodeURIComponent(id)}` : '/events')}
          onSubmit={async (input) => {
            const saved = id ? await api.updateEvent(id, input) : await api.createEvent(input);
            navigate(`/events/${encodeURIComponent(saved.id)}`, {
              state: { notice: id ? `Saved “${saved.name}”.` : `Created “${saved.name}”. Add attendees below.` },
            });
          }}
        />
      ) : null}
    </section>
  );
}
