//! Catalog types as the control plane stores them.

use std::fmt;

use crate::secrets::redacted_bytes;

/// What kind of upstream a resource is; decides routing and the managed-identity scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelType {
    FoundryModel,
    FoundryAgent,
    AzureAiSearch,
    AiInference,
    McpServer,
}

impl ModelType {
    pub const ALL: [ModelType; 5] = [
        ModelType::FoundryModel,
        ModelType::FoundryAgent,
        ModelType::AzureAiSearch,
        ModelType::AiInference,
        ModelType::McpServer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::FoundryModel => "foundry-model",
            ModelType::FoundryAgent => "foundry-agent",
            ModelType::AzureAiSearch => "azure-ai-search",
            ModelType::AiInference => "ai-inference",
            ModelType::McpServer => "mcp-server",
        }
    }

    /// Accepts our spellings and the reference proxy's (`Foundry_Model`, `Foundry_Agent`, …),
    /// case-insensitively, with `_` and `-` interchangeable.
    pub fn parse(input: &str) -> Option<Self> {
        let normalized = input.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|t| t.as_str() == normalized)
    }
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, PartialEq)]
pub struct Resource {
    pub id: String,
    pub friendly_name: String,
    pub deployment_name: String,
    pub model_type: ModelType,
    pub endpoint_url: String,
    pub region: String,
    pub use_managed_identity: bool,
    pub identity_client_id: Option<String>,
    pub active: bool,
    /// Chat calls have `max_tokens` renamed `max_completion_tokens` (reasoning models refuse it).
    pub use_max_completion_tokens: bool,
    /// The upstream key, AES-256-GCM sealed (see `secrets::KeyCipher`). Never leaves the control
    /// plane except decrypted on the edge sync stream.
    pub encrypted_key: Option<Vec<u8>>,
}

/// Never prints the (sealed) key: a stray `?resource` in a log line must not carry it.
impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("id", &self.id)
            .field("friendly_name", &self.friendly_name)
            .field("deployment_name", &self.deployment_name)
            .field("model_type", &self.model_type)
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("use_managed_identity", &self.use_managed_identity)
            .field("identity_client_id", &self.identity_client_id)
            .field("active", &self.active)
            .field("use_max_completion_tokens", &self.use_max_completion_tokens)
            .field(
                "encrypted_key",
                &format_args!("{}", redacted_bytes(&self.encrypted_key)),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub name: String,
    /// Unix milliseconds, UTC.
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    /// IANA zone name the window was given in; used to display it.
    pub time_zone: String,
    /// 0: no cap.
    pub max_token_cap: u32,
    pub daily_request_cap: u32,
    /// Tokens per attendee per UTC day; 0: no cap.
    pub daily_token_cap: u64,
    /// Tokens for the whole event, all attendees together; 0: no budget.
    pub token_budget: u64,
    pub organizer_name: String,
    pub organizer_email: String,
    pub active: bool,
    pub resource_ids: Vec<String>,
}

#[derive(Clone, PartialEq)]
pub struct Attendee {
    pub event_id: String,
    pub user_id: String,
    /// HMAC-SHA-256 of the key (`secrets::KeyHasher`); the key itself is never stored.
    pub key_hash: Vec<u8>,
    pub active: bool,
    pub created_at_ms: i64,
}

/// Never prints the key hash (it identifies the key for anyone who holds the hash secret).
impl fmt::Debug for Attendee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attendee")
            .field("event_id", &self.event_id)
            .field("user_id", &self.user_id)
            .field("key_hash", &format_args!("***"))
            .field("active", &self.active)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// Who created a Foundry object (agent, thread, file, …) through the proxy. Not catalog state: it
/// grows with what attendees do, so edges look records up on demand instead of holding them all.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundryObject {
    pub kind: String,
    pub id: String,
    pub event_id: String,
    pub user_id: String,
    /// The resource the object lives on upstream.
    pub resource_id: String,
    /// Unix ms when it was recorded.
    pub created_at_ms: i64,
    /// Unix ms after which the record no longer counts; 0: never.
    pub expires_at_ms: i64,
    /// Non-empty for a second name of an object (an agent's name beside its id): the id it names.
    pub alias_of: String,
}

impl FoundryObject {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }
}

/// One proxied request as an edge metered it (`UsageStore::apply_usage_batch`). Tokens are what
/// the upstream reported; usage is stored as hourly sums, not per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRecord {
    pub event_id: String,
    pub user_id: String,
    /// Empty when no upstream was called.
    pub resource_id: String,
    pub deployment_name: String,
    /// HTTP status; 400 and above counts as an error.
    pub status: u32,
    /// Unix ms when the request arrived: decides its hour.
    pub started_at_ms: i64,
    pub duration_ms: u64,
    pub ttfb_ms: u64,
    pub streamed: bool,
    pub usage_unknown: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Non-empty for tokens that may be reported again (a run's usage): the tokens of one key
    /// count once, every record of it counts as a request.
    pub once_key: String,
    /// Made by an edge reading a run or response to its end, for no client's request: its
    /// tokens count (once, by `once_key`, which it must carry), it counts as no request.
    pub follow_up: bool,
}

