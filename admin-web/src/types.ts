// The admin API's shapes (control-plane/src/admin/openapi.json).

export type ModelType =
  | 'foundry-model'
  | 'foundry-agent'
  | 'azure-ai-search'
  | 'ai-inference'
  | 'mcp-server';

export interface ManagedIdentityStatus {
  identity?: string;
  scope: string | null;
  token_expires_at?: string | null;
  credential?: string | null;
  last_error?: string | null;
  next_attempt_at?: string | null;
  active?: boolean;
}

export interface Resource {
  id: string;
  friendly_name: string;
  deployment_name: string;
  model_type: ModelType;
  endpoint_url: string;
  region: string;
  use_managed_identity: boolean;
  identity_client_id: string | null;
  active: boolean;
  has_key: boolean;
  /** Chat calls have `max_tokens` renamed `max_completion_tokens` (GPT-5, o-series). */
  use_max_completion_tokens?: boolean;
  managed_identity?: ManagedIdentityStatus;
}

/** What POST/PUT /resources take. `key` omitted on PUT keeps the stored key. */
export interface ResourceInput {
  friendly_name: string;
  deployment_name: string;
  model_type: ModelType;
  endpoint_url: string;
  key?: string | null;
  region: string;
  use_managed_identity: boolean;
  identity_client_id: string | null;
  active: boolean;
  use_max_completion_tokens: boolean;
}

export interface EventInput {
  name: string;
  /** A local date-time (`2026-03-28T09:00`) read in `time_zone`, or RFC 3339. */
  starts_at: string;
  ends_at: string;
  time_zone: string;
  max_token_cap: number;
  daily_request_cap: number;
  /** Tokens per attendee per UTC day; 0: no cap. */
  daily_token_cap: number;
  /** Tokens for the whole event, all attendees together; 0: no budget. */
  token_budget: number;
  organizer_name: string;
  organizer_email: string;
  active: boolean;
  resource_ids: string[];
}

/** An event as the API answers: `starts_at`/`ends_at` in RFC 3339 with the zone's offset. */
export interface AiEvent extends EventInput {
  id: string;
}

export interface Attendee {
  event_id: string;
  user_id: string;
  active: boolean;
  created_at: string;
}

export interface IssuedAttendee extends Attendee {
  /** Returned by the create call only; never again. */
  api_key: string;
}

export type Granularity = 'hour' | 'day';
export type UsageDimension = 'event' | 'resource' | 'attendee';

/** The filters of GET /usage; `from` inclusive, `to` exclusive (RFC 3339). */
export interface UsageQuery {
  event_id?: string;
  resource_id?: string;
  user_id?: string;
  from?: string;
  to?: string;
  granularity?: Granularity;
  group_by?: UsageDimension[];
}

export interface UsageCounts {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cached_tokens: number;
}

/** One bucket (hour or UTC day) of one group; dimensions not grouped on are null. */
export interface UsageRow extends UsageCounts {
  bucket: string;
  event_id: string | null;
  resource_id: string | null;
  deployment_name: string | null;
  user_id: string | null;
}

export interface UsageReport {
  rows: UsageRow[];
  totals: UsageCounts;
}
