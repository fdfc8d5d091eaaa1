// The form rules, the same ones the admin API enforces (control-plane/src/catalog/service.rs and
// endpoint.rs), so the forms can say what is wrong before saving. The API stays the authority: a
// field it refuses anyway is shown next to that field too (see `fieldErrorsFrom`).

import { ApiError } from './api';
import type { AiEvent, EventInput, ModelType, Resource, ResourceInput } from './types';
import { browserTimeZone, isValidTimeZone, localInputFromApi, zonedToInstant } from './time';

export type FieldErrors<K extends string = string> = Partial<Record<K, string>>;

export const MODEL_TYPES: { value: ModelType; label: string }[] = [
  { value: 'foundry-model', label: 'Foundry_Model' },
  { value: 'foundry-agent', label: 'Foundry_Agent' },
  { value: 'azure-ai-search', label: 'Azure_AI_Search' },
  { value: 'ai-inference', label: 'AI_Inference' },
  { value: 'mcp-server', label: 'MCP_Server' },
];

export function modelTypeLabel(type: string): string {
  return MODEL_TYPES.find((t) => t.value === type)?.label ?? type;
}

/** Types with an Entra ID scope; MCP servers have none, so they always use a key. */
export function managedIdentityAvailable(type: ModelType): boolean {
  return type !== 'mcp-server';
}

export const FOUNDRY_AGENT_ENDPOINT_FORM = 'https://<account>.services.ai.azure.com/api/projects/<project>';
const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `https://<account>.services.ai.azure.com/api/projects/<project>` (a trailing slash is fine). */
function isFoundryProjectEndpoint(url: URL): boolean {
  const segments = url.pathname.split('/').filter(Boolean);
  return (
    url.protocol === 'https:' &&
    url.hostname.toLowerCase().endsWith('.services.ai.azure.com') &&
    segments.length === 3 &&
    segments[0] === 'api' &&
    segments[1] === 'projects'
  );
}

/**
 * A Foundry agent resource must point at its project endpoint. Checked for https:// addresses;
 * a plain http:// one (a local mock, admitted only with AIPROXY_ALLOW_INSECURE_UPSTREAMS) is left
 * to the control plane.
 */
export function foundryAgentEndpointError(raw: string): string | null {
  const text = raw.trim();
  if (!/^https:\/\//i.test(text)) return null;
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch {
    url = null;
  }
  if (url && isFoundryProjectEndpoint(url)) return null;
  let suggestion = '';
  const account = url?.hostname.split('.')[0] ?? '';
  if (url && url.hostname.includes('.') && /^[a-z0-9][a-z0-9-]*$/i.test(account)) {
    suggestion = ` For this account: https://${account}.services.ai.azure.com/api/projects/<project>.`;
  }
  return `A Foundry agent endpoint is the project endpoint: ${FOUNDRY_AGENT_ENDPOINT_FORM}.${suggestion}`;
}

/** The endpoint rules of every type (the control plane's validate_endpoint). */
export function endpointError(raw: string, type: ModelType): string | null {
  const url = raw.trim();
  if (!url) return 'Required: the upstream address, such as https://<name>.openai.azure.com.';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'Must be an absolute URL such as https://<name>.openai.azure.com.';
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    return 'Must be an absolute URL such as https://<name>.openai.azure.com.';
  }
  if (!parsed.hostname) return 'Must name a host, such as https://<name>.openai.azure.com.';
  if (parsed.search || url.includes('#')) return 'Must not carry a query string or fragment.';
  if (parsed.username || parsed.password) return 'Must not carry credentials.';
  if (type === 'foundry-agent') return foundryAgentEndpointError(url);
  return null;
}

export type ResourceField = keyof ResourceInput;

export interface ResourceFormValues {
  friendly_name: string;
  deployment_name: string;
  model_type: ModelType;
  endpoint_url: string;
  key: string;
  region: string;
  use_managed_identity: boolean;
  identity_client_id: string;
  active: boolean;
  use_max_completion_tokens: boolean;
}

export interface ResourceFormContext {
  /** Editing an existing resource (PUT), where a blank key keeps the stored one. */
  editing: boolean;
  hasStoredKey: boolean;
}

export const EMPTY_RESOURCE: ResourceFormValues = {
  friendly_name: '',
  deployment_name: '',
  model_type: 'foundry-model',
  endpoint_url: '',
  key: '',
  region: '',
  use_managed_identity: false,
  identity_client_id: '',
  active: true,
  use_max_completion_tokens: false,
};

