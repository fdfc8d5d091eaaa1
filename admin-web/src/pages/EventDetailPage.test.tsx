import { afterEach, describe, expect, it, vi } from 'vitest';
import { render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter, Route, Routes } from 'react-router-dom';
import { EventDetailPage } from './EventDetailPage';
import { apiError, mockApi } from '../test/fetch';
import type { AiEvent } from '../types';

const EVENT: AiEvent = {
  id: 'e1',
  name: 'Spring hackathon',
  starts_at: '2026-12-01T09:00:00+00:00',
  ends_at: '2026-12-05T17:00:00+00:00',
  time_zone: 'UTC',
  max_token_cap: 4096,
  daily_request_cap: 200,
  daily_token_cap: 50000,
  token_budget: 0,
  organizer_name: 'Ada',
  organizer_email: '',
  active: true,
  resource_ids: [],
};

const TODAY = {
  rows: [],
  totals: { requests: 42, errors: 3, prompt_tokens: 9000, completion_tokens: 3345, total_tokens: 12345, cached_tokens: 0 },
};

function renderPage(usage: () => { status: number; body?: unknown }) {
  const calls = mockApi((call) => {
    const path = call.url.split('?')[0];
    if (path === '/admin/api/v1/events/e1') return { status: 200, body: EVENT };
    if (path === '/admin/api/v1/resources') return { status: 200, body: [] };
    if (path === '/admin/api/v1/events/e1/attendees') return { status: 200, body: [] };
    if (path === '/admin/api/v1/usage') return usage();
    return undefined;
  });
  render(
    <MemoryRouter initialEntries={['/events/e1']}>
      <Routes>
        <Route path="events/:id" element={<EventDetailPage />} />
      </Routes>
    </MemoryRouter>,
  );
  return calls;
}

afterEach(() => vi.useRealTimers());

describe('EventDetailPage', () => {
  it('shows every cap, and today’s totals since 00:00 UTC with a link to the reports', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-03T13:30:00Z'));
    const calls = renderPage(() => ({ status: 200, body: TODAY }));
    const today = await screen.findByRole('region', { name: /Today/ });
    await waitFor(() => expect(within(today).getByText('12,345')).toBeTruthy());
    const stats = [...today.querySelectorAll('.stat')].map((s) => s.textContent);
    expect(stats).toEqual(['Requests42', 'Tokens12,345', 'Errors37.1 % of requests']);
    const usage = calls.find((c) => c.url.startsWith('/admin/api/v1/usage?'))!;
    const p = new URL(usage.url, 'http://console').searchParams;
    expect(p.get('event_id')).toBe('e1');
    expect(p.get('from')).toBe('2026-12-03T00:00:00Z');
    expect(p.get('granularity')).toBe('day');
    expect(within(today).getByRole('link', { name: /Usage over time/ }).getAttribute('href')).toBe('/events/e1/reports');
    expect(screen.getByRole('link', { name: 'Reports' }).getAttribute('href')).toBe('/events/e1/reports');

    const caps = screen.getByText('Caps').nextElementSibling!.textContent;
    expect(caps).toContain('4,096 max tokens per request');
    expect(caps).toContain('200 requests per attendee per UTC day');
    expect(caps).toContain('50,000 tokens per attendee per UTC day');
    expect(caps).toContain('No event token budget');
  });

  it('keeps the page when today’s usage cannot be read, and says why', async () => {
    renderPage(() => apiError(503, 'the catalog database is unavailable; retry shortly'));
    expect((await screen.findByRole('alert')).textContent).toMatch(/Could not load today’s usage: .*unavailable/);
    expect(screen.getByRole('heading', { name: /Spring hackathon/, level: 1 })).toBeTruthy();
  });
});
