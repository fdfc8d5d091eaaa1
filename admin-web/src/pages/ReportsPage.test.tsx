import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes } from 'react-router-dom';
import { ReportsPage } from './ReportsPage';
import { Layout } from '../components/Layout';
import { SessionProvider } from '../session';
import { setToken } from '../api';
import { apiError, mockApi, type Call } from '../test/fetch';
import type { AiEvent, Resource, UsageCounts, UsageReport, UsageRow } from '../types';

const EVENT: AiEvent = {
  id: 'e1',
  name: 'Spring hackathon',
  starts_at: '2026-12-01T09:00:00+00:00',
  ends_at: '2026-12-05T17:00:00+00:00',
  time_zone: 'UTC',
  max_token_cap: 4096,
  daily_request_cap: 0,
  daily_token_cap: 50000,
  token_budget: 0,
  organizer_name: 'Ada',
  organizer_email: '',
  active: true,
  resource_ids: ['r1', 'r2'],
};

const RESOURCES: Resource[] = [
  {
    id: 'r1',
    friendly_name: 'GPT-4o Sweden',
    deployment_name: 'gpt-4o',
    model_type: 'foundry-model',
    endpoint_url: 'https://x.openai.azure.com',
    region: 'swedencentral',
    use_managed_identity: false,
    identity_client_id: null,
    active: true,
    has_key: true,
  },
  {
    id: 'r2',
    friendly_name: 'Embeddings',
    deployment_name: 'text-embedding-3-small',
    model_type: 'foundry-model',
    endpoint_url: 'https://x.openai.azure.com',
    region: 'swedencentral',
    use_managed_identity: false,
    identity_client_id: null,
    active: true,
    has_key: true,
  },
];

function counts(requests: number, errors: number, prompt: number, completion: number, cached = 0): UsageCounts {
  return {
    requests,
    errors,
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    cached_tokens: cached,
  };
}

function row(bucket: string, c: UsageCounts, dims: Partial<UsageRow> = {}): UsageRow {
  return { bucket, event_id: null, resource_id: null, deployment_name: null, user_id: null, ...c, ...dims };
}

const TOTALS = counts(12, 2, 700, 540, 128);

/** What the control plane answers for each `group_by`. */
const REPORTS: Record<string, UsageReport> = {
  '': {
    rows: [
      row('2026-12-01T00:00:00Z', counts(5, 1, 300, 200, 64)),
      row('2026-12-02T00:00:00Z', counts(7, 1, 400, 340, 64)),
    ],
    totals: TOTALS,
  },
  resource: {
    rows: [
      // Two days of r1, summed by the table.
      row('2026-12-01T00:00:00Z', counts(4, 1, 250, 200), { resource_id: 'r1', deployment_name: 'gpt-4o' }),
      row('2026-12-02T00:00:00Z', counts(5, 1, 250, 340), { resource_id: 'r1', deployment_name: 'gpt-4o' }),
      row('2026-12-02T00:00:00Z', counts(3, 0, 200, 0), { resource_id: 'r2', deployment_name: 'text-embedding-3-small' }),
    ],
    totals: TOTALS,
  },
  attendee: {
    rows: [
      row('2026-12-01T00:00:00Z', counts(2, 0, 100, 40), { user_id: 'ada@example.com' }),
      row('2026-12-02T00:00:00Z', counts(8, 2, 500, 460), { user_id: 'grace@example.com' }),
      row('2026-12-02T00:00:00Z', counts(2, 0, 100, 40), { user_id: 'linus@example.com' }),
    ],
    totals: TOTALS,
  },
};

const EMPTY: UsageReport = { rows: [], totals: counts(0, 0, 0, 0) };

function params(call: Call): URLSearchParams {
  return new URL(call.url, 'http://console').searchParams;
}

function usageCalls(calls: Call[]): URLSearchParams[] {
  return calls.filter((c) => c.url.startsWith('/admin/api/v1/usage?')).map(params);
}

function mockReports(reports: Record<string, UsageReport> = REPORTS, csv = 'bucket,requests\n2026-12-01T00:00:00Z,5\n') {
  return mockApi((call) => {
    const path = call.url.split('?')[0];
    if (path === '/admin/api/v1/events/e1') return { status: 200, body: EVENT };
    if (path === '/admin/api/v1/resources') return { status: 200, body: RESOURCES };
    if (path === '/admin/api/v1/usage') {
      const p = params(call);
      if (p.get('format') === 'csv') return { status: 200, text: csv, contentType: 'text/csv' };
      return { status: 200, body: reports[p.get('group_by') ?? ''] ?? EMPTY };
    }
    return undefined;
  });
}