export function resourceToForm(r: Resource): ResourceFormValues {
  return {
    friendly_name: r.friendly_name,
    deployment_name: r.deployment_name,
    model_type: r.model_type,
    endpoint_url: r.endpoint_url,
    key: '',
    region: r.region ?? '',
    use_managed_identity: r.use_managed_identity,
    identity_client_id: r.identity_client_id ?? '',
    active: r.active,
    use_max_completion_tokens: r.use_max_completion_tokens ?? false,
  };
}

export const KEY_REQUIRED = 'Required unless “Use Managed Identity” is checked.';
export const KEY_NOT_USED =
  'Not used: with managed identity the proxy gets an Entra ID token for this resource and stores no key.';
export const STORED_KEY_DROPPED =
  'Saving with managed identity removes the stored key: a managed-identity resource stores none. To go back to a key, give it again.';
export const MI_NOT_AVAILABLE = 'Not available for MCP servers (they have no Entra ID scope): give a key instead.';

/** A key is needed when managed identity is off and none is typed or (on edit) kept. */
export function keyIsMissing(v: ResourceFormValues, ctx: ResourceFormContext): boolean {
  if (v.use_managed_identity) return false;
  if (v.key.trim()) return false;
  return !(ctx.editing && ctx.hasStoredKey);
}

export function validateResource(v: ResourceFormValues, ctx: ResourceFormContext): FieldErrors<ResourceField> {
  const errors: FieldErrors<ResourceField> = {};
  if (!v.friendly_name.trim()) errors.friendly_name = 'Required: the name admins and error messages show.';
  const deployment = v.deployment_name.trim();
  if (!deployment) errors.deployment_name = 'Required: the deployment’s name as Azure shows it.';
  else if (/[/?]/.test(deployment)) {
    errors.deployment_name = 'Must not contain “/” or “?”: it is the deployment’s name as Azure shows it.';
  }
  if (!MODEL_TYPES.some((t) => t.value === v.model_type)) errors.model_type = 'Pick a type.';
  const endpoint = endpointError(v.endpoint_url, v.model_type);
  if (endpoint) errors.endpoint_url = endpoint;
  if (v.use_managed_identity && !managedIdentityAvailable(v.model_type)) {
    errors.use_managed_identity = MI_NOT_AVAILABLE;
  }
  if (keyIsMissing(v, ctx)) errors.key = KEY_REQUIRED;
  const clientId = v.identity_client_id.trim();
  if (v.use_managed_identity && clientId && !GUID_RE.test(clientId)) {
    errors.identity_client_id = 'Must be the client ID (a GUID) of a user-assigned managed identity, or blank.';
  }
  return errors;
}

/**
 * The request body. The key is sent only when typed, and never with managed identity on (the
 * control plane then drops any stored key); on edit an omitted key keeps the stored one.
 */
export function toResourceInput(v: ResourceFormValues): ResourceInput {
  const input: ResourceInput = {
    friendly_name: v.friendly_name.trim(),
    deployment_name: v.deployment_name.trim(),
    model_type: v.model_type,
    endpoint_url: v.endpoint_url.trim(),
    region: v.region.trim(),
    use_managed_identity: v.use_managed_identity,
    identity_client_id: v.use_managed_identity && v.identity_client_id.trim() ? v.identity_client_id.trim() : null,
    active: v.active,
    use_max_completion_tokens: v.use_max_completion_tokens,
  };
  const key = v.key.trim();
  if (key && !v.use_managed_identity) input.key = key;
  return input;
}

export type EventField = keyof EventInput;

export interface EventFormValues {
  name: string;
  starts_at: string;
  ends_at: string;
  time_zone: string;
  max_token_cap: string;
  daily_request_cap: string;
  daily_token_cap: string;
  token_budget: string;
  organizer_name: string;
  organizer_email: string;
  active: boolean;
  resource_ids: string[];
}

export function emptyEvent(timeZone: string = browserTimeZone()): EventFormValues {
  return {
    name: '',
    starts_at: '',
    ends_at: '',
    time_zone: timeZone,
    max_token_cap: '0',
    daily_request_cap: '0',
    daily_token_cap: '0',
    token_budget: '0',
    organizer_name: '',
    organizer_email: '',
    active: true,
    resource_ids: [],
  };
}

