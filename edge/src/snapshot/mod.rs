//! The edge's whole world: an immutable catalog snapshot, swapped atomically on each update
//! (`arc-swap`), so a request sees the old snapshot or the new one, never a mix. Everything a
//! request needs is here, in memory: attendee key hashes, events, resources with their keys, and
//! the deployment pools derived from them.

mod apply;

use std::collections::HashMap;
use std::sync::Arc;

use aiproxy_proto::v1 as pb;
use aws_lc_rs::hmac;

/// An upstream the edge can call.
#[derive(Debug)]
pub struct UpstreamResource {
    pub id: String,
    pub friendly_name: String,
    pub deployment_name: String,
    pub model_type: String,
    pub endpoint_url: String,
    /// `scheme://authority` of the endpoint: Azure OpenAI paths are rooted there.
    pub origin: String,
    pub region: String,
    pub use_managed_identity: bool,
    /// Client id of the resource's user-assigned identity; empty for the proxy's own.
    pub identity_client_id: String,
    /// The scope of the managed-identity token this resource needs (empty: it uses a key).
    pub token_scope: String,
    pub active: bool,
    pub api_key: Option<String>,
}

/// A managed-identity token the control plane minted, ready to put on a request.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// `Bearer <token>`, marked sensitive so it is never logged.
    pub authorization: http::HeaderValue,
    pub expires_on_ms: i64,
}

#[derive(Debug, Clone)]
pub struct AttendeeEntry {
    pub event_id: String,
    pub user_id: String,
    pub active: bool,
}

#[derive(Default)]
pub struct CatalogSnapshot {
    /// False until a complete snapshot has arrived; the edge is not ready before.
    pub loaded: bool,
    pub version: u64,
    pub catalog_id: String,
    key_hash_secret: Vec<u8>,
    key_hasher: Option<hmac::Key>,
    resources: HashMap<String, Arc<UpstreamResource>>,
    events: HashMap<String, Arc<pb::EventInfo>>,
    attendees: HashMap<(String, String), pb::EdgeAttendee>,
    by_key_hash: HashMap<Vec<u8>, AttendeeEntry>,
    /// event id → deployment name → active `foundry-model` members of that pool.
    deployments: HashMap<String, HashMap<String, Vec<Arc<UpstreamResource>>>>,
    /// (identity client id, scope) → token.
    tokens: HashMap<(String, String), TokenEntry>,
}

impl CatalogSnapshot {
    pub fn attendee_for_key(&self, key: &str) -> Option<&AttendeeEntry> {
        let hasher = self.key_hasher.as_ref()?;
        let tag = hmac::sign(hasher, key.as_bytes());
        self.by_key_hash.get(tag.as_ref())
    }

    pub fn event(&self, id: &str) -> Option<&Arc<pb::EventInfo>> {
        self.events.get(id)
    }

    /// The pool serving `deployment` for `event_id`, if any.
    pub fn pool(&self, event_id: &str, deployment: &str) -> Option<&[Arc<UpstreamResource>]> {
        self.deployments
            .get(event_id)
            .and_then(|d| d.get(deployment))
            .map(Vec::as_slice)
            .filter(|members| !members.is_empty())
    }

    /// Deployment names an event exposes, sorted, for "not found" messages.
    pub fn deployment_names(&self, event_id: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .deployments
            .get(event_id)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The token for a managed-identity resource, if one is held (whatever its expiry).
    pub fn token_for(&self, resource: &UpstreamResource) -> Option<&TokenEntry> {
        self.tokens.get(&(
            resource.identity_client_id.clone(),
            resource.token_scope.clone(),
        ))
    }

    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }
}
