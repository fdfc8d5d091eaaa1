import { vi } from 'vitest';

export interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
}

/** `body` is sent as JSON; `text` as is, with `contentType` (e.g. a CSV answer). */
type Answer = { status: number; body?: unknown; text?: string; contentType?: string };
type Responder = (call: Call) => Answer | undefined;

/** Replaces fetch with a scripted admin API; records every call. */
export function mockApi(respond: Responder) {
  const calls: Call[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const call: Call = {
      method: init?.method ?? 'GET',
      url: String(input),
      headers: (init?.headers ?? {}) as Record<string, string>,
      body: init?.body ? JSON.parse(String(init.body)) : undefined,
    };
    calls.push(call);
    const answer = respond(call) ?? { status: 404, body: { error: { code: 'Not Found', message: `no mock for ${call.method} ${call.url}`, status: 404 } } };
    const text = answer.text ?? (answer.body === undefined ? '' : JSON.stringify(answer.body));
    return new Response(answer.status === 204 ? null : text, {
      status: answer.status,
      headers: { 'content-type': answer.contentType ?? 'application/json' },
    });
  });
  vi.stubGlobal('fetch', fetchMock);
  return calls;
}

export function apiError(status: number, message: string, field?: string) {
  return { status, body: { error: { code: 'Error', message, status, ...(field ? { field } : {}) } } };
}