export function eventToForm(e: AiEvent): EventFormValues {
  return {
    name: e.name,
    starts_at: localInputFromApi(e.starts_at),
    ends_at: localInputFromApi(e.ends_at),
    time_zone: e.time_zone,
    max_token_cap: String(e.max_token_cap ?? 0),
    daily_request_cap: String(e.daily_request_cap ?? 0),
    daily_token_cap: String(e.daily_token_cap ?? 0),
    token_budget: String(e.token_budget ?? 0),
    organizer_name: e.organizer_name ?? '',
    organizer_email: e.organizer_email ?? '',
    active: e.active,
    resource_ids: [...(e.resource_ids ?? [])],
  };
}

const LOCAL_INPUT_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/;
const MAX_U32 = 4294967295;
/** Token caps are 64-bit in the API; JSON numbers stay exact up to 2^53 - 1. */
const MAX_TOKENS = Number.MAX_SAFE_INTEGER;

function capError(raw: string, max: number = MAX_U32, none = 'no cap'): string | null {
  const s = raw.trim();
  if (!s) return null;
  if (!/^\d+$/.test(s) || Number(s) > max) return `A whole number from 0 to ${max} (0: ${none}).`;
  return null;
}

export function validateEvent(v: EventFormValues): FieldErrors<EventField> {
  const errors: FieldErrors<EventField> = {};
  if (!v.name.trim()) errors.name = 'Required.';
  if (!isValidTimeZone(v.time_zone)) errors.time_zone = 'Pick a time zone.';
  if (!v.starts_at) errors.starts_at = 'Required: when attendees’ keys start working.';
  else if (!LOCAL_INPUT_RE.test(v.starts_at)) errors.starts_at = 'A date and time, such as 2026-03-28T09:00.';
  if (!v.ends_at) errors.ends_at = 'Required: when attendees’ keys stop working.';
  else if (!LOCAL_INPUT_RE.test(v.ends_at)) errors.ends_at = 'A date and time, such as 2026-03-28T17:00.';
  if (!errors.time_zone) {
    for (const f of ['starts_at', 'ends_at'] as const) {
      if (!errors[f] && zonedToInstant(v[f], v.time_zone) === null) {
        errors[f] = `Does not exist in ${v.time_zone}: the clocks skip it for daylight saving; pick a time outside the gap.`;
      }
    }
  }
  // Both are wall-clock times in the same zone, so their text order is their time order.
  if (!errors.starts_at && !errors.ends_at && v.ends_at <= v.starts_at) errors.ends_at = 'Must be after the start.';
  const maxTokens = capError(v.max_token_cap);
  if (maxTokens) errors.max_token_cap = maxTokens;
  const daily = capError(v.daily_request_cap);
  if (daily) errors.daily_request_cap = daily;
  const dailyTokens = capError(v.daily_token_cap, MAX_TOKENS);
  if (dailyTokens) errors.daily_token_cap = dailyTokens;
  const budget = capError(v.token_budget, MAX_TOKENS, 'no budget');
  if (budget) errors.token_budget = budget;
  const email = v.organizer_email.trim();
  if (email && !/^[^\s@]+@[^\s@]+$/.test(email)) errors.organizer_email = 'Must be an email address.';
  return errors;
}

export function toEventInput(v: EventFormValues): EventInput {
  return {
    name: v.name.trim(),
    starts_at: v.starts_at,
    ends_at: v.ends_at,
    time_zone: v.time_zone,
    max_token_cap: Number(v.max_token_cap.trim() || 0),
    daily_request_cap: Number(v.daily_request_cap.trim() || 0),
    daily_token_cap: Number(v.daily_token_cap.trim() || 0),
    token_budget: Number(v.token_budget.trim() || 0),
    organizer_name: v.organizer_name.trim(),
    organizer_email: v.organizer_email.trim(),
    active: v.active,
    resource_ids: v.resource_ids,
  };
}

/** A refusal from the API, placed next to the field it names when the form has that field. */
export function fieldErrorsFrom<K extends string>(
  error: unknown,
  fields: readonly K[],
): { fieldErrors: FieldErrors<K>; general: string | null } {
  if (error instanceof ApiError && error.field && (fields as readonly string[]).includes(error.field)) {
    return { fieldErrors: { [error.field as K]: error.fieldMessage } as FieldErrors<K>, general: null };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { fieldErrors: {}, general: message };
}

export const USER_ID_RULE = 'An email address or a login, at most 256 characters, without “/”.';

export function validateUserId(raw: string): string | null {
  const s = raw.trim();
  if (!s) return 'Required: ' + USER_ID_RULE;
  if (s.length > 256 || s.includes('/')) return USER_ID_RULE;
  return null;
}
