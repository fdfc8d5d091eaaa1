import { describe, expect, it } from 'vitest';
import { render, screen, within } from '@testing-library/react';
import { MemoryRouter, Route, Routes } from 'react-router-dom';
import { ReportsIndexPage } from './ReportsIndexPage';
import { Layout } from '../components/Layout';
import { SessionProvider } from '../session';
import { mockApi } from '../test/fetch';
import type { AiEvent } from '../types';

const base: AiEvent = {
  id: 'past',
  name: 'Autumn workshop',
  starts_at: '2020-10-01T09:00:00+00:00',
  ends_at: '2020-10-01T17:00:00+00:00',
  time_zone: 'UTC',
  max_token_cap: 0,
  daily_request_cap: 0,
  daily_token_cap: 0,
  token_budget: 0,
  organizer_name: '',
  organizer_email: '',
  active: true,
  resource_ids: [],
};
const live: AiEvent = { ...base, id: 'live', name: 'Spring hackathon', starts_at: '2020-01-01T00:00:00+00:00', ends_at: '2099-01-01T00:00:00+00:00' };

function renderAt(path: string, events: AiEvent[]) {
  mockApi(() => ({ status: 200, body: events }));
  render(
    <SessionProvider>
      <MemoryRouter initialEntries={[path]}>
        <Routes>
          <Route element={<Layout />}>
            <Route path="reports" element={<ReportsIndexPage />} />
            <Route path="events/:id" element={<p>event page</p>} />
          </Route>
        </Routes>
      </MemoryRouter>
    </SessionProvider>,
  );
}

describe('ReportsIndexPage', () => {
  it('lists the events, live ones first, each linking to its report', async () => {
    renderAt('/reports', [base, live]);
    const table = await screen.findByRole('table', { name: 'Events and their reports' });
    const names = within(table).getAllByRole('rowheader').map((th) => th.textContent);
    expect(names).toEqual(['Spring hackathon', 'Autumn workshop']);
    expect(screen.getByRole('link', { name: 'Reports for Spring hackathon' }).getAttribute('href')).toBe('/events/live/reports');
    const nav = screen.getByRole('navigation', { name: 'Main' });
    expect(within(nav).getByRole('link', { name: 'Reports' }).getAttribute('aria-current')).toBe('page');
  });

  it('says when there is no event to report on', async () => {
    renderAt('/reports', []);
    expect(await screen.findByText('No events yet, so nothing to report.')).toBeTruthy();
  });

  it('leaves Events current on an event’s own page', async () => {
    renderAt('/events/live', []);
    await screen.findByText('event page');
    const nav = screen.getByRole('navigation', { name: 'Main' });
    expect(within(nav).getByRole('link', { name: 'Events' }).getAttribute('aria-current')).toBe('page');
    expect(within(nav).getByRole('link', { name: 'Reports' }).getAttribute('aria-current')).toBeNull();
  });
});
