import { describe, expect, it } from 'vitest';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import { App } from '../App';
import { SessionProvider } from '../session';
import { apiError, mockApi } from '../test/fetch';

function renderApp(path = '/resources') {
  render(
    <MemoryRouter initialEntries={[path]}>
      <SessionProvider>
        <App />
      </SessionProvider>
    </MemoryRouter>,
  );
}

describe('sign-in', () => {
  it('says clearly when the token is wrong, and stores nothing', async () => {
    mockApi(() => apiError(401, 'invalid admin token'));
    const user = userEvent.setup();
    renderApp();
    await user.type(screen.getByLabelText('Admin token'), 'wrong');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    expect((await screen.findByRole('alert')).textContent).toMatch(/admin token was not accepted/);
    expect(sessionStorage.length).toBe(0);
  });

  it('keeps the token in session storage and sends it as a bearer header, never in the URL', async () => {
    const calls = mockApi((call) => (call.url.endsWith('/resources') ? { status: 200, body: [] } : undefined));
    const user = userEvent.setup();
    renderApp();
    await user.type(screen.getByLabelText('Admin token'), 'the-token');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    await screen.findByRole('heading', { name: 'Resources', level: 1 });
    expect(sessionStorage.getItem('aiproxy.admin.token')).toBe('the-token');
    expect(calls.length).toBeGreaterThan(0);
    for (const call of calls) {
      expect(call.headers.authorization).toBe('Bearer the-token');
      expect(call.url).not.toContain('the-token');
      expect(call.url.startsWith('/admin/api/v1/')).toBe(true);
    }
  });

  it('ends the session with a message when the token stops working', async () => {
    sessionStorage.setItem('aiproxy.admin.token', 'rotated');
    mockApi(() => apiError(401, 'invalid admin token'));
    renderApp('/events');
    expect((await screen.findByRole('alert')).textContent).toMatch(/session has ended/);
    expect(screen.getByLabelText('Admin token')).toBeTruthy();
    expect(sessionStorage.length).toBe(0);
  });
});
