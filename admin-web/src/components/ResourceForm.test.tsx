import { describe, expect, it, vi } from 'vitest';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import { ResourceForm } from './ResourceForm';
import { ApiError } from '../api';
import { EMPTY_RESOURCE, type ResourceFormContext, type ResourceFormValues } from '../validation';
import type { ResourceInput } from '../types';

const FORM = 'https://<account>.services.ai.azure.com/api/projects/<project>';

function setup(initial: ResourceFormValues = EMPTY_RESOURCE, context: ResourceFormContext = { editing: false, hasStoredKey: false }) {
  const onSubmit = vi.fn<(input: ResourceInput) => Promise<void>>(async () => {});
  const user = userEvent.setup();
  render(
    <MemoryRouter>
      <ResourceForm initial={initial} context={context} onSubmit={onSubmit} onCancel={() => {}} />
    </MemoryRouter>,
  );
  return { onSubmit, user };
}

async function fillAgent(user: ReturnType<typeof userEvent.setup>, endpoint: string) {
  await user.type(screen.getByLabelText(/Friendly Name/), 'Hackathon agents');
  await user.type(screen.getByLabelText(/Deployment Name/), 'hackathon-agent');
  await user.selectOptions(screen.getByLabelText(/^Type/), 'Foundry_Agent');
  await user.type(screen.getByLabelText(/^Endpoint/), endpoint);
  await user.click(screen.getByLabelText('Use Managed Identity'));
}

/** A key resource being edited (its key stored). */
const KEYED_GPT4O: ResourceFormValues = {
  ...EMPTY_RESOURCE,
  friendly_name: 'GPT-4o',
  deployment_name: 'gpt-4o',
  endpoint_url: 'https://x.openai.azure.com',
};

