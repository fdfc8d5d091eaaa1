import { describe, expect, it, vi } from 'vitest';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import { EventForm } from './EventForm';
import { ApiError } from '../api';
import { emptyEvent } from '../validation';
import type { EventInput, Resource } from '../types';

const resources: Resource[] = [
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
    friendly_name: 'Hackathon agents',
    deployment_name: 'agents',
    model_type: 'foundry-agent',
    endpoint_url: 'https://hub.services.ai.azure.com/api/projects/hack',
    region: '',
    use_managed_identity: true,
    identity_client_id: null,
    active: true,
    has_key: false,
  },
];

function setup() {
  const onSubmit = vi.fn<(input: EventInput) => Promise<void>>(async () => {});
  const user = userEvent.setup();
  render(
    <MemoryRouter>
      <EventForm initial={emptyEvent('UTC')} resources={resources} onSubmit={onSubmit} onCancel={() => {}} />
    </MemoryRouter>,
  );
  return { onSubmit, user };
}

async function fill(user: ReturnType<typeof userEvent.setup>, starts: string, ends: string) {
  await user.type(screen.getByLabelText(/^Name/), 'Spring hackathon');
  await user.selectOptions(screen.getByLabelText(/^Time zone/), 'Europe/Paris');
  // datetime-local inputs take their value as one string
  await user.type(screen.getByLabelText(/^Starts/), starts);
  await user.type(screen.getByLabelText(/^Ends/), ends);
}

describe('EventForm', () => {
  it('shows the local time in the picked zone', async () => {
    const { user } = setup();
    await user.selectOptions(screen.getByLabelText(/^Time zone/), 'Asia/Kolkata');
    expect(document.getElementById('time_zone-hint')?.textContent).toMatch(/Local time there now: .*GMT\+5:30/);
  });

  it('refuses an end before the start, inline', async () => {
    const { onSubmit, user } = setup();
    await fill(user, '2026-03-28T17:00', '2026-03-28T09:00');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).not.toHaveBeenCalled();
    expect(document.getElementById('ends_at-error')?.textContent).toMatch(/after the start/);
  });

  it('sends local times with the zone, the caps and the resources to expose', async () => {
    const { onSubmit, user } = setup();
    await fill(user, '2026-03-28T09:00', '2026-03-28T17:00');
    expect(document.getElementById('starts_at-hint')?.textContent).toMatch(/GMT\+1 \(Europe\/Paris\)/);
    await user.clear(screen.getByLabelText(/Max tokens per request/));
    await user.type(screen.getByLabelText(/Max tokens per request/), '4096');
    await user.click(screen.getByRole('checkbox', { name: /Hackathon agents/ }));
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).toHaveBeenCalledWith({
      name: 'Spring hackathon',
      starts_at: '2026-03-28T09:00',
      ends_at: '2026-03-28T17:00',
      time_zone: 'Europe/Paris',
      max_token_cap: 4096,
      daily_request_cap: 0,
      daily_token_cap: 0,
      token_budget: 0,
      organizer_name: '',
      organizer_email: '',
      active: true,
      resource_ids: ['r2'],
    });
  });

  it('takes the token caps, refuses what is not a whole number inline, and sends them', async () => {
    const { onSubmit, user } = setup();
    await fill(user, '2026-03-28T09:00', '2026-03-28T17:00');
    const daily = screen.getByLabelText(/Daily tokens per attendee/);
    const budget = screen.getByLabelText(/Token budget for the event/);
    expect(document.getElementById('daily_token_cap-hint')?.textContent).toMatch(/UTC day/);
    await user.clear(daily);
    await user.type(daily, '50k');
    await user.clear(budget);
    await user.type(budget, '-1');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).not.toHaveBeenCalled();
    expect(screen.getByRole('alert').textContent).toMatch(/2 fields need attention/);
    expect(daily.getAttribute('aria-invalid')).toBe('true');
    expect(document.getElementById('daily_token_cap-error')?.textContent).toMatch(/whole number/);
    expect(document.getElementById('token_budget-error')?.textContent).toMatch(/no budget/);
    expect(document.activeElement).toBe(daily);
    await user.clear(daily);
    await user.type(daily, '50000');
    await user.clear(budget);
    await user.type(budget, '2000000');
    expect(document.getElementById('daily_token_cap-error')).toBeNull();
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).toHaveBeenCalledWith(expect.objectContaining({ daily_token_cap: 50000, token_budget: 2000000 }));
  });

  it('shows a refusal of a token cap by the control plane under that field', async () => {
    const { onSubmit, user } = setup();
    onSubmit.mockRejectedValueOnce(new ApiError(400, 'Bad Request', 'token_budget: is too large', 'token_budget'));
    await fill(user, '2026-03-28T09:00', '2026-03-28T17:00');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect((await screen.findByText('is too large')).id).toBe('token_budget-error');
  });

  it('shows the control plane’s refusal next to the field it names', async () => {
    const { onSubmit, user } = setup();
    onSubmit.mockRejectedValueOnce(new ApiError(400, 'Bad Request', 'starts_at: does not exist in Europe/Paris', 'starts_at'));
    await fill(user, '2026-03-28T09:00', '2026-03-28T17:00');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect((await screen.findByText('does not exist in Europe/Paris')).id).toBe('starts_at-error');
  });
});
