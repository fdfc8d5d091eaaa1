//! Catalog types as the control plane stores them.

use std::fmt;

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

#[derive(Debug, Clone, PartialEq)]
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
    /// The upstream key, AES-256-GCM sealed (see `secrets::KeyCipher`). Never leaves the control
    /// plane except decrypted on the edge sync stream.
    pub encrypted_key: Option<Vec<u8>>,
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
    pub organizer_name: String,
    pub organizer_email: String,
    pub active: bool,
    pub resource_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attendee {
    pub event_id: String,
    pub user_id: String,
    /// HMAC-SHA-256 of the key (`secrets::KeyHasher`); the key itself is never stored.
    pub key_hash: Vec<u8>,
    pub active: bool,
    pub created_at_ms: i64,
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