describe('ResourceForm', () => {
  it('has a label for every field the operator fills in', () => {
    setup();
    for (const label of [/Friendly Name/, /Deployment Name/, /^Type/, /^Endpoint/, /^Key/, /^Region/, /Use Managed Identity/, /^Active/]) {
      expect(screen.getByLabelText(label)).toBeTruthy();
    }
  });

  it('requires a key unless Use Managed Identity is checked, and says so inline', async () => {
    const { onSubmit, user } = setup();
    await user.type(screen.getByLabelText(/Friendly Name/), 'GPT-4o');
    await user.type(screen.getByLabelText(/Deployment Name/), 'gpt-4o');
    await user.type(screen.getByLabelText(/^Endpoint/), 'https://x.openai.azure.com');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).not.toHaveBeenCalled();
    const key = screen.getByLabelText(/^Key/);
    expect(key.getAttribute('aria-invalid')).toBe('true');
    expect(document.getElementById('key-error')?.textContent).toMatch(/Required unless “Use Managed Identity” is checked/);
    expect(document.activeElement).toBe(key);
  });

  it('with managed identity, disables the key field, explains it is not used and sends no key', async () => {
    const { onSubmit, user } = setup();
    await fillAgent(user, 'https://myhub.services.ai.azure.com/api/projects/hackathon');
    const key = screen.getByLabelText(/^Key/) as HTMLInputElement;
    expect(key.disabled).toBe(true);
    expect(document.getElementById('key-hint')?.textContent).toMatch(/Not used/);
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).toHaveBeenCalledTimes(1);
    const body = onSubmit.mock.calls[0][0];
    expect(body).toMatchObject({
      model_type: 'foundry-agent',
      use_managed_identity: true,
      endpoint_url: 'https://myhub.services.ai.azure.com/api/projects/hackathon',
      active: true,
    });
    expect('key' in body).toBe(false);
  });

  it('refuses a Foundry agent endpoint that is not the project endpoint, showing the right form', async () => {
    const { onSubmit, user } = setup();
    await fillAgent(user, 'https://myhub.cognitiveservices.azure.com/');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).not.toHaveBeenCalled();
    const error = document.getElementById('endpoint_url-error')?.textContent ?? '';
    expect(error).toContain(FORM);
    expect(error).toContain('https://myhub.services.ai.azure.com/api/projects/<project>');
    expect(document.activeElement).toBe(screen.getByLabelText(/^Endpoint/));
    // Fixing it clears the error as the admin types.
    const endpoint = screen.getByLabelText(/^Endpoint/);
    await user.clear(endpoint);
    await user.type(endpoint, 'https://myhub.services.ai.azure.com/api/projects/hackathon');
    expect(document.getElementById('endpoint_url-error')).toBeNull();
  });

  it('shows a refusal from the control plane next to the field it names', async () => {
    const { onSubmit, user } = setup();
    onSubmit.mockRejectedValueOnce(
      new ApiError(400, 'Bad Request', 'endpoint_url: a Foundry agent resource needs the project endpoint ' + FORM, 'endpoint_url'),
    );
    await fillAgent(user, 'http://127.0.0.1:9100/agents');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    const error = await screen.findByText(/a Foundry agent resource needs the project endpoint/);
    expect(error.id).toBe('endpoint_url-error');
    expect(error.textContent?.startsWith('endpoint_url:')).toBe(false);
  });

  it('shows a refusal without a field as a general message', async () => {
    const { onSubmit, user } = setup();
    onSubmit.mockRejectedValueOnce(new ApiError(503, 'Service Unavailable', 'the catalog database is unavailable; retry shortly'));
    await fillAgent(user, 'https://myhub.services.ai.azure.com/api/projects/hackathon');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect((await screen.findByRole('alert')).textContent).toMatch(/catalog database is unavailable/);
  });

  it('on edit, a blank key keeps the stored one: the body has no key', async () => {
    const { onSubmit, user } = setup(KEYED_GPT4O, { editing: true, hasStoredKey: true });
    expect(document.getElementById('key-hint')?.textContent).toMatch(/A key is stored/);
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).toHaveBeenCalledTimes(1);
    expect('key' in onSubmit.mock.calls[0][0]).toBe(false);
  });

  it('on edit, switching a key resource to managed identity says the stored key goes, and sends none', async () => {
    const { onSubmit, user } = setup(KEYED_GPT4O, { editing: true, hasStoredKey: true });
    await user.click(screen.getByLabelText('Use Managed Identity'));
    expect(document.getElementById('key-hint')?.textContent).toMatch(/removes the stored key/);
    expect(screen.queryByLabelText(/Remove the stored key/)).toBeNull();
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit).toHaveBeenCalledTimes(1);
    expect(onSubmit.mock.calls[0][0]).toMatchObject({ use_managed_identity: true });
    expect('key' in onSubmit.mock.calls[0][0]).toBe(false);
  });

  it('does not offer managed identity for MCP servers', async () => {
    const { user } = setup();
    await user.click(screen.getByLabelText('Use Managed Identity'));
    await user.selectOptions(screen.getByLabelText(/^Type/), 'MCP_Server');
    const mi = screen.getByLabelText('Use Managed Identity') as HTMLInputElement;
    expect(mi.disabled).toBe(true);
    expect(mi.checked).toBe(false);
    expect(document.getElementById('use_managed_identity-hint')?.textContent).toMatch(/Not available for MCP servers/);
  });

  it('sends use_max_completion_tokens as checked, off by default, and keeps it on edit', async () => {
    const { onSubmit, user } = setup();
    await user.type(screen.getByLabelText(/Friendly Name/), 'GPT-5');
    await user.type(screen.getByLabelText(/Deployment Name/), 'gpt-5');
    await user.type(screen.getByLabelText(/^Endpoint/), 'https://x.openai.azure.com');
    await user.type(screen.getByLabelText(/^Key/), 'secret');
    const box = screen.getByLabelText(/Use max_completion_tokens/) as HTMLInputElement;
    expect(box.checked).toBe(false);
    expect(document.getElementById('use_max_completion_tokens-hint')?.textContent).toMatch(/GPT-5 and o-series/);
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit.mock.calls[0][0].use_max_completion_tokens).toBe(false);
    await user.click(box);
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(onSubmit.mock.calls[1][0].use_max_completion_tokens).toBe(true);
  });

  it('shows a stored use_max_completion_tokens checked on edit', () => {
    setup(
      { ...EMPTY_RESOURCE, friendly_name: 'GPT-5', deployment_name: 'gpt-5', endpoint_url: 'https://x.openai.azure.com', use_max_completion_tokens: true },
      { editing: true, hasStoredKey: true },
    );
    expect((screen.getByLabelText(/Use max_completion_tokens/) as HTMLInputElement).checked).toBe(true);
  });
});