/// The requests of one (event, attendee, resource, deployment, UTC hour) as an edge summed them:
/// what the hourly row keeps of each record, added up. Requests whose tokens carry a once key
/// never come summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSum {
    pub event_id: String,
    pub user_id: String,
    /// Empty for requests no upstream answered.
    pub resource_id: String,
    pub deployment_name: String,
    /// The start of the UTC hour, Unix ms.
    pub hour_ms: i64,
    pub requests: u64,
    /// Requests answered with a status of 400 or above.
    pub errors: u64,
    pub streamed: u64,
    pub usage_unknown: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub duration_ms: u64,
    pub ttfb_ms: u64,
}

/// The width of a usage report's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGranularity {
    Hour,
    Day,
}

impl UsageGranularity {
    pub const HOUR_MS: i64 = 3_600_000;
    pub const DAY_MS: i64 = 86_400_000;

    pub fn bucket_ms(self) -> i64 {
        match self {
            UsageGranularity::Hour => Self::HOUR_MS,
            UsageGranularity::Day => Self::DAY_MS,
        }
    }

    /// The start (UTC) of the bucket holding `ms`.
    pub fn floor(self, ms: i64) -> i64 {
        ms - ms.rem_euclid(self.bucket_ms())
    }
}

/// Which usage the report reads: exact filters, and the hours whose start is in `[from_ms, to_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub event_id: Option<String>,
    pub resource_id: Option<String>,
    pub user_id: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The dimensions a report's rows are split by (none: one row per bucket). The deployment name
/// goes with the resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageGrouping {
    pub event: bool,
    pub resource: bool,
    pub attendee: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReportQuery {
    pub filter: UsageFilter,
    pub granularity: UsageGranularity,
    pub group_by: UsageGrouping,
}

/// What a report adds up, per row and over everything selected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: u64,
}

/// One row of a usage report: a bucket, the dimensions grouped on (`None` for the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Start of the bucket, Unix ms UTC.
    pub bucket_ms: i64,
    pub event_id: Option<String>,
    pub resource_id: Option<String>,
    pub deployment_name: Option<String>,
    pub user_id: Option<String>,
    pub totals: UsageTotals,
}

/// One attendee's usage on one UTC day, and the event's total tokens (for `/eventinfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSummary {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub event_total_tokens: u64,
}

/// The forget invalidations after a sequence number (`OwnershipStore::forgets_since`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForgetsSince {
    /// `(kind, id)` of every record forgotten, in sequence order.
    pub objects: Vec<(String, String)>,
    /// The sequence number this list brings the reader to (the current one).
    pub seq: u64,
    /// False when some forgets after the requested number are no longer kept (pruned, or another
    /// database): the reader cannot know what it missed and must drop everything it cached.
    pub complete: bool,
}

/// Which kind of catalog object a removal refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Resource,
    Event,
    Attendee,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Resource => "resource",
            ObjectKind::Event => "event",
            ObjectKind::Attendee => "attendee",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "resource" => Some(ObjectKind::Resource),
            "event" => Some(ObjectKind::Event),
            "attendee" => Some(ObjectKind::Attendee),
            _ => None,
        }
    }
}

/// The id a removed attendee is known by in the change log.
pub fn attendee_object_id(event_id: &str, user_id: &str) -> String {
    format!("{event_id}/{user_id}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    pub kind: ObjectKind,
    pub id: String,
}

/// What changed after a given catalog version, or everything (`full`).
#[derive(Debug, Clone, Default)]
pub struct CatalogChanges {
    pub catalog_id: String,
    pub version: u64,
    pub full: bool,
    pub resources: Vec<Resource>,
    pub events: Vec<Event>,
    pub attendees: Vec<Attendee>,
    pub removals: Vec<Removal>,
}

impl CatalogChanges {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
            && self.events.is_empty()
            && self.attendees.is_empty()
            && self.removals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_carries_keys() {
        let resource = Resource {
            id: "r".into(),
            friendly_name: "f".into(),
            deployment_name: "d".into(),
            model_type: ModelType::FoundryModel,
            endpoint_url: "https://x.openai.azure.com".into(),
            region: String::new(),
            use_managed_identity: false,
            identity_client_id: None,
            active: true,
            use_max_completion_tokens: false,
            encrypted_key: Some(b"sealed-bytes".to_vec()),
        };
        let attendee = Attendee {
            event_id: "e".into(),
            user_id: "u".into(),
            key_hash: vec![42; 32],
            active: true,
            created_at_ms: 0,
        };
        let printed = format!("{resource:?} {attendee:?}");
        assert!(printed.contains("encrypted_key: Some(***)"), "{printed}");
        assert!(printed.contains("key_hash: ***"), "{printed}");
        assert!(
            !printed.contains("115, 101") && !printed.contains("42, 42"),
            "{printed}"
        );
    }

    #[test]
    fn model_type_accepts_reference_spellings() {
        assert_eq!(
            ModelType::parse("Foundry_Model"),
            Some(ModelType::FoundryModel)
        );
        assert_eq!(
            ModelType::parse("Foundry_Agent"),
            Some(ModelType::FoundryAgent)
        );
        assert_eq!(
            ModelType::parse("foundry-agent"),
            Some(ModelType::FoundryAgent)
        );
        assert_eq!(
            ModelType::parse("azure-ai-search"),
            Some(ModelType::AzureAiSearch)
        );
        assert_eq!(ModelType::parse("openai"), None);
    }
}
