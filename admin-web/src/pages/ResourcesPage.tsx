import { useMemo, useState } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { api } from '../api';
import { useDocumentTitle, useFlashNotice, useLoad } from '../hooks';
import { MODEL_TYPES, modelTypeLabel } from '../validation';
import type { Resource } from '../types';
import { plural } from '../format';
import { ActiveBadge, AuthBadge, ConfirmButton, ErrorBanner, Notice, TokenStatus } from '../components/ui';

export function matchesFilters(
  r: Resource,
  f: { q: string; type: string; auth: string; status: string },
): boolean {
  if (f.type && r.model_type !== f.type) return false;
  if (f.auth === 'mi' && !r.use_managed_identity) return false;
  if (f.auth === 'key' && r.use_managed_identity) return false;
  if (f.status === 'active' && !r.active) return false;
  if (f.status === 'inactive' && r.active) return false;
  const q = f.q.trim().toLowerCase();
  if (!q) return true;
  return [r.friendly_name, r.deployment_name, r.endpoint_url, r.region, modelTypeLabel(r.model_type)]
    .join(' ')
    .toLowerCase()
    .includes(q);
}

export function ResourcesPage() {
  useDocumentTitle('Resources');
  const [params, setParams] = useSearchParams();
  const filters = {
    q: params.get('q') ?? '',
    type: params.get('type') ?? '',
    auth: params.get('auth') ?? '',
    status: params.get('status') ?? '',
  };
  const setFilter = (name: keyof typeof filters, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    setParams(next, { replace: true });
  };
  const { data, error, loading, reload } = useLoad(() => api.listResources(), []);
  const [actionError, setActionError] = useState<string | null>(null);
  const [notice, setNotice] = useFlashNotice();
  const [busy, setBusy] = useState<string | null>(null);

  const rows = useMemo(
    () =>
      (data ?? [])
        .filter((r) => matchesFilters(r, filters))
        .sort((a, b) => a.friendly_name.localeCompare(b.friendly_name)),
    [data, filters.q, filters.type, filters.auth, filters.status],
  );

  async function remove(r: Resource) {
    setBusy(r.id);
    setActionError(null);
    setNotice(null);
    try {
      await api.deleteResource(r.id);
      setNotice(`Deleted “${r.friendly_name}”.`);
      reload();
    } catch (e) {
      setActionError(`Could not delete “${r.friendly_name}”: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      setBusy(null);
    }
  }

  const filtered = data !== null && rows.length !== data.length;
  return (
    <section className="page">
      <div className="page-head">
        <h1>Resources</h1>
        <div className="actions">
          <button type="button" className="button" onClick={reload} disabled={loading}>
            Refresh
          </button>
          <Link className="button button-primary" to="/resources/new">
            + New Resource
          </Link>
        </div>
      </div>
      <p className="lead">Upstream deployments the proxy reaches, each with its API key or the proxy’s managed identity.</p>
      <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
      <ErrorBanner>{actionError}</ErrorBanner>
      <ErrorBanner>{error}</ErrorBanner>

      <div className="filters" role="search">
        <div className="field">
          <label htmlFor="resource-search">Search</label>
          <input
            id="resource-search"
            type="search"
            placeholder="Name, deployment, endpoint, region"
            value={filters.q}
            onChange={(e) => setFilter('q', e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor="resource-type-filter">Type</label>
          <select id="resource-type-filter" value={filters.type} onChange={(e) => setFilter('type', e.target.value)}>
            <option value="">All types</option>
            {MODEL_TYPES.map((t) => (
              <option key={t.value} value={t.value}>
                {t.label}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="resource-auth-filter">Authentication</label>
          <select id="resource-auth-filter" value={filters.auth} onChange={(e) => setFilter('auth', e.target.value)}>
            <option value="">Any</option>
            <option value="mi">Managed identity</option>
            <option value="key">API key</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="resource-status-filter">Status</label>
          <select
            id="resource-status-filter"
            value={filters.status}
            onChange={(e) => setFilter('status', e.target.value)}
          >
            <option value="">Any</option>
            <option value="active">Active</option>
            <option value="inactive">Inactive</option>
          </select>
        </div>
      </div>

      {loading && data === null ? <p className="muted">Loading…</p> : null}
      {data !== null && data.length === 0 ? (
        <div className="empty">
          <p>No resources yet.</p>
          <Link to="/resources/new">Create the first one</Link>
        </div>
      ) : null}
      {data !== null && data.length > 0 ? (
        <>
          <p className="muted small" aria-live="polite">
            {filtered ? `${rows.length} of ${plural(data.length, 'resource')} match.` : `${plural(data.length, 'resource')}.`}
          </p>
          <div className="table-wrap">
            <table className="table responsive" id="resources-table">
              <caption className="sr-only">Resources</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Deployment</th>
                  <th scope="col">Type</th>
                  <th scope="col">Region</th>
                  <th scope="col">Auth</th>
                  <th scope="col">Token</th>
                  <th scope="col">Status</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr key={r.id} data-resource-id={r.id}>
                    <th scope="row" data-label="Name">
                      <span className="cell-title">{r.friendly_name}</span>
                      <span className="cell-sub break">{r.endpoint_url}</span>
                    </th>
                    <td data-label="Deployment" className="nowrap">
                      <code>{r.deployment_name}</code>
                      {r.use_max_completion_tokens ? (
                        <span className="cell-sub" title="max_tokens is renamed max_completion_tokens in chat calls">
                          max_completion_tokens
                        </span>
                      ) : null}
                    </td>
                    <td data-label="Type">{modelTypeLabel(r.model_type)}</td>
                    <td data-label="Region">{r.region || <span className="muted">—</span>}</td>
                    <td data-label="Auth">
                      <AuthBadge resource={r} />
                    </td>
                    <td data-label="Token">
                      <TokenStatus resource={r} />
                    </td>
                    <td data-label="Status">
                      <ActiveBadge active={r.active} />
                    </td>
                    <td className="row-actions">
                      <Link className="button" to={`/resources/${encodeURIComponent(r.id)}/edit`} aria-label={`Edit ${r.friendly_name}`}>
                        Edit
                      </Link>
                      <Link
                        className="button"
                        to={`/resources/new?from=${encodeURIComponent(r.id)}`}
                        aria-label={`Duplicate ${r.friendly_name}`}
                      >
                        Duplicate
                      </Link>
                      <ConfirmButton
                        label="Delete"
                        ariaLabel={`Delete ${r.friendly_name}`}
                        confirmLabel="Delete"
                        question={`Delete “${r.friendly_name}”?`}
                        busy={busy === r.id}
                        onConfirm={() => void remove(r)}
                      />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
    </section>
  );
}
