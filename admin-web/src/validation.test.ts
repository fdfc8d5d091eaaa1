import { describe, expect, it } from 'vitest';
import { ApiError } from './api';
import endpointCases from './endpoint-cases.json';
import {
  EMPTY_RESOURCE,
  KEY_REQUIRED,
  endpointError,
  eventToForm,
  resourceToForm,
  fieldErrorsFrom,
  foundryAgentEndpointError,
  toEventInput,
  toResourceInput,
  validateEvent,
  validateResource,
  validateUserId,
  type EventFormValues,
  type ResourceFormValues,
} from './validation';
import { eventPhase, localInputFromApi, zonedToInstant } from './time';
import type { ModelType } from './types';

const FORM = 'https://<account>.services.ai.azure.com/api/projects/<project>';
const create = { editing: false, hasStoredKey: false };
const editWithKey = { editing: true, hasStoredKey: true };

function resource(patch: Partial<ResourceFormValues> = {}): ResourceFormValues {
  return {
    ...EMPTY_RESOURCE,
    friendly_name: 'GPT-4o Sweden',
    deployment_name: 'gpt-4o',
    endpoint_url: 'https://my-aoai.openai.azure.com',
    key: 'secret',
    region: 'swedencentral',
    ...patch,
  };
}

describe('Foundry agent endpoints', () => {
  it('accept the project endpoint, with or without a trailing slash', () => {
    expect(foundryAgentEndpointError('https://myhub.services.ai.azure.com/api/projects/hackathon')).toBeNull();
    expect(foundryAgentEndpointError('https://myhub.services.ai.azure.com/api/projects/hackathon/')).toBeNull();
  });

  it('refuse the account address and show the right form, for this account too', () => {
    const error = foundryAgentEndpointError('https://myhub.cognitiveservices.azure.com/');
    expect(error).toContain(FORM);
    expect(error).toContain('https://myhub.services.ai.azure.com/api/projects/<project>');
  });

  it('refuse a services host without /api/projects/<project>, or with more path', () => {
    expect(foundryAgentEndpointError('https://myhub.services.ai.azure.com')).toContain(FORM);
    expect(foundryAgentEndpointError('https://myhub.services.ai.azure.com/api/projects')).toContain(FORM);
    expect(foundryAgentEndpointError('https://myhub.services.ai.azure.com/api/projects/a/b')).toContain(FORM);
    expect(foundryAgentEndpointError('https://myhub.openai.azure.com/api/projects/a')).toContain(FORM);
  });

  it('leave a loopback http:// address to the control plane (allowed only with insecure upstreams)', () => {
    expect(foundryAgentEndpointError('http://127.0.0.1:9100/api/projects/p')).toBeNull();
    expect(endpointError('http://127.0.0.1:9100/agents', 'foundry-agent')).toBeNull();
  });

  it('apply only to the Foundry_Agent type', () => {
    expect(endpointError('https://myhub.cognitiveservices.azure.com/', 'foundry-model')).toBeNull();
    expect(endpointError('https://myhub.cognitiveservices.azure.com/', 'foundry-agent')).toContain(FORM);
  });
});

describe('endpoint rules of every type', () => {
  it.each([
    ['', /Required/],
    ['my-aoai.openai.azure.com', /absolute URL/],
    ['ftp://x.example', /absolute URL/],
    ['https://x.openai.azure.com/?a=b', /query string/],
    ['https://user:pw@x.openai.azure.com', /credentials/],
  ])('%s is refused', (url, message) => {
    expect(endpointError(url, 'foundry-model')).toMatch(message);
  });
});

describe('the endpoint table shared with the control plane', () => {
  const judged = endpointCases.cases.filter((c) => c.console !== false);
  it.each(judged.map((c) => [c.endpoint, c.type, c.valid] as const))('%s (%s) valid: %s', (endpoint, type, valid) => {
    expect(endpointError(endpoint, type as ModelType) === null).toBe(valid);
  });
});

