// An event's usage report: totals, requests and tokens over time, tokens by resource and by
// attendee, for a range of UTC days; and the same rows as CSV. The filters live in the page
// address, so a report can be reloaded and shared.

import { useMemo, useState } from 'react';
import { Link, useParams, useSearchParams } from 'react-router-dom';
import { api } from '../api';
import { useDocumentTitle, useLoad } from '../hooks';
import { saveBlob } from '../download';
import type { Granularity, Resource, UsageCounts, UsageDimension, UsageQuery } from '../types';
import {
  defaultRange,
  formatCount,
  formatShare,
  groupRows,
  rangeLabel,
  rangeToApi,
  slug,
  timeSeries,
  validateRange,
  ZERO,
  addCounts,
  type DayRange,
  type Group,
} from '../usage';
import { ErrorBanner, Notice } from '../components/ui';
import { UsageChart } from '../components/UsageChart';
import { UsageStats } from '../components/UsageStats';
import { SortableTable, type Column } from '../components/SortableTable';

/** What a CSV download holds: its rows' grouping. */
const CSV_GROUPS: { value: string; label: string; groupBy: UsageDimension[] }[] = [
  { value: 'resource,attendee', label: 'By resource and attendee', groupBy: ['resource', 'attendee'] },
  { value: 'resource', label: 'By resource', groupBy: ['resource'] },
  { value: 'attendee', label: 'By attendee', groupBy: ['attendee'] },
  { value: '', label: 'Totals only', groupBy: [] },
];

function plural(n: number, one: string, many = `${one}s`): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/** The request counts as a tooltip line: "12 requests, 1 error". */
function requestDetail(c: UsageCounts): string {
  return `${plural(c.requests, 'request')}, ${plural(c.errors, 'error')}`;
}

function tokenDetail(c: UsageCounts): string {
  return (
    `${plural(c.total_tokens, 'token')} (prompt ${formatCount(c.prompt_tokens)}, ` +
    `completion ${formatCount(c.completion_tokens)}, cached ${formatCount(c.cached_tokens)})`
  );
}

function ErrorsCell({ counts }: { counts: UsageCounts }) {
  if (!counts.errors) return <span className="muted">0</span>;
  return (
    <span className="num-error">
      {formatCount(counts.errors)} <span className="small">({formatShare(counts.errors, counts.requests)})</span>
    </span>
  );
}

/** The number columns both tables share, each with its total in the footer. */
function countColumns(totals: UsageCounts): Column<Group>[] {
  const n = (key: keyof UsageCounts, label: string): Column<Group> => ({
    key,
    label,
    numeric: true,
    value: (g) => g[key],
    render: (g) => formatCount(g[key]),
    footer: formatCount(totals[key]),
  });
  return [
    n('requests', 'Requests'),
    { ...n('errors', 'Errors'), render: (g) => <ErrorsCell counts={g} />, footer: <ErrorsCell counts={totals} /> },
    n('prompt_tokens', 'Prompt tokens'),
    n('completion_tokens', 'Completion tokens'),
    n('cached_tokens', 'Cached tokens'),
    n('total_tokens', 'Total tokens'),
  ];
}

function sum(groups: Group[]): UsageCounts {
  return groups.reduce<UsageCounts>((acc, g) => addCounts(acc, g), { ...ZERO });
}

