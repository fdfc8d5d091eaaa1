// The admin API client: relative URLs on the console's own origin, the admin token as a bearer
// header (never in a URL), and one error type that keeps the API's `field` so forms can show a
// server-side refusal next to the input it concerns.

import type {
  AiEvent,
  Attendee,
  EventInput,
  IssuedAttendee,
  Resource,
  ResourceInput,
  UsageQuery,
  UsageReport,
} from './types';

export const API_BASE = '/admin/api/v1';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The input the API refused, e.g. `endpoint_url`. */
  readonly field?: string;

  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }

  /** The message without the API's `field: ` prefix, for display next to that field. */
  get fieldMessage(): string {
    const prefix = this.field ? `${this.field}: ` : '';
    return prefix && this.message.startsWith(prefix) ? this.message.slice(prefix.length) : this.message;
  }
}

type Handler = () => void;
let onUnauthorized: Handler | null = null;

/** The session registers here: a 401 on an authenticated call ends the session. */
export function setUnauthorizedHandler(handler: Handler | null): void {
  onUnauthorized = handler;
}

let currentToken: string | null = null;

export function setToken(token: string | null): void {
  currentToken = token;
}

interface RequestOptions {
  token?: string;
  body?: unknown;
  /** Whether a 401 ends the session (false while signing in). */
  endsSession?: boolean;
}

/** Sends one call with the bearer token; answers the response when it is a success. */
async function send(method: string, path: string, options: RequestOptions, accept: string): Promise<Response> {
  const token = options.token ?? currentToken;
  const headers: Record<string, string> = { accept };
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(`${API_BASE}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, 'Unreachable', 'Cannot reach the control plane. Is it running, and is this page served by it?');
  }
  if (response.ok) return response;
  const text = await response.text();
  let payload: unknown = undefined;
  try {
    payload = text ? JSON.parse(text) : undefined;
  } catch {
    payload = undefined;
  }
  const err = (payload as { error?: { code?: string; message?: string; field?: string } } | undefined)?.error;
  const apiError = new ApiError(
    response.status,
    err?.code ?? response.statusText ?? 'Error',
    err?.message ??
      (response.status >= 500
        ? `The control plane answered HTTP ${response.status}: is it running and reachable?`
        : `The control plane answered HTTP ${response.status}.`),
    err?.field,
  );
  if (response.status === 401 && options.endsSession !== false && onUnauthorized) onUnauthorized();
  throw apiError;
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await send(method, path, options, 'application/json');
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined as T;
  }
}

/** The query string of GET /usage (`group_by` comma-separated; unset filters left out). */
export function usageSearch(query: UsageQuery, format?: 'json' | 'csv'): string {
  const params = new URLSearchParams();
  for (const key of ['event_id', 'resource_id', 'user_id', 'from', 'to', 'granularity'] as const) {
    const value = query[key];
    if (value) params.set(key, value);
  }
  if (query.group_by?.length) params.set('group_by', query.group_by.join(','));
  if (format) params.set('format', format);
  return params.toString();
}

const enc = encodeURIComponent;

export const api = {
  /** Checks a token without touching the session: resolves when the API accepts it. */
  checkToken: (token: string) =>
    request<Resource[]>('GET', '/resources', { token, endsSession: false }).then(() => undefined),

  listResources: () => request<Resource[]>('GET', '/resources'),
  getResource: (id: string) => request<Resource>('GET', `/resources/${enc(id)}`),
  createResource: (input: ResourceInput) => request<Resource>('POST', '/resources', { body: input }),
  updateResource: (id: string, input: ResourceInput) =>
    request<Resource>('PUT', `/resources/${enc(id)}`, { body: input }),
  deleteResource: (id: string) => request<void>('DELETE', `/resources/${enc(id)}`),

  listEvents: () => request<AiEvent[]>('GET', '/events'),
  getEvent: (id: string) => request<AiEvent>('GET', `/events/${enc(id)}`),
  createEvent: (input: EventInput) => request<AiEvent>('POST', '/events', { body: input }),
  updateEvent: (id: string, input: EventInput) => request<AiEvent>('PUT', `/events/${enc(id)}`, { body: input }),
  deleteEvent: (id: string) => request<void>('DELETE', `/events/${enc(id)}`),

  listAttendees: (eventId: string) => request<Attendee[]>('GET', `/events/${enc(eventId)}/attendees`),
  addAttendee: (eventId: string, userId: string) =>
    request<IssuedAttendee>('POST', `/events/${enc(eventId)}/attendees`, { body: { user_id: userId } }),
  setAttendeeActive: (eventId: string, userId: string, active: boolean) =>
    request<Attendee>('PUT', `/events/${enc(eventId)}/attendees/${enc(userId)}`, { body: { active } }),

  usage: (query: UsageQuery) => request<UsageReport>('GET', `/usage?${usageSearch(query)}`),
  /** The same rows as CSV; fetched with the bearer header (a plain link could not carry it). */
  usageCsv: async (query: UsageQuery): Promise<Blob> => {
    const response = await send('GET', `/usage?${usageSearch(query, 'csv')}`, {}, 'text/csv');
    return response.blob();
  },
};
