import { describe, expect, it, vi } from 'vitest';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { Attendees } from './Attendees';
import { apiError, mockApi } from '../test/fetch';
import type { Attendee } from '../types';

describe('Attendees', () => {
  it('shows a new key once, with a copy button, and hides it for good', async () => {
    const list: Attendee[] = [];
    const calls = mockApi((call) => {
      if (call.method === 'POST') {
        const a = { event_id: 'e1', user_id: (call.body as { user_id: string }).user_id, active: true, created_at: '2026-03-28T08:00:00Z' };
        list.push(a);
        return { status: 201, body: { ...a, api_key: 'aip_secret_key' } };
      }
      return { status: 200, body: list };
    });
    const user = userEvent.setup();
    const writeText = vi.fn(async () => {});
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    render(<Attendees eventId="e1" />);
    await user.type(screen.getByLabelText('User ID'), 'ada@example.com');
    await user.click(screen.getByRole('button', { name: 'Add attendee' }));
    const key = (await screen.findByLabelText(/API key for ada@example.com/)) as HTMLInputElement;
    expect(key.value).toBe('aip_secret_key');
    expect(screen.getByText(/Shown only once/)).toBeTruthy();
    await user.click(screen.getByRole('button', { name: 'Copy key' }));
    expect(writeText).toHaveBeenCalledWith('aip_secret_key');
    expect(await screen.findByRole('button', { name: 'Copied' })).toBeTruthy();
    await user.click(screen.getByRole('button', { name: 'Done, hide the key' }));
    expect(screen.queryByDisplayValue('aip_secret_key')).toBeNull();
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ user_id: 'ada@example.com' });
  });

  it('deactivates an attendee and searches the list', async () => {
    let list: Attendee[] = [
      { event_id: 'e1', user_id: 'ada@example.com', active: true, created_at: '2026-03-28T08:00:00Z' },
      { event_id: 'e1', user_id: 'grace@example.com', active: true, created_at: '2026-03-28T08:00:00Z' },
    ];
    const calls = mockApi((call) => {
      if (call.method === 'PUT') {
        list = list.map((a) => (call.url.endsWith(encodeURIComponent(a.user_id)) ? { ...a, active: false } : a));
        return { status: 200, body: list[0] };
      }
      return { status: 200, body: list };
    });
    const user = userEvent.setup();
    render(<Attendees eventId="e1" />);
    await user.click(await screen.findByRole('button', { name: 'Deactivate ada@example.com' }));
    expect(await screen.findByRole('button', { name: 'Reactivate ada@example.com' })).toBeTruthy();
    const put = calls.find((c) => c.method === 'PUT')!;
    expect(put.url).toBe('/admin/api/v1/events/e1/attendees/ada%40example.com');
    expect(put.body).toEqual({ active: false });
    await user.type(screen.getByLabelText('Search attendees'), 'grace');
    expect(screen.queryByText('ada@example.com')).toBeNull();
    expect(screen.getByText('1 of 2 attendees match.')).toBeTruthy();
  });

  it('refuses a user ID with “/” inline, and shows a duplicate as the API says', async () => {
    mockApi((call) => (call.method === 'POST' ? apiError(409, "attendee 'ada@example.com' is already registered") : { status: 200, body: [] }));
    const user = userEvent.setup();
    render(<Attendees eventId="e1" />);
    await user.type(screen.getByLabelText('User ID'), 'a/b');
    await user.click(screen.getByRole('button', { name: 'Add attendee' }));
    expect(document.getElementById('user_id-error')?.textContent).toMatch(/without “\/”/);
    await user.clear(screen.getByLabelText('User ID'));
    await user.type(screen.getByLabelText('User ID'), 'ada@example.com');
    await user.click(screen.getByRole('button', { name: 'Add attendee' }));
    expect((await screen.findByRole('alert')).textContent).toMatch(/already registered/);
  });
});