function renderReports(search = '?from=2026-12-01&to=2026-12-03') {
  render(
    <SessionProvider>
      <MemoryRouter initialEntries={[`/events/e1/reports${search}`]}>
        <Routes>
          <Route element={<Layout />}>
            <Route path="events/:id/reports" element={<ReportsPage />} />
          </Route>
        </Routes>
      </MemoryRouter>
    </SessionProvider>,
  );
}

function stat(label: string): string {
  return document.querySelector(`[data-stat="${label}"]`)?.textContent ?? '';
}

function firstColumn(tableId: string): string[] {
  return [...document.querySelectorAll(`#${tableId} tbody tr > th`)].map((th) => th.querySelector('.cell-title')?.textContent ?? th.textContent ?? '');
}

beforeEach(() => {
  sessionStorage.setItem('aiproxy.admin.token', 'adm_test');
  setToken('adm_test');
});

afterEach(() => {
  setToken(null);
  vi.useRealTimers();
});

describe('ReportsPage', () => {
  it('asks for the event’s usage in the range, with the admin token, and shows the totals', async () => {
    const calls = mockReports();
    renderReports();
    await waitFor(() => expect(stat('Requests')).toBe('12'));
    expect(stat('Errors')).toBe('2');
    expect(stat('Prompt tokens')).toBe('700');
    expect(stat('Completion tokens')).toBe('540');
    expect(stat('Total tokens')).toBe('1,240');
    expect(stat('Cached tokens')).toBe('128');
    expect(screen.getByText('17 % of requests')).toBeTruthy();

    const usage = usageCalls(calls);
    expect(usage).toHaveLength(3);
    for (const p of usage) {
      expect(p.get('event_id')).toBe('e1');
      // "To" is an included day: the API's `to` is exclusive.
      expect(p.get('from')).toBe('2026-12-01T00:00:00Z');
      expect(p.get('to')).toBe('2026-12-04T00:00:00Z');
    }
    expect(usage.map((p) => p.get('group_by')).sort()).toEqual(['attendee', 'resource', null].sort());
    for (const c of calls) {
      expect(c.headers.authorization).toBe('Bearer adm_test');
      expect(c.url).not.toContain('adm_test');
    }
    // The report belongs to Reports in the main navigation.
    const nav = screen.getByRole('navigation', { name: 'Main' });
    expect(within(nav).getByRole('link', { name: 'Reports' }).getAttribute('aria-current')).toBe('page');
    expect(within(nav).getByRole('link', { name: 'Events' }).getAttribute('aria-current')).not.toBe('page');
  });

  it('draws one bar per bucket, with a tooltip per bar, axis labels and a title', async () => {
    mockReports();
    renderReports();
    await waitFor(() => expect(document.querySelectorAll('#requests-chart .chart-bar')).toHaveLength(3));
    const svg = document.getElementById('requests-chart')!;
    expect(svg.getAttribute('role')).toBe('img');
    expect(svg.querySelector('title')?.textContent).toBe('Requests per day');
    expect(svg.querySelector('desc')?.textContent).toMatch(/12 in total, the most 7 on Wed 2 Dec/);
    const bars = [...svg.querySelectorAll('.chart-bar')];
    expect(bars.map((b) => b.getAttribute('data-value'))).toEqual(['5', '7', '0']);
    expect(bars[1].querySelector('title')?.textContent).toBe('Wed 2 Dec (UTC): 7 requests, 1 error');
    // Answered and error segments; the empty day has none.
    expect(bars[1].querySelectorAll('.chart-segment')).toHaveLength(2);
    expect(bars[2].querySelectorAll('.chart-segment')).toHaveLength(0);
    expect(svg.textContent).toContain('Day (UTC)');
    expect(svg.textContent).toContain('Requests');
    const tokens = document.getElementById('tokens-chart')!;
    expect(tokens.querySelectorAll('.chart-bar')[0].querySelector('title')?.textContent).toBe(
      'Tue 1 Dec (UTC): 500 tokens (prompt 300, completion 200, cached 64)',
    );
  });

  it('by hour: 24 bars a day, and the bucket of every row', async () => {
    const calls = mockReports({
      '': {
        rows: [row('2026-12-01T10:00:00Z', counts(3, 0, 30, 20)), row('2026-12-01T23:00:00Z', counts(1, 1, 5, 0))],
        totals: counts(4, 1, 35, 20),
      },
    });
    renderReports('?from=2026-12-01&to=2026-12-01&granularity=hour');
    await waitFor(() => expect(document.querySelectorAll('#requests-chart .chart-bar')).toHaveLength(24));
    const values = [...document.querySelectorAll('#requests-chart .chart-bar')].map((b) => Number(b.getAttribute('data-value')));
    expect(values[10]).toBe(3);
    expect(values[23]).toBe(1);
    expect(values.reduce((a, v) => a + v, 0)).toBe(4);
    expect(document.querySelectorAll('#requests-chart .chart-bar')[10].querySelector('title')?.textContent).toBe(
      'Tue 1 Dec, 10:00–11:00 UTC: 3 requests, 0 errors',
    );
    const series = usageCalls(calls).find((p) => !p.get('group_by'))!;
    expect(series.get('granularity')).toBe('hour');
  });

  it('sums the tables over the range and sorts them by a click on a column header', async () => {
    mockReports();
    const user = userEvent.setup();
    renderReports();
    await screen.findByRole('table', { name: /Tokens by resource/ });
    // Sorted by total tokens, largest first.
    expect(firstColumn('usage-by-resource')).toEqual(['GPT-4o Sweden', 'Embeddings']);
    const gpt = screen.getByText('GPT-4o Sweden').closest('tr')!;
    expect(within(gpt).getAllByRole('cell').map((c) => c.textContent)).toEqual(['9', '2 (22 %)', '500', '540', '0', '1,040']);
    const table = screen.getByRole('table', { name: /Tokens by resource/ });
    const total = within(table).getByRole('columnheader', { name: /Total tokens/ });
    expect(total.getAttribute('aria-sort')).toBe('descending');

    await user.click(within(total).getByRole('button'));
    expect(total.getAttribute('aria-sort')).toBe('ascending');
    expect(firstColumn('usage-by-resource')).toEqual(['Embeddings', 'GPT-4o Sweden']);

    const name = within(table).getByRole('columnheader', { name: /Resource/ });
    await user.click(within(name).getByRole('button'));
    expect(name.getAttribute('aria-sort')).toBe('ascending');
    expect(total.getAttribute('aria-sort')).toBe('none');
    expect(firstColumn('usage-by-resource')).toEqual(['Embeddings', 'GPT-4o Sweden']);
    await user.click(within(name).getByRole('button'));
    expect(name.getAttribute('aria-sort')).toBe('descending');
    expect(firstColumn('usage-by-resource')).toEqual(['GPT-4o Sweden', 'Embeddings']);

    // The attendees' table: errors shown, sortable by them.
    const attendees = screen.getByRole('table', { name: /Tokens by attendee/ });
    expect(firstColumn('usage-by-attendee')).toEqual(['grace@example.com', 'ada@example.com', 'linus@example.com']);
    await user.click(within(within(attendees).getByRole('columnheader', { name: /Attendee/ })).getByRole('button'));
    expect(firstColumn('usage-by-attendee')).toEqual(['ada@example.com', 'grace@example.com', 'linus@example.com']);
    await user.click(within(within(attendees).getByRole('columnheader', { name: /Errors/ })).getByRole('button'));
    expect(firstColumn('usage-by-attendee')[0]).toBe('grace@example.com');
    expect(within(screen.getByText('grace@example.com').closest('tr')!).getByText(/^2/).className).toBe('num-error');
    // Footer: the totals of the table.
    expect(attendees.querySelector('tfoot')?.textContent).toContain('All attendees');
    expect(attendees.querySelector('tfoot')?.textContent).toContain('1,240');
  });

  it('downloads the CSV for the current filters with the admin token', async () => {
    const csv = 'bucket,event_id,resource_id,deployment_name,user_id,requests\n2026-12-01T00:00:00Z,e1,r1,gpt-4o,ada@example.com,2\n';
    const calls = mockReports(REPORTS, csv);
    const created: Blob[] = [];
    const createObjectURL = vi.fn((blob: Blob) => {
      created.push(blob);
      return 'blob:report';
    });
    // jsdom has no object URLs.
    Object.assign(URL, { createObjectURL, revokeObjectURL: vi.fn() });
    const clicked: HTMLAnchorElement[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
      clicked.push(this);
    });
    const user = userEvent.setup();
    renderReports();
    await waitFor(() => expect(stat('Requests')).toBe('12'));

    await user.click(screen.getByRole('button', { name: 'Download CSV' }));
    await screen.findByText(/^Downloaded usage-spring-hackathon-2026-12-01-to-2026-12-03-day-by-resource-attendee\.csv\.$/);
    let csvCalls = calls.filter((c) => params(c).get('format') === 'csv');
    expect(csvCalls).toHaveLength(1);
    let p = params(csvCalls[0]);
    expect(Object.fromEntries(p)).toEqual({
      event_id: 'e1',
      from: '2026-12-01T00:00:00Z',
      to: '2026-12-04T00:00:00Z',
      granularity: 'day',
      group_by: 'resource,attendee',
      format: 'csv',
    });
    expect(csvCalls[0].headers.authorization).toBe('Bearer adm_test');
    expect(csvCalls[0].headers.accept).toBe('text/csv');
    expect(await created[0].text()).toBe(csv);
    expect(clicked[0].download).toBe('usage-spring-hackathon-2026-12-01-to-2026-12-03-day-by-resource-attendee.csv');
    expect(clicked[0].getAttribute('href')).toBe('blob:report');

    // Other rows and granularity: the next download follows the filters.
    await user.selectOptions(screen.getByLabelText('Granularity'), 'By hour');
    await user.selectOptions(screen.getByLabelText('CSV rows'), 'By attendee');
    await user.click(screen.getByRole('button', { name: 'Download CSV' }));
    await screen.findByText(/-hour-by-attendee\.csv\.$/);
    csvCalls = calls.filter((c) => params(c).get('format') === 'csv');
    p = params(csvCalls[1]);
    expect(p.get('granularity')).toBe('hour');
    expect(p.get('group_by')).toBe('attendee');
    expect(p.get('event_id')).toBe('e1');
  });

  it('says why a CSV download failed', async () => {
    mockApi((call) => {
      const path = call.url.split('?')[0];
      if (path === '/admin/api/v1/events/e1') return { status: 200, body: EVENT };
      if (path === '/admin/api/v1/resources') return { status: 200, body: RESOURCES };
      if (params(call).get('format') === 'csv') return apiError(503, 'the catalog database is unavailable; retry shortly');
      return { status: 200, body: EMPTY };
    });
    const user = userEvent.setup();
    renderReports();
    await user.click(await screen.findByRole('button', { name: 'Download CSV' }));
    expect((await screen.findByText(/Could not download the CSV/)).textContent).toMatch(/catalog database is unavailable/);
  });

  it('shows an empty state when nothing was recorded', async () => {
    mockReports({});
    renderReports();
    await screen.findByText('No requests in this range.');
    expect(screen.getByText('No tokens in this range.')).toBeTruthy();
    expect(document.querySelectorAll('.chart-bar')).toHaveLength(0);
    expect(screen.getAllByText('No usage in this range.')).toHaveLength(2);
    expect(stat('Requests')).toBe('0');
  });

  it('defaults to the last 7 UTC days, today included', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-03T13:30:00Z'));
    const calls = mockReports();
    renderReports('');
    await waitFor(() => expect(usageCalls(calls)).toHaveLength(3));
    expect(usageCalls(calls)[0].get('from')).toBe('2026-11-27T00:00:00Z');
    expect(usageCalls(calls)[0].get('to')).toBe('2026-12-04T00:00:00Z');
    expect((screen.getByLabelText('From (UTC)') as HTMLInputElement).value).toBe('2026-11-27');
    expect((screen.getByLabelText('To (UTC, included)') as HTMLInputElement).value).toBe('2026-12-03');
  });

  it('refuses a range that ends before it starts, or hours over more than a month, without asking the API', async () => {
    const calls = mockReports();
    renderReports('?from=2026-12-05&to=2026-12-01');
    expect((await screen.findByText('Must be on or after the start date.')).id).toBe('report-to-error');
    expect(screen.getByLabelText('To (UTC, included)').getAttribute('aria-invalid')).toBe('true');
    expect((screen.getByRole('button', { name: 'Download CSV' }) as HTMLButtonElement).disabled).toBe(true);
    await screen.findByText('Spring hackathon');
    expect(usageCalls(calls)).toHaveLength(0);
  });

  it('limits hourly reports to 31 days', async () => {
    const calls = mockReports();
    renderReports('?from=2026-10-01&to=2026-12-01&granularity=hour');
    expect(await screen.findByText(/Hourly reports cover at most 31 days/)).toBeTruthy();
    await screen.findByText('Spring hackathon');
    expect(usageCalls(calls)).toHaveLength(0);
  });

  it('shows the control plane’s error', async () => {
    mockApi((call) => {
      const path = call.url.split('?')[0];
      if (path === '/admin/api/v1/events/e1') return { status: 200, body: EVENT };
      if (path === '/admin/api/v1/resources') return { status: 200, body: RESOURCES };
      return apiError(400, 'group_by: unknown dimension', 'group_by');
    });
    renderReports();
    expect((await screen.findByRole('alert')).textContent).toMatch(/unknown dimension/);
  });
});
