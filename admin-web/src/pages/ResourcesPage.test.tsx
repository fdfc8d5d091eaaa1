import { describe, expect, it } from 'vitest';
import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import { ResourcesPage } from './ResourcesPage';
import { apiError, mockApi } from '../test/fetch';
import type { Resource } from '../types';

const base: Resource = {
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
};
const agent: Resource = {
  ...base,
  id: 'r2',
  friendly_name: 'Hackathon agents',
  deployment_name: 'agents',
  model_type: 'foundry-agent',
  endpoint_url: 'https://hub.services.ai.azure.com/api/projects/hack',
  use_managed_identity: true,
  has_key: false,
  managed_identity: {
    identity: "the proxy's identity",
    scope: 'https://ai.azure.com/.default',
    token_expires_at: null,
    credential: null,
    last_error: 'no credential is configured (AIPROXY_CREDENTIAL=none)',
    next_attempt_at: '2026-11-30T05:00:00Z',
    active: true,
  },
};

function renderPage() {
  render(
    <MemoryRouter initialEntries={['/resources']}>
      <ResourcesPage />
    </MemoryRouter>,
  );
}

describe('ResourcesPage', () => {
  it('shows the auth badge and, for managed identity, the token status', async () => {
    mockApi((call) => (call.method === 'GET' ? { status: 200, body: [base, agent] } : undefined));
    renderPage();
    const agentRow = (await screen.findByText('Hackathon agents')).closest('tr')!;
    expect(within(agentRow).getByText('Managed identity')).toBeTruthy();
    expect(within(agentRow).getByText(/AIPROXY_CREDENTIAL=none/)).toBeTruthy();
    const keyRow = screen.getByText('GPT-4o Sweden').closest('tr')!;
    expect(within(keyRow).getByText('API key')).toBeTruthy();
  });

  it('filters by authentication and searches', async () => {
    mockApi(() => ({ status: 200, body: [base, agent] }));
    const user = userEvent.setup();
    renderPage();
    await screen.findByText('Hackathon agents');
    await user.selectOptions(screen.getByLabelText('Authentication'), 'API key');
    expect(screen.queryByText('Hackathon agents')).toBeNull();
    await user.selectOptions(screen.getByLabelText('Authentication'), 'Any');
    await user.type(screen.getByLabelText('Search'), 'agents');
    expect(screen.queryByText('GPT-4o Sweden')).toBeNull();
    expect(screen.getByText('1 of 2 resources match.')).toBeTruthy();
  });

  it('shows the control plane’s refusal to delete a resource an event uses', async () => {
    mockApi((call) =>
      call.method === 'DELETE'
        ? apiError(409, "resource 'r1' is used by event(s) Spring hackathon; remove it from them first")
        : { status: 200, body: [base] },
    );
    const user = userEvent.setup();
    renderPage();
    await user.click(await screen.findByRole('button', { name: 'Delete GPT-4o Sweden' }));
    const confirm = screen.getByRole('group', { name: /Delete “GPT-4o Sweden”\?/ });
    await user.click(within(confirm).getByRole('button', { name: 'Delete' }));
    expect((await screen.findByRole('alert')).textContent).toMatch(/Could not delete “GPT-4o Sweden”: .*Spring hackathon/);
    expect(screen.getByText('GPT-4o Sweden')).toBeTruthy();
  });
});