describe('resource rules', () => {
  it('need a key unless Use Managed Identity is checked', () => {
    expect(validateResource(resource({ key: '' }), create).key).toBe(KEY_REQUIRED);
    expect(validateResource(resource({ key: '   ' }), create).key).toBe(KEY_REQUIRED);
    expect(validateResource(resource({ key: '', use_managed_identity: true }), create)).toEqual({});
    expect(validateResource(resource(), create)).toEqual({});
  });

  it('on edit, a blank key keeps the stored one; without one stored it is required', () => {
    expect(validateResource(resource({ key: '' }), editWithKey)).toEqual({});
    expect(validateResource(resource({ key: '' }), { editing: true, hasStoredKey: false }).key).toBe(KEY_REQUIRED);
  });

  it('refuse managed identity for MCP servers', () => {
    const errors = validateResource(resource({ model_type: 'mcp-server', use_managed_identity: true, key: '' }), create);
    expect(errors.use_managed_identity).toMatch(/MCP servers/);
  });

  it('need names, and a deployment name without / or ?', () => {
    const errors = validateResource(resource({ friendly_name: ' ', deployment_name: 'a/b' }), create);
    expect(errors.friendly_name).toMatch(/Required/);
    expect(errors.deployment_name).toMatch(/“\/” or “\?”/);
  });

  it('need a GUID as the user-assigned identity client ID', () => {
    const mi = { use_managed_identity: true, key: '' };
    expect(validateResource(resource({ ...mi, identity_client_id: 'not-a-guid' }), create).identity_client_id).toMatch(/GUID/);
    expect(validateResource(resource({ ...mi, identity_client_id: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd' }), create)).toEqual({});
  });
});

describe('the resource request body', () => {
  it('carries a typed key, trimmed', () => {
    expect(toResourceInput(resource({ key: ' k ' })).key).toBe('k');
  });

  it('omits a blank key (on edit: keep the stored one)', () => {
    const body = toResourceInput(resource({ key: '' }));
    expect('key' in body).toBe(false);
  });

  it('never sends a key with managed identity (the control plane then drops a stored one)', () => {
    expect('key' in toResourceInput(resource({ use_managed_identity: true, key: 'typed' }))).toBe(false);
    expect('key' in toResourceInput(resource({ use_managed_identity: true, key: '' }))).toBe(false);
  });

  it('carries use_max_completion_tokens, read back from the API (missing: off)', () => {
    expect(toResourceInput(resource()).use_max_completion_tokens).toBe(false);
    expect(toResourceInput(resource({ use_max_completion_tokens: true })).use_max_completion_tokens).toBe(true);
    const stored = {
      id: 'r1',
      ...toResourceInput(resource()),
      has_key: true,
      use_max_completion_tokens: true,
    };
    expect(resourceToForm(stored).use_max_completion_tokens).toBe(true);
    expect(resourceToForm({ ...stored, use_max_completion_tokens: undefined }).use_max_completion_tokens).toBe(false);
  });

  it('sends the identity client ID only with managed identity', () => {
    const id = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd';
    expect(toResourceInput(resource({ identity_client_id: id })).identity_client_id).toBeNull();
    expect(toResourceInput(resource({ use_managed_identity: true, identity_client_id: id })).identity_client_id).toBe(id);
  });
});

function event(patch: Partial<EventFormValues> = {}): EventFormValues {
  return {
    name: 'Spring hackathon',
    starts_at: '2026-03-28T09:00',
    ends_at: '2026-03-28T17:00',
    time_zone: 'Europe/Paris',
    max_token_cap: '4096',
    daily_request_cap: '',
    daily_token_cap: '50000',
    token_budget: '',
    organizer_name: 'Ada',
    organizer_email: 'ada@example.com',
    active: true,
    resource_ids: ['r1'],
    ...patch,
  };
}

describe('event rules', () => {
  it('accept a valid event', () => {
    expect(validateEvent(event())).toEqual({});
  });

  it('need the end after the start', () => {
    expect(validateEvent(event({ ends_at: '2026-03-28T09:00' })).ends_at).toMatch(/after the start/);
  });

  it('need a known time zone', () => {
    expect(validateEvent(event({ time_zone: 'Mars/Olympus' })).time_zone).toBeDefined();
  });

  it('refuse a time the clocks skip for daylight saving', () => {
    const errors = validateEvent(event({ starts_at: '2026-03-29T02:30', ends_at: '2026-03-29T10:00' }));
    expect(errors.starts_at).toMatch(/does not exist in Europe\/Paris/i);
  });

  it('need whole-number caps and an email address', () => {
    const errors = validateEvent(event({ max_token_cap: '-1', daily_request_cap: '1.5', organizer_email: 'ada' }));
    expect(errors.max_token_cap).toMatch(/whole number/);
    expect(errors.daily_request_cap).toMatch(/whole number/);
    expect(errors.organizer_email).toMatch(/email/);
    expect(validateEvent(event({ max_token_cap: '4294967296' })).max_token_cap).toBeDefined();
  });

  it('need whole-number token caps, 0 or more, beyond 32 bits but exact in JSON', () => {
    const errors = validateEvent(event({ daily_token_cap: '-5', token_budget: '1e6' }));
    expect(errors.daily_token_cap).toMatch(/whole number from 0 .*no cap/);
    expect(errors.token_budget).toMatch(/whole number from 0 .*no budget/);
    expect(validateEvent(event({ daily_token_cap: '2.5' })).daily_token_cap).toBeDefined();
    expect(validateEvent(event({ token_budget: ' 10 000 ' })).token_budget).toBeDefined();
    // 64-bit in the API: larger than the request caps' 4294967295, up to 2^53 - 1.
    expect(validateEvent(event({ daily_token_cap: '5000000000', token_budget: '9007199254740991' }))).toEqual({});
    expect(validateEvent(event({ token_budget: '9007199254740992' })).token_budget).toBeDefined();
    expect(validateEvent(event({ daily_token_cap: '0', token_budget: ' 0 ' }))).toEqual({});
    expect(toEventInput(event({ daily_token_cap: ' 250000 ', token_budget: '1000000' }))).toMatchObject({
      daily_token_cap: 250000,
      token_budget: 1000000,
    });
  });

  it('read token caps from the API, missing ones (an older control plane) as 0', () => {
    const api = {
      id: 'e1',
      ...toEventInput(event()),
      starts_at: '2026-03-28T09:00:00+01:00',
      ends_at: '2026-03-28T17:00:00+01:00',
      daily_token_cap: 1000,
      token_budget: 20000,
    };
    expect(eventToForm(api)).toMatchObject({ daily_token_cap: '1000', token_budget: '20000' });
    const { daily_token_cap: _a, token_budget: _b, ...old } = api;
    expect(eventToForm(old as typeof api)).toMatchObject({ daily_token_cap: '0', token_budget: '0' });
  });

  it('send local times with their zone, and blank caps as 0 (no cap)', () => {
    expect(toEventInput(event())).toEqual({
      name: 'Spring hackathon',
      starts_at: '2026-03-28T09:00',
      ends_at: '2026-03-28T17:00',
      time_zone: 'Europe/Paris',
      max_token_cap: 4096,
      daily_request_cap: 0,
      daily_token_cap: 50000,
      token_budget: 0,
      organizer_name: 'Ada',
      organizer_email: 'ada@example.com',
      active: true,
      resource_ids: ['r1'],
    });
  });

  it('need a user ID without / of at most 256 characters', () => {
    expect(validateUserId('')).toMatch(/Required/);
    expect(validateUserId('a/b')).toMatch(/without/);
    expect(validateUserId('x'.repeat(257))).toMatch(/256/);
    expect(validateUserId('ada@example.com')).toBeNull();
  });
});

describe('time zones', () => {
  it('read a local time in the event zone', () => {
    expect(zonedToInstant('2026-03-28T09:00', 'Europe/Paris')?.toISOString()).toBe('2026-03-28T08:00:00.000Z');
    expect(zonedToInstant('2026-07-01T09:00', 'Europe/Paris')?.toISOString()).toBe('2026-07-01T07:00:00.000Z');
    expect(zonedToInstant('2026-03-28T09:00', 'Asia/Kolkata')?.toISOString()).toBe('2026-03-28T03:30:00.000Z');
  });

  it('take the first of a repeated hour and refuse a skipped one', () => {
    expect(zonedToInstant('2026-10-25T02:30', 'Europe/Paris')?.toISOString()).toBe('2026-10-25T00:30:00.000Z');
    expect(zonedToInstant('2026-03-29T02:30', 'Europe/Paris')).toBeNull();
  });

  it('edit the wall-clock part of the API’s RFC 3339 answer', () => {
    expect(localInputFromApi('2026-03-28T09:00:00+01:00')).toBe('2026-03-28T09:00');
  });

  it('tell live, upcoming, ended and inactive events apart', () => {
    const e = { active: true, starts_at: '2026-03-28T09:00:00+01:00', ends_at: '2026-03-28T17:00:00+01:00' };
    expect(eventPhase(e, new Date('2026-03-28T07:59:00Z'))).toBe('upcoming');
    expect(eventPhase(e, new Date('2026-03-28T08:00:00Z'))).toBe('live');
    expect(eventPhase(e, new Date('2026-03-28T16:00:00Z'))).toBe('ended');
    expect(eventPhase({ ...e, active: false }, new Date('2026-03-28T10:00:00Z'))).toBe('inactive');
  });
});

describe('server refusals', () => {
  it('go next to the field they name, without the field prefix', () => {
    const err = new ApiError(400, 'Bad Request', 'endpoint_url: a Foundry agent resource needs the project endpoint', 'endpoint_url');
    expect(fieldErrorsFrom(err, ['endpoint_url'] as const)).toEqual({
      fieldErrors: { endpoint_url: 'a Foundry agent resource needs the project endpoint' },
      general: null,
    });
  });

  it('without a known field, become a general message', () => {
    const err = new ApiError(409, 'Conflict', 'in use by event Spring hackathon');
    expect(fieldErrorsFrom(err, ['endpoint_url'] as const)).toEqual({ fieldErrors: {}, general: 'in use by event Spring hackathon' });
  });
});
