import { Link, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { api } from '../api';
import { useDocumentTitle, useLoad } from '../hooks';
import { EMPTY_RESOURCE, resourceToForm, type ResourceFormValues } from '../validation';
import { ResourceForm } from '../components/ResourceForm';
import { ErrorBanner } from '../components/ui';
import type { Resource } from '../types';

/** New (`/resources/new`), duplicate (`/resources/new?from=<id>`) and edit (`/resources/<id>/edit`). */
export function ResourceFormPage() {
  const { id } = useParams();
  const [params] = useSearchParams();
  const from = params.get('from');
  const navigate = useNavigate();
  const sourceId = id ?? from;
  const { data: source, error, loading } = useLoad<Resource | null>(
    () => (sourceId ? api.getResource(sourceId) : Promise.resolve(null)),
    [sourceId],
  );
  const editing = Boolean(id);
  const title = editing ? 'Edit resource' : from ? 'Duplicate resource' : 'New resource';
  useDocumentTitle(title);

  let initial: ResourceFormValues | null = null;
  if (!sourceId) initial = EMPTY_RESOURCE;
  else if (source) {
    initial = resourceToForm(source);
    // A copy starts without a key: keys are never shown, so the admin types it again.
    if (!editing) initial = { ...initial, friendly_name: `${source.friendly_name} (copy)` };
  }

  return (
    <section className="page page-narrow">
      <p className="crumbs">
        <Link to="/resources">Resources</Link> /
      </p>
      <h1>
        {title}
        {source && editing ? `: ${source.friendly_name}` : ''}
      </h1>
      {from && source ? (
        <p className="lead">A copy of “{source.friendly_name}”. Keys are never shown, so give the key again (or use managed identity).</p>
      ) : null}
      <ErrorBanner>{error}</ErrorBanner>
      {loading && sourceId ? <p className="muted">Loading…</p> : null}
      {initial ? (
        <ResourceForm
          key={sourceId ?? 'new'}
          initial={initial}
          context={{ editing, hasStoredKey: editing && Boolean(source?.has_key) }}
          onCancel={() => navigate('/resources')}
          onSubmit={async (input) => {
            const saved = id ? await api.updateResource(id, input) : await api.createResource(input);
            navigate('/resources', { state: { notice: `Saved “${saved.friendly_name}”.` } });
          }}
        />
      ) : null}
    </section>
  );
}