export function ReportsPage() {
  const { id = '' } = useParams();
  const [params, setParams] = useSearchParams();
  const fallback = useMemo(() => defaultRange(), []);
  const range: DayRange = { from: params.get('from') ?? fallback.from, to: params.get('to') ?? fallback.to };
  const granularity: Granularity = params.get('granularity') === 'hour' ? 'hour' : 'day';
  const rangeErrors = validateRange(range, granularity);
  const apiRange = Object.keys(rangeErrors).length === 0 ? rangeToApi(range) : null;
  const [csvGroup, setCsvGroup] = useState(CSV_GROUPS[0].value);
  const [csvBusy, setCsvBusy] = useState(false);
  const [csvError, setCsvError] = useState<string | null>(null);
  const [csvNotice, setCsvNotice] = useState<string | null>(null);

  const setParam = (name: string, value: string) => {
    const next = new URLSearchParams(params);
    next.set(name, value);
    setParams(next, { replace: true });
  };

  const meta = useLoad(async () => {
    const [event, resources] = await Promise.all([
      api.getEvent(id),
      // Names for the resource table; without them it shows deployment names.
      api.listResources().catch(() => [] as Resource[]),
    ]);
    return { event, resources: new Map(resources.map((r) => [r.id, r])) };
  }, [id]);
  const event = meta.data?.event;
  useDocumentTitle(event ? `Reports · ${event.name}` : 'Reports');

  const usage = useLoad(async () => {
    if (!apiRange) return null;
    const base: UsageQuery = { event_id: id, from: apiRange.from, to: apiRange.to };
    // The tables sum whole days: daily buckets answer the same totals with fewer rows.
    const [series, byResource, byAttendee] = await Promise.all([
      api.usage({ ...base, granularity }),
      api.usage({ ...base, granularity: 'day', group_by: ['resource'] }),
      api.usage({ ...base, granularity: 'day', group_by: ['attendee'] }),
    ]);
    return { series, byResource, byAttendee, range, granularity };
  }, [id, apiRange?.from, apiRange?.to, granularity]);

  const report = usage.data;
  const view = useMemo(() => {
    if (!report) return null;
    const points = timeSeries(report.series.rows, report.range, report.granularity);
    const resources = groupRows(report.byResource.rows, (r) => r.resource_id ?? '');
    const attendees = groupRows(report.byAttendee.rows, (r) => r.user_id ?? '');
    return { points, resources, attendees, resourceTotals: sum(resources), attendeeTotals: sum(attendees) };
  }, [report]);

  const resourceName = (g: Group): string => {
    if (!g.key) return 'No upstream (refused by the edge)';
    return meta.data?.resources.get(g.key)?.friendly_name ?? g.sample.deployment_name ?? g.key;
  };

  async function downloadCsv() {
    if (!apiRange) return;
    setCsvBusy(true);
    setCsvError(null);
    setCsvNotice(null);
    const group = CSV_GROUPS.find((g) => g.value === csvGroup) ?? CSV_GROUPS[0];
    try {
      const blob = await api.usageCsv({
        event_id: id,
        from: apiRange.from,
        to: apiRange.to,
        granularity,
        group_by: group.groupBy,
      });
      const by = group.groupBy.length ? `-by-${group.groupBy.join('-')}` : '';
      const name = `usage-${slug(event?.name ?? id)}-${range.from}-to-${range.to}-${granularity}${by}.csv`;
      saveBlob(blob, name);
      setCsvNotice(`Downloaded ${name}.`);
    } catch (e) {
      setCsvError(`Could not download the CSV: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      setCsvBusy(false);
    }
  }

  const totals = report?.series.totals ?? null;
  const eventPath = `/events/${encodeURIComponent(id)}`;
  const unit = granularity === 'hour' ? 'hour' : 'day';

  const resourceColumns: Column<Group>[] = view
    ? [
        {
          key: 'name',
          label: 'Resource',
          rowHeader: true,
          value: resourceName,
          render: (g) => (
            <>
              <span className="cell-title">{resourceName(g)}</span>
              {g.key && g.sample.deployment_name ? (
                <span className="cell-sub">
                  <code>{g.sample.deployment_name}</code>
                </span>
              ) : null}
            </>
          ),
          footer: 'All resources',
        },
        ...countColumns(view.resourceTotals),
      ]
    : [];
  const attendeeColumns: Column<Group>[] = view
    ? [
        {
          key: 'user',
          label: 'Attendee',
          rowHeader: true,
          value: (g) => g.key,
          render: (g) => (g.key ? g.key : <span className="muted">No attendee</span>),
          footer: 'All attendees',
        },
        ...countColumns(view.attendeeTotals),
      ]
    : [];

  return (
    <section className="page">
      <p className="crumbs">
        <Link to="/events">Events</Link> / {event ? <Link to={eventPath}>{event.name}</Link> : null}
        {event ? ' /' : null}
      </p>
      <div className="page-head">
        <h1>Reports{event ? <span className="h1-sub"> · {event.name}</span> : null}</h1>
        <div className="actions">
          <button type="button" className="button" onClick={usage.reload} disabled={usage.loading || !apiRange}>
            Refresh
          </button>
          <Link className="button" to={eventPath}>
            Event page
          </Link>
        </div>
      </div>
      <p className="lead">
        Model calls through the edges for this event, in UTC: requests, errors and the tokens the upstreams reported.
        Edges send their usage about once a second.
      </p>
      <ErrorBanner>{meta.error}</ErrorBanner>

      <div className="filters report-filters" role="group" aria-label="Report range">
        <div className={`field${rangeErrors.from ? ' has-error' : ''}`}>
          <label htmlFor="report-from">From (UTC)</label>
          <input
            id="report-from"
            type="date"
            value={range.from}
            max={range.to || undefined}
            onChange={(e) => setParam('from', e.target.value)}
            aria-invalid={rangeErrors.from ? true : undefined}
            aria-describedby={rangeErrors.from ? 'report-from-error' : undefined}
          />
          {rangeErrors.from ? (
            <p className="field-error" id="report-from-error">
              {rangeErrors.from}
            </p>
          ) : null}
        </div>
        <div className={`field${rangeErrors.to ? ' has-error' : ''}`}>
          <label htmlFor="report-to">To (UTC, included)</label>
          <input
            id="report-to"
            type="date"
            value={range.to}
            min={range.from || undefined}
            onChange={(e) => setParam('to', e.target.value)}
            aria-invalid={rangeErrors.to ? true : undefined}
            aria-describedby={rangeErrors.to ? 'report-to-error' : undefined}
          />
          {rangeErrors.to ? (
            <p className="field-error" id="report-to-error">
              {rangeErrors.to}
            </p>
          ) : null}
        </div>
        <div className="field">
          <label htmlFor="report-granularity">Granularity</label>
          <select id="report-granularity" value={granularity} onChange={(e) => setParam('granularity', e.target.value)}>
            <option value="day">By day</option>
            <option value="hour">By hour</option>
          </select>
        </div>
        <div className="field csv-field">
          <label htmlFor="csv-rows">CSV rows</label>
          <select id="csv-rows" value={csvGroup} onChange={(e) => setCsvGroup(e.target.value)}>
            {CSV_GROUPS.map((g) => (
              <option key={g.value} value={g.value}>
                {g.label}
              </option>
            ))}
          </select>
        </div>
        <button
          type="button"
          className="button button-primary csv-button"
          onClick={() => void downloadCsv()}
          disabled={csvBusy || !apiRange}
        >
          {csvBusy ? 'Preparing CSV…' : 'Download CSV'}
        </button>
      </div>
      <ErrorBanner>{csvError}</ErrorBanner>
      <Notice onDismiss={() => setCsvNotice(null)}>{csvNotice}</Notice>
      <ErrorBanner>{usage.error}</ErrorBanner>

      {usage.loading && !report && apiRange ? <p className="muted">Loading…</p> : null}
      {report && totals && view ? (
        <div className="report" aria-busy={usage.loading}>
          <p className="muted small report-range" aria-live="polite">
            {rangeLabel(report.range)}
            {usage.loading ? ' · Updating…' : ''}
          </p>
          <UsageStats
            label="Totals"
            stats={[
              { label: 'Requests', value: totals.requests },
              {
                label: 'Errors',
                value: totals.errors,
                tone: 'error',
                sub: totals.requests ? `${formatShare(totals.errors, totals.requests)} of requests` : undefined,
              },
              { label: 'Prompt tokens', value: totals.prompt_tokens },
              { label: 'Completion tokens', value: totals.completion_tokens },
              { label: 'Total tokens', value: totals.total_tokens },
              {
                label: 'Cached tokens',
                value: totals.cached_tokens,
                sub: totals.prompt_tokens ? `${formatShare(totals.cached_tokens, totals.prompt_tokens)} of prompt` : undefined,
              },
            ]}
          />
          <div className="charts">
            <UsageChart
              id="requests-chart"
              title={`Requests per ${unit}`}
              yLabel="Requests"
              granularity={report.granularity}
              series={[
                { label: 'Answered', className: 'series-requests' },
                { label: 'Errors', className: 'series-errors' },
              ]}
              bars={view.points.map((p) => ({
                start: p.start,
                values: [Math.max(0, p.requests - p.errors), p.errors],
                detail: requestDetail(p),
              }))}
              emptyText="No requests in this range."
            />
            <UsageChart
              id="tokens-chart"
              title={`Tokens per ${unit}`}
              yLabel="Tokens"
              granularity={report.granularity}
              series={[
                { label: 'Prompt', className: 'series-prompt' },
                { label: 'Completion', className: 'series-completion' },
              ]}
              bars={view.points.map((p) => ({
                start: p.start,
                values: [Math.min(p.prompt_tokens, p.total_tokens), Math.max(0, p.total_tokens - p.prompt_tokens)],
                detail: tokenDetail(p),
              }))}
              emptyText="No tokens in this range."
            />
          </div>

          <section aria-labelledby="by-resource-title">
            <h2 id="by-resource-title">Tokens by resource</h2>
            {view.resources.length ? (
              <SortableTable
                id="usage-by-resource"
                caption="Tokens by resource"
                columns={resourceColumns}
                rows={view.resources}
                rowKey={(g) => g.key}
                initialSort={{ key: 'total_tokens', direction: 'descending' }}
              />
            ) : (
              <p className="muted">No usage in this range.</p>
            )}
          </section>
          <section aria-labelledby="by-attendee-title">
            <h2 id="by-attendee-title">Tokens by attendee</h2>
            {view.attendees.length ? (
              <SortableTable
                id="usage-by-attendee"
                caption="Tokens by attendee"
                columns={attendeeColumns}
                rows={view.attendees}
                rowKey={(g) => g.key}
                initialSort={{ key: 'total_tokens', direction: 'descending' }}
              />
            ) : (
              <p className="muted">No usage in this range.</p>
            )}
          </section>
          <p className="muted small report-note">
            The control plane keeps hourly totals per attendee and resource; an edge sends its usage records about once a
            second, so the last second or two may still be on their way. Tokens are what the upstream reported (streamed
            answers included); a request refused before reaching an upstream counts as a request without tokens.
          </p>
        </div>
      ) : null}
    </section>
  );
}
